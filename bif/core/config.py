"""SamplerConfig: every knob of localized SGLD, validated once, with help text, plus calibrated presets.

The posterior sampled is p(w) ∝ exp(−nβ·L(w) − γ/2·‖w − w*‖²) (docs/method.md §1-2).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from bif.errors import ConfigError

PRECONDITIONERS = ("none", "rmsprop")
DTYPES = ("float32", "bfloat16")
TRACE_DTYPES = ("float32", "float16")
KEEP_DRAWS = ("auto", "on", "off")
DRAWS_DTYPES = ("float16", "bfloat16", "float32")
GAMMA_MAX = 1e7  # larger γ or nβ make the step unstable
NBETA_MAX = 1e8


@dataclass(frozen=True)
class SamplerConfig:
    """How to sample weights near w* and which draws to keep. All fields have help text (`help_text`)."""

    step_size: float = field(default=1e-4, metadata={"help": "SGLD step size ε. Noise std is √ε. Typical 1e-6..1e-3; "
                                                             "lower it if the sampling loss keeps rising or diverges."})
    nbeta: float = field(default=300.0, metadata={"help": "Inverse temperature times n (nβ): weight of the training loss. "
                                                          "Higher = tighter posterior around low-loss weights."})
    gamma: float = field(default=3000.0, metadata={"help": "Localization strength γ: pulls draws back to the trained "
                                                           "weights w*. Acts like damping in classical influence functions. "
                                                           "Raise it if the chain leaves the basin."})
    chains: int = field(default=4, metadata={"help": "Independent chains, each started at w* with its own seed. "
                                                     "At least 2 (needed for R-hat and standard errors)."})
    draws: int = field(default=100, metadata={"help": "Draws kept per chain. More draws = smaller Monte Carlo error "
                                                      "(it shrinks like 1/√(effective draws))."})
    burn_in: int = field(default=100, metadata={"help": "SGLD steps per chain before the first kept draw."})
    steps_between: int = field(default=2, metadata={"help": "SGLD steps between kept draws (thinning). More steps = "
                                                            "less correlated draws; scoring cost per draw is unchanged."})
    batch_size: int = field(default=32, metadata={"help": "Training minibatch size m for the SGLD gradient."})
    seed: int = field(default=0, metadata={"help": "Base seed. Chain c uses seeds derived from (seed, c) for its "
                                                   "noise and its minibatch order, so a chain can be replayed exactly."})
    preconditioner: str = field(default="none", metadata={"help": "'none' = plain SGLD; 'rmsprop' = RMSProp-"
                                                                  "preconditioned SGLD (Li et al. 2016)."})
    rmsprop_alpha: float = field(default=0.99, metadata={"help": "RMSProp decay α of the squared-gradient average."})
    rmsprop_eps: float = field(default=0.1, metadata={"help": "RMSProp stabilizer added to √V."})
    param_patterns: tuple[str, ...] = field(default=(), metadata={
        "help": "Sample only parameters whose names match one of these glob patterns (e.g. 'model.layers.1.*'); "
                "empty = all parameters. A subset is an approximation and is labelled as such."})
    noise_scale: float = field(default=1.0, metadata={"help": "Multiplier on the Langevin noise. 1 samples the posterior; "
                                                              "0 turns SGLD into (localized) SGD — for tests only."})
    score_batch_size: int = field(default=64, metadata={"help": "Sequences per forward pass when scoring losses."})
    score_dtype: str = field(default="float32", metadata={"help": "'bfloat16' autocasts the scoring passes (faster on "
                                                                  "GPUs; the SGLD step itself stays float32)."})
    trace_dtype: str = field(default="float32", metadata={"help": "Storage precision of the loss traces."})
    device: str = field(default="auto", metadata={"help": "'auto' (CUDA when present), 'cpu', 'cuda' or 'cuda:N'."})
    keep_draws: str = field(default="auto", metadata={"help": "Store the sampled parameters at every draw (as deltas "
                                                              "from w*), so new queries are scored in seconds without "
                                                              "SGLD: 'on', 'off', or 'auto' = when they fit the disk "
                                                              "budget (BIF_DRAWS_BUDGET GiB, default 12)."})
    draws_dtype: str = field(default="float16", metadata={"help": "Storage precision of the stored draws' deltas: "
                                                                  "'float16' (default), 'bfloat16' or 'float32' "
                                                                  "(exact; twice the disk)."})

    def __post_init__(self) -> None:
        patterns = self.param_patterns
        object.__setattr__(self, "param_patterns", (patterns,) if isinstance(patterns, str) else
                           tuple(patterns) if isinstance(patterns, (list, tuple)) else patterns)
        if not isinstance(self.param_patterns, tuple):
            raise ConfigError(f"param_patterns must be a list of glob patterns (got {patterns!r}).")
        problems = []
        for name in ("step_size", "nbeta", "gamma", "rmsprop_alpha", "rmsprop_eps", "noise_scale"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
                problems.append(f"{name} must be a finite number (got {v!r})")
        for name in ("chains", "draws", "burn_in", "steps_between", "batch_size", "seed", "score_batch_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool):
                problems.append(f"{name} must be an integer (got {v!r})")
        for name in ("preconditioner", "score_dtype", "trace_dtype", "device", "keep_draws", "draws_dtype"):
            v = getattr(self, name)
            if not isinstance(v, str):
                problems.append(f"{name} must be text, e.g. {getattr(SamplerConfig, name)!r} (got {v!r})")
        if not all(isinstance(p, str) for p in self.param_patterns):
            problems.append(f"param_patterns must be glob patterns (text), got {self.param_patterns!r}")
        if problems:
            raise ConfigError("Invalid sampler settings: " + "; ".join(problems) + ".")
        if not 0 < self.step_size <= 1e-2:
            problems.append(f"step_size={self.step_size:g} is outside (0, 1e-2]; typical values are 1e-6..1e-3")
        if self.nbeta <= 0:
            problems.append(f"nbeta={self.nbeta:g} must be > 0")
        if self.gamma <= 0:
            problems.append(f"gamma={self.gamma:g} must be > 0: without localization the chain wanders off w*")
        if self.gamma > GAMMA_MAX or self.nbeta > NBETA_MAX:
            problems.append(f"gamma ≤ {GAMMA_MAX:g} and nbeta ≤ {NBETA_MAX:g} please: larger values make the step "
                            "unstable")
        if self.chains < 2 or self.chains > 256:
            problems.append(f"chains={self.chains} must be between 2 and 256")
        if self.draws < 10 or self.draws > 100_000:
            problems.append(f"draws={self.draws} must be between 10 and 100000 (fewer than 10 gives no usable error bars)")
        if self.burn_in < 0 or self.steps_between < 1:
            problems.append("burn_in must be ≥ 0 and steps_between ≥ 1")
        if self.batch_size < 1 or self.score_batch_size < 1:
            problems.append("batch_size and score_batch_size must be ≥ 1")
        if self.seed < 0:
            problems.append("seed must be ≥ 0")
        if self.preconditioner not in PRECONDITIONERS:
            problems.append(f"preconditioner must be one of {PRECONDITIONERS} (got {self.preconditioner!r})")
        if not 0 < self.rmsprop_alpha < 1 or self.rmsprop_eps <= 0:
            problems.append("rmsprop_alpha must be in (0, 1) and rmsprop_eps > 0")
        if self.noise_scale < 0:
            problems.append("noise_scale must be ≥ 0")
        if self.score_dtype not in DTYPES:
            problems.append(f"score_dtype must be one of {DTYPES}")
        if self.trace_dtype not in TRACE_DTYPES:
            problems.append(f"trace_dtype must be one of {TRACE_DTYPES}")
        if self.keep_draws not in KEEP_DRAWS:
            problems.append(f"keep_draws must be one of {KEEP_DRAWS} (got {self.keep_draws!r})")
        if self.draws_dtype not in DRAWS_DTYPES:
            problems.append(f"draws_dtype must be one of {DRAWS_DTYPES} (got {self.draws_dtype!r})")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            problems.append(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N' (got {self.device!r})")
        if problems:
            raise ConfigError("Invalid sampler settings: " + "; ".join(problems) + ".")

    @property
    def steps_per_chain(self) -> int:
        return self.burn_in + self.draws * self.steps_between

    @property
    def is_approximate(self) -> bool:
        """True when only a subset of the parameters is sampled."""
        return bool(self.param_patterns)

    def sampling_key(self) -> dict:
        """The fields that determine the chains' path (scoring-only and storage-only fields excluded)."""
        d = self.to_dict()
        for k in ("score_batch_size", "score_dtype", "trace_dtype", "device", "keep_draws", "draws_dtype"):
            d.pop(k)
        return d

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["param_patterns"] = list(self.param_patterns)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SamplerConfig":
        if not isinstance(d, dict):
            raise ConfigError(f"A sampler config must be a dict of settings (got {type(d).__name__}).")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"Unknown sampler settings: {sorted(unknown)}. Known: {sorted(known)}.")
        d = dict(d)
        if "param_patterns" in d:
            d["param_patterns"] = tuple(d["param_patterns"])
        return cls(**d)

    def stabilize_advice(self) -> str:
        """What to change when a chain diverges: a smaller step, and a larger γ only while γ can still grow."""
        if self.gamma * 10 <= GAMMA_MAX:
            return (f"Lower step_size (now {self.step_size:g}) or raise gamma (now {self.gamma:g}, at most "
                    f"{GAMMA_MAX:g}).")
        return (f"Lower step_size (now {self.step_size:g}); gamma is already {self.gamma:g}, near its maximum "
                f"{GAMMA_MAX:g}, so lower nbeta (now {self.nbeta:g}) too.")

    def replace(self, **changes) -> "SamplerConfig":
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ConfigError(f"Unknown sampler settings: {unknown}. Known: {sorted(known)}.")
        return dataclasses.replace(self, **changes)

    @classmethod
    def coerce(cls, config, what: str = "config") -> "SamplerConfig":
        """`config` if it is a SamplerConfig; ConfigError saying how to make one otherwise."""
        if isinstance(config, cls):
            return config
        raise ConfigError(f"{what} must be a bif.SamplerConfig (got {type(config).__name__}): use bif.preset('smoke'),"
                          f" bif.preset('demo-cpu', draws=200) or bif.SamplerConfig.from_dict(d).")


