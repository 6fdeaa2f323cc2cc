"""Download buttons for the pages: PNG/SVG beside a figure, and the Influence view as CSV, JSON and HTML.

Files are made when the button is clicked (a callable), with the schema of bif.export, so each stands on its own
(run, model, data, query, token text, sign convention, settings). Images come from bif.image (kaleido and the
machine's Chromium); without Chromium the image buttons are disabled and say how to get it.
"""

from __future__ import annotations

import streamlit as st

from bif import export, image


def figure_buttons(fig, name: str, ctx: export.ExportContext | None = None, key: str | None = None) -> None:
    """'PNG' and 'SVG' download buttons under a figure; with `ctx` the image carries its context caption."""
    ok = image.available()
    note = ("The figure as an image" + (" with a caption naming run, model and query" if ctx else "") +
            " (rendered here by kaleido and Chromium, offline)." if ok else image.CHROMIUM_HINT)
    cols = st.columns([1, 1, 2])  # wide enough for icon + label at 800 px
    for col, fmt, mime in ((cols[0], "png", "image/png"), (cols[1], "svg", "image/svg+xml")):
        col.download_button(
            fmt.upper(), (lambda f=fmt: image.figure_image(export.captioned(fig, ctx) if ctx else fig, f)) if ok
            else b"", f"{name}.{fmt}", mime, key=f"{key or name}-{fmt}", on_click="ignore", disabled=not ok,
            help=note, icon=":material/download:")


def chart(fig, name: str, ctx: export.ExportContext | None = None) -> None:
    """st.plotly_chart with its PNG/SVG buttons under it."""
    st.plotly_chart(fig, width="stretch", key=f"chart-{name}")
    figure_buttons(fig, name, ctx)


def view_downloads(run, q: int, token, sample: int, scores, fig) -> None:
    """CSV and JSON of the ranking and the heatmap as a standalone HTML page."""
    ctx = export.context(run, q, token)
    rows = export.sample_rows(scores, run.train_ids, run.train_texts)
    heat = export.context(run, q, token, sample=sample)
    srow = list(run.train_ids).index(sample)
    c1, c2, c3 = st.columns(3)
    c1.download_button("Ranking as CSV", lambda: export.to_csv(ctx, rows), "bif_ranking.csv", "text/csv",
                       on_click="ignore", help="Every ranked sample with support ± SE, BIF, p, q; the first columns "
                                               "name the run, model, data, query, token and settings.")
    c2.download_button("View as JSON", lambda: export.to_json(ctx, rows), "bif_view.json", "application/json",
                       on_click="ignore", help="The same table with its context (run, model, data, query, token "
                                               "text, sign convention, sampler settings).")
    c3.download_button("Heatmap as HTML", lambda: export.heatmap_html(heat, fig, run.train_tokens[srow]),
                       "bif_heatmap.html", "text/html", on_click="ignore",
                       help="An interactive page that opens offline, with the training text, the prompt, the "
                            "completion and the run's settings.")
