"""Diagnostics page: can the run's scores be trusted? Sampling-loss traces, stationarity, R-hat, ESS, LLC."""

from __future__ import annotations

import math

import streamlit as st

import bif
from bif import export, render
from bif.core import diagnostics
from views import common, exports, trust

EXPLAIN = """
The scores come from a random walk over the model's weights (SGLD, in several independent **chains**). They mean
something only if each walk settled into a steady state near the trained model. This page checks that.

* **Sampling loss per chain**: should rise a little from the trained model's loss and then level off. The shaded
  part (burn-in) is discarded. A curve that keeps climbing or falling (*drift*) gives every training text a similar,
  meaningless score.
* **R-hat** compares chains: ≈ 1.00 when they agree. We use the rank-normalized split R-hat and the recommended
  threshold **R-hat < 1.01** of Vehtari et al. (2021), computed by the `arviz-stats` library.
* **Effective sample size (ESS)** is how many independent draws the correlated draws are worth (*bulk* ESS for the
  centre of the distribution, *tail* ESS for its 5 % and 95 % quantiles); the same paper recommends **at least 100
  per chain**. Our error bars already widen for correlated draws (batch means), so a low ESS means wide error bars,
  not wrong ones.
* **LLC** (local learning coefficient) is a by-product: a measure of the model's effective complexity here.
"""

VERDICTS = {"ok": "Looks stationary", "drifting": "Still drifting", "left basin": "Left the trained basin",
            "too short": "Too short to judge", "below w*": "Loss fell below the trained weights'",
            "chains disagree": "Chains disagree"}
ICONS = {"ok": ":material/check_circle:", "drifting": ":material/warning:", "left basin": ":material/dangerous:",
         "too short": ":material/warning:", "below w*": ":material/warning:", "chains disagree": ":material/warning:"}


def fmt(x: float, spec: str = ".3g") -> str:
    return "—" if x is None or not math.isfinite(x) else format(x, spec)


def pm(x: float, se: float, sign: bool = False) -> str:
    """'x ± se' with se to 1 significant figure and x to the same decimal place (so it fits a metric tile)."""
    if x is None or se is None or not (math.isfinite(x) and math.isfinite(se)) or se <= 0:
        return fmt(x, "+.3g" if sign else ".3g")
    decimals = max(0, 1 - int(math.floor(math.log10(se))) - 1)
    return f"{x:{'+' if sign else ''}.{decimals}f} ± {se:.{decimals}f}"


def checks(d) -> None:
    """The convergence checks with their published thresholds, passed or not."""
    mark = {True: "passed", False: "not met", None: "undefined"}
    st.markdown(f"**Convergence checks** (thresholds of {diagnostics.THRESHOLDS_SOURCE}; computed by arviz-stats)")
    st.table([{"check": c.name, "value": fmt(c.value, ".3f" if "R-hat" in c.name else ".0f"),
               "recommended": c.threshold, "result": mark[c.ok]} for c in d.checks()])
    st.caption("The verdict above uses the first (R-hat of the sampling loss). The ESS thresholds are for reliable "
               "R-hat and quantile estimates; at CPU budgets they are often not met, and the error bars of the scores "
               "(batch means, docs/method.md §4) are then wide, as they should be.")


@st.cache_data(max_entries=64, show_spinner=False)
def diagnosis(_run: bif.Run, rid: str) -> bif.Diagnosis:
    trace, _ = _run.trace(0)
    return bif.diagnose(trace, _run.config.nbeta, _run.config.burn_in)


@common.guarded
def main() -> None:
    st.title("Diagnostics: can these scores be trusted?")
    common.explain(EXPLAIN)
    current = common.current_run()
    if current is None:
        return
    run, _ = current
    cfg = run.config
    d = diagnosis(run, common.run_id(run))
    box = st.success if d.verdict == "ok" else st.error if d.verdict == "left basin" else st.warning
    box(f"**{VERDICTS.get(d.verdict, d.verdict)}.** {d.advice}", icon=ICONS.get(d.verdict))

    fig = render.loss_figure(render.trace_curves(run.sampling_loss), burn_in=cfg.burn_in,
                             total_steps=cfg.steps_per_chain, init_loss=d.init_loss)
    st.plotly_chart(fig, key="trace", width="stretch")
    exports.figure_buttons(fig, f"bif_sampling_loss_{run.key}", export.context(run, 0), key="trace-image")
    st.caption(f"{cfg.chains} chains × {cfg.steps_per_chain} SGLD steps; a draw is kept every {cfg.steps_between} "
               f"step(s) after the first {cfg.burn_in}.")

    c = st.columns(4)
    c[0].metric("Loss at the trained weights", fmt(d.init_loss), help="L(w*): the mean minibatch loss at step 1.")
    c[1].metric("Loss while sampling", fmt(d.kept_loss), delta=fmt(d.kept_loss - d.init_loss, "+.3g"),
                delta_color="off", help="Mean over the kept draws. A small rise is expected; a large one means the "
                                        "chains wandered far from the trained model.")
    c[2].metric("Drift (± standard error)", pm(d.drift, d.drift_se, sign=True),
                help="Mean loss of the last third of the kept draws minus the first third. Should be within noise.")
    c[3].metric("R-hat of the sampling loss", fmt(d.rhat_loss, ".3f"),
                help="Rank-normalized split R-hat (Vehtari et al. 2021): compares the chains (and their halves). "
                     "Below 1.01 is the recommended threshold.")
    c = st.columns(4)
    c[0].metric("R-hat per sample (median / max)",
                f"{fmt(d.rhat_samples_median, '.2f')} / {fmt(d.rhat_samples_max, '.2f')}",
                help="The same agreement check for each ranked training sample's loss at the kept draws "
                     f"({fmt(100 * d.rhat_samples_high, '.0f')} % of them at 1.01 or above).")
    c[1].metric("Effective draws (median bulk ESS)", fmt(d.ess_median, ".0f"),
                help=f"Out of {cfg.chains * cfg.draws} kept draws, how many independent ones they are worth "
                     f"(median tail ESS {fmt(d.ess_tail_median, '.0f')}). Standard errors shrink like "
                     "1/√(effective draws).")
    c[2].metric("Effective draws per draw", fmt(d.ess_per_draw, ".2f"),
                help="1.0 = draws are independent. Low values: raise steps_between or the step size.")
    c[3].metric("LLC (± standard error)", pm(d.llc, d.llc_se),
                help="Local learning coefficient λ̂ = nβ·(E[L] − L(w*)) on the ranked samples: how many effective "
                     "parameters the model uses here. A by-product; not needed to read the influence scores.")
    checks(d)
    trust.null_section(run, common.run_id(run))
    st.markdown("**What to change if something is off**")
    st.markdown(
        "- *Still drifting*: more burn-in, a larger γ (gamma), or a smaller step size.\n"
        "- *Left the basin*: a smaller step size or a larger γ.\n"
        "- *Chains disagree (R-hat ≥ 1.01)* or *few effective draws*: more draws, or more steps between draws.\n"
        "- All fields are under **Advanced sampler settings** on the Run page.")
    common.to_url(run=run.key, q=common.view().get("q") or 0)


main()
