"""Exports that stand on their own: the one schema of every CSV, JSON, HTML and image file the CLI and app write.

Every export carries an `ExportContext`: run key, model, data, the query (prompt and completion), the view (the
whole completion, one completion token or a span, by position *and* text), the training sample shown, the sign
convention and the sampler settings, so a file read a month later, without the app, says what it is.

- CSV: one row per entry; the context fills the first columns of every row (a spreadsheet keeps it when sorted).
- JSON: {"schema", "context": {...}, "rows": [...]}.
- HTML (token × token heatmap): the context, the full training text and the query as text, then the figure.
- PNG/SVG (bif.image): the figure with a caption line naming run, model, query and the colour convention.
Token positions follow docs/method.md §3: loss position p is the loss of predicting token p+1, so a position's
token text is tokens[p + 1].
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict, dataclass

import numpy as np

from bif.core.estimators import Scores
from bif.render import QUANTITY, esc, label_token

SCHEMA = "bif-export/1"
SIGN_CONVENTION = ("support = +Corr(loss of the training sample, loss of the completion): positive = the training "
                   "sample makes the completion more likely (blue), negative = less likely (orange). "
                   "bif = -Cov(same losses), the paper's BIF: negative = supports. "
                   "stands_out = significant after Benjamini-Hochberg (FDR 5 %) and replicated in both halves of "
                   "the chains. Token positions: loss position p scores the predicted token p+1.")
CONTEXT_COLUMNS = ("run_key", "model", "data", "query_index", "prompt", "completion", "view", "view_positions",
                   "sample_id", "sign_convention", "settings", "provisional")


@dataclass(frozen=True)
class ExportContext:
    """What an exported file shows and where it comes from (see module docstring)."""

    run_key: str
    model: str  # the model's label, e.g. 'demo' or a directory name
    model_spec: dict  # ModelSpec.to_dict()
    data: dict  # DataSpec.to_dict()
    n_train: int  # training texts in the data
    n_scored: int  # of which ranked
    how_scored: str
    query_index: int
    prompt: str
    completion: str
    positions: tuple[int, ...] | None  # loss positions of the view; None = the whole completion
    token_text: str | None  # the predicted tokens at those positions, concatenated; None = the whole completion
    sample_id: int | None  # training sample shown (heatmap), by its index in the training data
    sample_text: str | None
    settings: dict  # SamplerConfig.to_dict()
    approximate: bool  # only some parameters were sampled (settings["param_patterns"])
    answered_by: str  # how the query was scored: 'run', 'draws' (stored draws) or 'replay'
    fingerprints: dict
    provisional: str | None = None  # set when exported while the run was still computing: what it held then
    quantity: str = QUANTITY
    sign_convention: str = SIGN_CONVENTION
    schema: str = SCHEMA

    @property
    def view(self) -> str:
        """In words: 'the whole completion' or "completion token ' 42' (position 7)"."""
        if self.positions is None:
            return "the whole completion"
        where = ", ".join(map(str, self.positions))
        kind = "token" if len(self.positions) == 1 else "span"
        return f"completion {kind} {self.token_text!r} (loss position {where})"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["positions"] = list(self.positions) if self.positions is not None else None
        d["view"] = self.view
        return d

    def columns(self) -> dict:
        """The context as flat CSV columns (CONTEXT_COLUMNS)."""
        return {"run_key": self.run_key, "model": self.model, "data": self.data.get("source", ""),
                "query_index": self.query_index, "prompt": self.prompt, "completion": self.completion,
                "view": self.view, "view_positions": " ".join(map(str, self.positions or ())),
                "sample_id": "" if self.sample_id is None else self.sample_id,
                "sign_convention": self.sign_convention, "settings": json.dumps(self.settings, sort_keys=True),
                "provisional": self.provisional or ""}

    def caption(self) -> list[str]:
        """Lines for an image's caption: run, model and view; the query; the colours (unescaped)."""
        return [f"run {self.run_key}{' (provisional)' if self.provisional else ''} · model {short(self.model, 40)} · "
                f"{short(self.view, 60)}",
                f"query: “{short(self.prompt, 60)}” → “{short(self.completion, 60)}”",
                "blue = supports, orange = opposes: support = +Corr(training-sample loss, completion loss)"]


