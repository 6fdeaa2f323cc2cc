"""What a finding required, and how often the same rule flags noise (the built-in null), for the pages.

Small pieces the Run, Influence and Diagnostics pages call; the rule and the null live in bif.core.influence and
bif.core.null (docs/method.md §4). This module is not a page.
"""

from __future__ import annotations

import streamlit as st

import bif
from bif.core import influence, null


@st.cache_data(max_entries=256, show_spinner=False)
def null_check(_run: bif.Run, rid: str, queries: tuple[int, ...], token: int | None) -> null.NullCheck:
    """The run's findings and its null's, for these queries (whole completion, or one completion position)."""
    return null.check([_run.trace(q) for q in queries], token)


def findings_caption(run: bif.Run, rid: str, q: int, token: int | None) -> None:
    """Under a ranking: what a finding required here, and what the null flags in the same view."""
    result = null_check(run, rid, (q,), token)
    st.caption(f":material/rule: {influence.FINDING_RULE} " + result.sentence())


def null_section(run: bif.Run, rid: str) -> None:
    """Diagnostics: real findings per query next to the null's, over every query of the run."""
    st.markdown("**Findings against the null**")
    result = null_check(run, rid, tuple(range(len(run.queries))), None)
    c = st.columns(3)
    c[0].metric("Findings per query (real)", f"{result.real_per_query:.2f}",
                help="Training samples flagged as standing out, per query of this run (whole completion).")
    c[1].metric("Findings per query (null)", f"{result.null_per_query:.2f}",
                help="The same rule on the same run with each query's losses taken from another, independently "
                     "seeded chain: zero influence by construction, so every one of these is a false finding.")
    c[2].metric("Null rate per ranked sample", f"{result.null_rate:.1e}",
                help=f"False findings / (ranked samples × queries). BH at 5 % allows a false finding in at most "
                     f"{null.NOMINAL:.0%} of queries when nothing is there.")
    st.caption(f"{influence.FINDING_RULE} {result.sentence()} A null that flags about as often as the real run "
               "means the findings are not to be trusted (e.g. chains that drift together).")


def before_start(config) -> None:
    """Run page: say before Start when the chosen settings (a SamplerConfig) cannot give findings."""
    reason = influence.no_findings_reason(int(config.chains))
    if reason:
        st.warning(reason + " Choose ≥ 4 chains (e.g. the demo-cpu preset) for findings.", icon=":material/rule:")
