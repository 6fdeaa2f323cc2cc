"""The sidebar every page shows: the current run and, while one runs, the view's background job. Not a page."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

import bif

from views import common, jobview
from views.ui.html import md_escape


def sidebar() -> None:
    """The current run, shown on every page."""
    v = common.view()
    with st.sidebar:
        st.markdown("#### Current run")
        req = common.run_request(v["run"]) if v.get("run") else None
        if req is None:
            st.caption("None yet: start one on the Run page, or open one on the Runs page.")
        else:
            qs = req.get("queries") or [{}]
            q = qs[v["q"]] if (v.get("q") or 0) < len(qs) else None
            st.markdown(f"**Model** {md_escape(req.get('model_label', '?'))}  \n"
                        f"**Data** {md_escape(Path(str(req['data']['source'])).name)} "
                        f"({req.get('n_train', '?')} texts)  \n"
                        f"**Preset** {common.preset_name(req.get('config', {}))}")
            if q:
                st.markdown(f"**Query** {md_escape(common.short(q['prompt'], 60, tail=True))} → "
                            f"**{md_escape(common.short(q['completion'], 40))}**")
            else:
                try:  # a query added later (stored draws or replay) is not in request.json: the run knows it
                    added = common.open_run(v["run"]).queries[v["q"]]
                    st.markdown(f"**Query** {md_escape(common.short(added.prompt, 60, tail=True))} → "
                                f"**{md_escape(common.short(added.completion, 40))}** (added later)")
                except (bif.BIFError, IndexError, OSError):
                    st.markdown(f"**Query** #{v['q'] + 1} (added later)")
            st.caption(f"run {v['run']} · finished")
        if v.get("job"):
            try:
                jobview.sidebar_line(v["job"])
            except ValueError:
                pass