def help_text(name: str) -> str:
    """The help text of one SamplerConfig field."""
    return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(SamplerConfig)}[name]


# Presets are calibrated on the demo model (README "Sampler settings and presets"; `python -m bif bench` measures
# them): ε = 3e-4 mixed 2.7x better per draw than 1e-4 (ESS/draw 0.77 vs 0.28) at the same cost, and the source
# conversations of paraphrased queries stood out further (median z 5.6 vs 3.5). Other models: check the trace.
PRESETS: dict[str, SamplerConfig] = {
    # CPU demo: a few minutes on 2 cores; resolves the strongest influences only.
    "demo-cpu": SamplerConfig(step_size=3e-4, nbeta=300.0, gamma=3000.0, chains=4, draws=100, burn_in=50,
                              steps_between=2, batch_size=32),
    # Longer CPU run: 4x demo-cpu's draws, error bars half as wide; on the 51 held-out TEST queries
    # (`bif bench --trust-only`, MEASURED below) about twice demo-cpu's findings, and seeds agree more on them.
    "careful-cpu": SamplerConfig(step_size=3e-4, nbeta=300.0, gamma=3000.0, chains=4, draws=400, burn_in=100,
                                 steps_between=2, batch_size=32),
    # GPU: the reference's 4 chains x 200 draws at batch 32, thinned more; nβ, γ and ε from our calibration.
    "paper-gpu": SamplerConfig(step_size=3e-4, nbeta=300.0, gamma=3000.0, chains=4, draws=200, burn_in=200,
                               steps_between=5, batch_size=32, score_batch_size=256, score_dtype="bfloat16"),
    # SmolLM2-135M on a GPU: paper-gpu with a 10x smaller step. `bif bench --basin smollm2` (30 steps, batch 8):
    # with ε 3e-4 the sampling loss went 3.66 -> 14.1 after 3 steps, mean 21.3 (left the basin); 3e-5: mean 3.59.
    "smollm2-gpu": SamplerConfig(step_size=3e-5, nbeta=300.0, gamma=3000.0, chains=4, draws=200, burn_in=200,
                                 steps_between=5, batch_size=32, score_batch_size=256, score_dtype="bfloat16"),
    # Smallest run that still yields error bars: for tests and smoke checks, not for findings.
    "smoke": SamplerConfig(step_size=1e-4, nbeta=300.0, gamma=3000.0, chains=2, draws=10, burn_in=5,
                           steps_between=1, batch_size=8),
}