def short(text: str, n: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


def context(run, query: int, token=None, sample: int | None = None) -> ExportContext:
    """ExportContext of a view of `run`: query index, token (None, a loss position or a sequence of them) and
    the training sample shown (its train id)."""
    req = run.request
    q = run.queries[query]
    tokens = run.query_tokens(query)
    positions = None if token is None else tuple(int(p) for p in np.atleast_1d(token))
    text = None if positions is None else "".join(tokens[p + 1] for p in positions if p + 1 < len(tokens))
    sample_text = None
    if sample is not None:
        sample_text = run.train_texts[list(run.train_ids).index(sample)]
    return ExportContext(
        run_key=run.key, model=str(req.get("model_label") or req["model"].get("name_or_path")),
        model_spec=dict(req["model"]), data=dict(req["data"]), n_train=int(req.get("n_train", 0)),
        n_scored=len(run.train_ids), how_scored=str(req.get("how_scored", "")), query_index=query,
        prompt=q.prompt, completion=q.completion, positions=positions, token_text=text, sample_id=sample,
        sample_text=sample_text, settings=dict(req["config"]), approximate=bool(req.get("approximate")),
        answered_by=run.answered_by(query), fingerprints=dict(req.get("fingerprints", {})),
        provisional=None if getattr(run, "partial", None) is None else
        f"provisional: {run.partial.draws} of {run.partial.target} draws of chains {list(run.partial.chains)}")


def _f(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def sample_rows(scores: Scores, train_ids, texts) -> list[dict]:
    """One dict per scored training sample, most supporting first: rank, id, support ± SE, bif ± SE, p, q, text."""
    order = np.argsort(-np.nan_to_num(scores.support, nan=-np.inf), kind="stable")
    return [{"rank": r + 1, "train_id": int(train_ids[i]), "support": _f(scores.support[i]),
             "support_se": _f(scores.support_se[i]), "bif": _f(scores.bif[i]), "bif_se": _f(scores.bif_se[i]),
             "p": _f(scores.p[i]), "q": _f(scores.q[i]), "stands_out": bool(scores.significant[i]),
             "text": texts[i]} for r, i in enumerate(order)]


def token_rows(tokens: list[str], scores: Scores, offset: int = 1) -> list[dict]:
    """One dict per scored position p: the predicted token (index p + offset, its text), support ± SE, bif."""
    out = []
    for p in range(len(scores.support)):
        if np.isfinite(scores.support[p]) and p + offset < len(tokens):
            out.append({"position": p, "token_index": p + offset, "token": tokens[p + offset],
                        "support": _f(scores.support[p]), "support_se": _f(scores.support_se[p]),
                        "bif": _f(scores.bif[p]), "stands_out": bool(scores.significant[p])})
    return out


def to_csv(ctx: ExportContext, rows: list[dict]) -> str:
    """CSV text: the context columns, then each row's own columns."""
    out = io.StringIO()
    cols = ctx.columns()
    fields = list(CONTEXT_COLUMNS) + [k for k in (rows[0] if rows else {}) if k not in cols]
    w = csv.DictWriter(out, fieldnames=fields)
    w.writeheader()
    for r in rows:
        w.writerow({**cols, **r})
    return out.getvalue()


def to_json(ctx: ExportContext, rows: list[dict], **extra) -> str:
    """JSON text: schema, context, any extra named parts, rows (NaN written as null)."""
    return json.dumps({"schema": SCHEMA, "context": ctx.to_dict(), **extra, "rows": rows}, indent=1,
                      ensure_ascii=False, default=_f)


def captioned(fig, ctx: ExportContext):
    """A copy of the figure with the context caption under it (for images that travel without the app)."""
    import html

    import plotly.graph_objects as go

    out = go.Figure(fig)
    lines = ctx.caption()
    extra = 16 * len(lines) + 16
    bottom = (out.layout.margin.b or 10) + extra
    out.update_layout(margin={"b": bottom})
    if out.layout.height:
        out.update_layout(height=out.layout.height + extra)
    out.add_annotation(text="<br>".join(html.escape(line, quote=False) for line in lines), xref="paper",
                       yref="paper", x=0, y=0, xanchor="left", yanchor="top", yshift=-(bottom - extra + 6),
                       align="left", showarrow=False, font={"size": 11, "color": "#555"})
    return out


_CSS = ("body{font-family:system-ui,sans-serif;max-width:1200px;margin:1em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:.25em .5em;"
        "text-align:left;vertical-align:top}pre{white-space:pre-wrap;background:#f6f6f6;padding:.5em;margin:0}")


def heatmap_html(ctx: ExportContext, fig, sample_tokens: list[str] | None = None) -> str:
    """A standalone, offline HTML page: context, the training text and the query in full, then the figure."""
    rows = [("Run", ctx.run_key), ("Model", ctx.model), ("Data", f"{ctx.data.get('source')} ({ctx.n_scored} of "
             f"{ctx.n_train} training texts ranked: {ctx.how_scored})"), ("View", ctx.view),
            ("Query scored by", ctx.answered_by), ("Sign convention", ctx.sign_convention),
            ("Sampler settings", json.dumps(ctx.settings, sort_keys=True))]
    if ctx.provisional:
        rows.append(("Provisional", ctx.provisional + " (the run was still computing)"))
    if ctx.approximate:
        rows.append(("Approximation", "only parameters matching " + ", ".join(ctx.settings.get("param_patterns", []))
                     + " were sampled"))
    table = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)
    tok = ""
    if sample_tokens:
        tok = ("<p>Its tokens (heatmap rows are the predicted tokens, from the second on): "
               + " ".join(f"<code>{esc(label_token(t))}</code>" for t in sample_tokens) + "</p>")
    body = fig.to_html(full_html=False, include_plotlyjs=True, config={"displaylogo": False})
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>BIF heatmap: run {esc(ctx.run_key)}</title>"
            f"<style>{_CSS}</style></head><body><h1>Training sample #{esc(ctx.sample_id)} × completion tokens</h1>"
            f"<table>{table}</table><h2>Query</h2><p>Prompt (context, not explained):</p><pre>{esc(ctx.prompt)}</pre>"
            f"<p>Completion (its tokens are the heatmap's columns):</p><pre>{esc(ctx.completion)}</pre>"
            f"<h2>Training sample #{esc(ctx.sample_id)}</h2><pre>{esc(ctx.sample_text or '')}</pre>{tok}"
            f"<h2>Heatmap</h2>{body}</body></html>")


