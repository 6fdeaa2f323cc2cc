"""Plotly figures of the evaluation results (no streamlit import; values passed as lists, not numpy arrays)."""

from __future__ import annotations

import plotly.graph_objects as go

# neutral greys: blue and orange mean supports / opposes everywhere else in the app
COLORS = {"method": "#8c8c8c", "reference": "#d9d9d9", "bif": "#333333"}


def _color(row: dict) -> str:
    return COLORS["bif"] if row["method"].startswith("bif") else COLORS[row["kind"]]


def _finite(x) -> float | None:
    return None if x is None or x != x else float(x)


def lds_bars(res: dict) -> go.Figure:
    """LDS per method with its bootstrap 95 % interval."""
    rows = res["methods"]
    y = [_finite(r["lds"]) for r in rows]
    up = [None if v is None or r["lds_ci"][1] is None else max(r["lds_ci"][1] - v, 0) for v, r in zip(y, rows)]
    lo = [None if v is None or r["lds_ci"][0] is None else max(v - r["lds_ci"][0], 0) for v, r in zip(y, rows)]
    fig = go.Figure(go.Bar(x=[r["label"] for r in rows], y=y, marker_color=[_color(r) for r in rows],
                           error_y=dict(type="data", symmetric=False, array=up, arrayminus=lo),
                           hovertemplate="%{x}<br>LDS %{y:.3f}<extra></extra>"))
    fig.update_layout(yaxis_title="LDS (Spearman, mean over queries)", height=380, margin=dict(t=30, b=10),
                      yaxis_range=[min(-0.1, min((v for v in y if v is not None), default=0) - 0.1), 1])
    return fig


def retrieval_bars(res: dict) -> go.Figure:
    """Source MRR, recall@1 and recall@10 per method (grouped bars)."""
    rows = res["methods"]
    fig = go.Figure([go.Bar(name=k, x=[r["label"] for r in rows], y=[r[k] for r in rows])
                     for k in ("mrr", "recall@1", "recall@10")])
    fig.update_layout(barmode="group", yaxis_title="known-source retrieval", yaxis_range=[0, 1.05], height=360,
                      margin=dict(t=30, b=10))
    return fig


def time_bars(res: dict) -> go.Figure:
    rows = [r for r in res["methods"] if r["kind"] == "method"]
    fig = go.Figure(go.Bar(x=[r["label"] for r in rows], y=[max(r["seconds"], 1e-3) for r in rows],
                           marker_color=[_color(r) for r in rows],
                           hovertemplate="%{x}<br>%{y:.1f} s<extra></extra>"))
    fig.update_layout(yaxis_title="wall time (s, log scale)", height=320, margin=dict(t=30, b=10))
    fig.update_yaxes(type="log", dtick=1)
    return fig


def predicted_vs_actual(res: dict, method: int, query: int) -> go.Figure:
    """One point per retrained subset: predicted g(S) against the measured query loss L_q(S)."""
    row = res["methods"][method]
    x = [p[query] for p in row["predicted"]]
    y = [a[query] for a in res["actual"]]
    src = [bool(s[query]) for s in res["source_in_subset"]]
    fig = go.Figure()
    for flag, name, color in ((True, "source in subset", "#54A24B"), (False, "source left out", "#E45756")):
        idx = [i for i, s in enumerate(src) if s == flag]
        fig.add_trace(go.Scatter(x=[x[i] for i in idx], y=[y[i] for i in idx], mode="markers", name=name,
                                 marker=dict(color=color, size=9), text=[f"subset {i}" for i in idx],
                                 hovertemplate="%{text}<br>predicted %{x:.4g}<br>actual %{y:.3f}<extra></extra>"))
    rho = row["lds_per_query"][query]
    fig.update_layout(xaxis_title=f"predicted g(S) = Σ Δ_i ({row['label']})",
                      yaxis_title="query loss after retraining on S", height=420, margin=dict(t=40, b=10),
                      title=f"Spearman over subsets: {'n/a' if rho is None or rho != rho else f'{rho:.2f}'}")
    return fig


def frontier(sweep: dict, metric: str = "mrr") -> go.Figure:
    """Cost against source MRR (seed 0) or flagged-set Jaccard, one marker per (setting, chains, draws)."""
    fig = go.Figure()
    for setting in dict.fromkeys(r["setting"] for r in sweep["rows"]):
        rows = [r for r in sweep["rows"] if r["setting"] == setting]
        y = [(r["mrr"][0] if metric == "mrr" else r[metric]) for r in rows]
        fig.add_trace(go.Scatter(x=[r["cost_s"] for r in rows], y=y, mode="markers+lines", name=setting,
                                 text=[f"{r['chains']}×{r['draws']}" for r in rows],
                                 hovertemplate="%{text}<br>%{x:.0f} s<br>%{y:.2f}<extra></extra>"))
    fig.update_layout(xaxis_title="cost (s, one core)", yaxis_title={"mrr": "source MRR", "jaccard":
                      "flagged-set Jaccard (seed 0 vs 1)", "lds": "LDS"}.get(metric, metric), height=400,
                      margin=dict(t=30, b=10))
    return fig