# Measured by `python -m bif bench --trust-only` (README "Trust on held-out queries", 2026-12-04, cache schema 2;
# rerun it to update), on the 51 held-out TEST queries with all 850 texts ranked, two independently seeded runs per
# preset: the share of findings the seeds agree on (flagged-set Jaccard), the share of null queries where the null
# flags anything, and the share of top-5 supporting lists the seeds have in common.
MEASURED = {"test_agreement": {"demo-cpu": 0.69, "careful-cpu": 0.85},
            "test_null_queries": {"demo-cpu": 0.0, "careful-cpu": 0.0},
            "top5_overlap": {"demo-cpu": 0.16, "careful-cpu": 0.22}}


def parse_settings(items: list[str] | None) -> dict:
    """'KEY=VALUE' strings (the CLI's --set) -> {field: value}, typed by the field: integers ('200', '2e3'),
    numbers ('.0001', '1e-4', '3e-4'), text; param_patterns comma-separated. ConfigError saying what to write."""
    fields = {f.name: f for f in dataclasses.fields(SamplerConfig)}
    out = {}
    for item in items or []:
        key, eq, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if key not in fields:
            raise ConfigError(f"--set {key}: unknown setting. Known: {', '.join(sorted(fields))}")
        default = fields[key].default
        example = f"{key}={default if not isinstance(default, tuple) else 'model.layers.1.*'}"
        if not eq or not value:
            raise ConfigError(f"--set {item}: give a value after '=', e.g. --set {example}.")
        if key == "param_patterns":
            out[key] = tuple(p.strip() for p in value.split(",") if p.strip())
        elif isinstance(default, bool) or isinstance(default, str):
            out[key] = value
        elif isinstance(default, int):
            out[key] = _number(item, value, example, integer=True)
        else:
            out[key] = _number(item, value, example, integer=False)
    return out


def _number(item: str, value: str, example: str, integer: bool) -> int | float:
    try:
        x = float(value)
    except ValueError:
        raise ConfigError(f"--set {item}: {value!r} is not a number; write e.g. --set {example}.") from None
    if not math.isfinite(x):
        raise ConfigError(f"--set {item}: must be a finite number, e.g. --set {example}.")
    if not integer:
        return x
    if x != int(x):
        raise ConfigError(f"--set {item}: must be a whole number, e.g. --set {example}.")
    return int(x)


def preset(name: str, **overrides) -> SamplerConfig:
    """A preset by name, optionally with some fields replaced."""
    if not isinstance(name, str) or name not in PRESETS:
        raise ConfigError(f"Unknown preset {name!r}. Choose one of {sorted(PRESETS)}.")
    return PRESETS[name].replace(**overrides) if overrides else PRESETS[name]
