"""The cache root: `Store(root)` (runs/, jobs/, models/, uploads/), a job's folder (`JobFiles`) and the files of
a model directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bif.layout.names import COMPLETE, Entry
from bif.layout.runfiles import RunFiles


@dataclass(frozen=True)
class JobFiles:
    """jobs/<id>/: a background job (bif.service.jobs)."""

    dir: Path

    spec = Entry("job.json", "What to compute (bif.service.jobspec.JobSpec).")
    status = Entry("status.json")
    cancel = Entry("cancel")
    log = Entry("log.txt")
    launcher = Entry("launcher.json")

    @property
    def id(self) -> str:
        return self.dir.name

    def progress(self, rank: int = 0) -> Path:
        return self.dir / ("progress.json" if rank == 0 else f"progress.rank{rank}.json")

    def other_progress(self) -> list[Path]:
        """progress files of ranks > 0."""
        return sorted(self.dir.glob("progress.rank*.json"))


def model_weights(folder: Path) -> list[Path]:
    """The weight files of a local transformers model directory."""
    return [p for p in Path(folder).glob("*") if p.suffix in (".safetensors", ".bin", ".pt")]


def model_config(folder: Path) -> Path:
    """config.json of a transformers model directory (its presence makes a folder a model directory)."""
    return Path(folder) / "config.json"


@dataclass(frozen=True)
class Store:
    """A cache root and everything under it. Paths only: reading and writing is the other modules' business."""

    root: Path

    runs_dir = Entry("runs", base="root")
    jobs_dir = Entry("jobs", base="root")
    models_dir = Entry("models", base="root")
    uploads_dir = Entry("uploads", base="root")

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    # runs
    def run(self, key: str) -> RunFiles:
        return RunFiles(self.runs_dir / key)

    def run_checked(self, key: str) -> RunFiles | None:
        """The run folder `key` if it is a plain run folder (no path tricks such as '../x'), else None."""
        runs = self.runs_dir.resolve()
        d = (runs / key).resolve()
        return RunFiles(d) if d.parent == runs and d.is_dir() else None

    def runs(self) -> list[RunFiles]:
        """Every run folder, finished or not."""
        return [RunFiles(d) for d in self.runs_dir.glob("*")] if self.runs_dir.exists() else []

    def finished_runs(self) -> list[RunFiles]:
        """Finished runs, most recently finished first."""
        marks = self.runs_dir.glob(f"*/{COMPLETE}") if self.runs_dir.is_dir() else []
        return [RunFiles(m.parent) for m in sorted(marks, key=lambda m: -m.stat().st_mtime)]

    # jobs
    @property
    def jobs_start_lock(self) -> Path:
        """Held while a job is looked up and created, so that two simultaneous starts make one job."""
        return self.jobs_dir / "start.lock"

    def job(self, job_id: str) -> JobFiles:
        """A job folder; ValueError for ids that are not plain names (no path tricks)."""
        if not job_id or any(c in job_id for c in "/\\.") or job_id != Path(job_id).name:
            raise ValueError(f"not a job id: {job_id!r}")
        return JobFiles(self.jobs_dir / job_id)

    def job_ids(self) -> list[str]:
        """Ids of all jobs, newest first."""
        d = self.jobs_dir
        return sorted((p.name for p in d.iterdir() if p.is_dir()), reverse=True) if d.is_dir() else []

    # models and uploads
    def model(self, name: str) -> Path:
        return self.models_dir / name

    def model_lock(self, name: str) -> Path:
        return self.models_dir / f"{name}.lock"

    def upload(self, digest: str, suffix: str) -> Path:
        return self.uploads_dir / (digest + suffix.lower())
