"""JobSpec: what a background job computes. Written once to the job's folder (job.json), parsed once by the worker.

kind='run' computes (or resumes, or opens) the RunRequest `run`; 'replay' adds run.queries to the finished run
`run_key` (at its stored draws, or by replaying its chains); 'rank' ranks the training texts run `run_key` does
not rank, at its stored draws (bif.store.rank). The builders below make each kind from what the user chose.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from bif.errors import ConfigError
from bif.store.request import RunRequest

KINDS = ("run", "replay", "rank")


@dataclass(frozen=True)
class JobSpec:
    kind: str
    run: RunRequest
    cache_root: str
    run_key: str | None = None
    preset: str | None = None  # the preset's name as the Run page showed it (display only)
    procs: int | None = None  # worker processes; None = bif.service.jobs.default_procs

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown job kind {self.kind!r}")
        object.__setattr__(self, "cache_root", str(Path(self.cache_root).resolve()))

    @property
    def query(self):
        """The query the job is about (the first of its request; None for a request without queries)."""
        return self.run.queries[0] if self.run.queries else None

    @property
    def background(self) -> bool:
        """Follow-up work nobody waits for (ranking the rest of the training set after a run): its worker runs at a
        lower CPU priority (bif.service.worker.BACKGROUND_NICE), so a question asked meanwhile is not slowed by it."""
        return self.kind == "rank"

    def to_json(self) -> dict:
        return {"kind": self.kind, "run": self.run.to_json(), "cache_root": self.cache_root,
                "run_key": self.run_key, "preset": self.preset, "procs": self.procs}

    @classmethod
    def from_json(cls, d: dict) -> "JobSpec":
        """ConfigError if d is not a job spec."""
        try:
            return cls(kind=d["kind"], run=RunRequest.from_json(d["run"]), cache_root=d["cache_root"],
                       run_key=d.get("run_key"), preset=d.get("preset"), procs=d.get("procs"))
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"Not a job spec ({e}).") from e


def run_job_spec(request: RunRequest, cache_root: str | Path, preset: str | None = None) -> JobSpec:
    """Compute (or resume, or open) the run `request` asks for."""
    return JobSpec("run", request, str(cache_root), preset=preset)


def ask_job_spec(run, queries, cache_root: str | Path) -> JobSpec:
    """Add `queries` to the finished run `run` (a bif.store.runs.Run, or its key with `request`)."""
    return JobSpec("replay", run.asked.with_queries(queries), str(cache_root), run_key=run.key)


def replay_job_spec(request: RunRequest, run_key: str, cache_root: str | Path, preset: str | None = None) -> JobSpec:
    """Add request.queries to the cached run `run_key` whose model, data and settings equal the request's."""
    return JobSpec("replay", request, str(cache_root), run_key=run_key, preset=preset)


def rank_job_spec(run, cache_root: str | Path) -> JobSpec:
    """Rank the training texts the finished run `run` does not rank, at its stored draws."""
    asked = run.asked
    return JobSpec("rank", asked.with_queries(asked.queries[:1]), str(cache_root), run_key=run.key)


def grow_job_spec(run, draws: int, cache_root: str | Path) -> JobSpec:
    """The run `run` with `draws` draws per chain (it continues the finished chains: bif.store.grow)."""
    asked = run.asked
    return JobSpec("run", replace(asked, config=asked.config.replace(draws=draws)), str(cache_root))