FIGURES = ("heatmap", "histogram", "trace")


def view_figure(run, query: int, which: str, token=None, sample: int | None = None):
    """(figure, context) of one view as the app draws it: the token × token `heatmap` of training sample `sample`
    (train id; default the most supporting), the `histogram` of all samples' support, or the sampling-loss `trace`."""
    from bif import render
    from bif.core import diagnostics, influence

    trace, row = run.trace(query)
    if which == "trace":
        d = diagnostics.loss_verdict(run.sampling_loss, run.config.burn_in)
        fig = render.loss_figure(render.trace_curves(run.sampling_loss), burn_in=run.config.burn_in,
                                 total_steps=run.config.steps_per_chain, init_loss=d["init_loss"])
        return fig, context(run, query)
    scores = influence.samples(trace, row, token)
    if sample is None:
        top = scores.top(1, "support")
        sample = int(run.train_ids[int(top[0]) if len(top) else 0])
    ids = list(run.train_ids)
    if sample not in ids:
        from bif.errors import DataError

        raise DataError(f"training sample #{sample} is not among the {len(ids)} ranked samples of this run "
                        "(see `bif export RUN --format csv` for their train_id column).")
    srow = ids.index(sample)
    ctx = context(run, query, token, sample=sample)
    if which == "histogram":
        return render.histogram_figure(scores.support, float(scores.support[srow]),
                                       title=f"Support of every ranked training sample for {ctx.view}"), ctx
    fig = render.pair_figure(run.train_tokens[srow], run.query_tokens(query), influence.pair(trace, srow, row),
                             title=f"Training sample #{sample}: its tokens × completion tokens")
    return fig, ctx
