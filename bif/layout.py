"""The cache's layout on disk: the only module that knows file and folder names.

    cache/                                  Store(root)
      runs/<key>/                           RunFiles: one finished (or resumable) run
        request.json                        the RunRequest as computed, with fingerprints (bif.store.request)
        examples.safetensors                token ids and masks of the scored training samples and the queries
        texts.json                          their texts and token strings (for display)
        init.safetensors                    losses at w* (written last of the inputs: marks them done)
        draws.json                          whether the run stores its draws, their size and why
        draws_000.safetensors               one per chain when it does (bif.core.draws)
        state_000.safetensors               one per chain: its last state, so a longer run continues it
        grows_from.json                     in a run that continues a shorter one: which (bif.store.grow)
        chain_000.safetensors               one per chain (bif.core.trace): losses at every draw, sampling loss
        chain_000.partial                   a chain being written (renamed when finished)
        parts/                              only while a distributed run is in progress (bif.dist)
        queries/<qkey>/                     QueryFiles: queries added later (queries.json, examples, chains)
        ranked/                             RankedFiles: the other training texts, ranked afterwards (rows.json...)
        quarantine/                         damaged query sets or ranked texts, set aside by open_run
        lock, COMPLETE, VERIFIED            file lock; sha256 of every file (written last); last verified stamps
      jobs/<id>/                            JobFiles: a background job (bif.service.jobs)
      models/<name>/                        built-in models (bif.lm.builtin)
      uploads/<sha256[:16]><suffix>         training files uploaded in the app
    <any directory>/                        TraceFiles: `bif.core.stream.record`'s chain files and config.json

Every other module asks these classes for paths; none joins a file name by hand. This module imports nothing
from bif, so every layer may use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

COMPLETE = "COMPLETE"  # {name: sha256} of a sealed folder's files; written last (bif.core.files.seal)
VERIFIED = "VERIFIED"  # {name: [size, mtime_ns, sha256]} of the files last found intact
GROWS_FROM = "grows_from.json"  # in a run that continues a shorter one: {"key", "draws"} of that run
PARTIAL = ".partial"  # suffix of a file being written (renamed into place when finished)


def chain_name(chain: int) -> str:
    """The file of chain `chain`'s loss trace inside a run, query set or trace folder."""
    return f"chain_{chain:03d}.safetensors"


def draws_name(chain: int) -> str:
    """The file of chain `chain`'s stored draws inside a run folder."""
    return f"draws_{chain:03d}.safetensors"


def state_name(chain: int) -> str:
    """The file of chain `chain`'s last state inside a run folder (bif.core.chainstate)."""
    return f"state_{chain:03d}.safetensors"


@dataclass(frozen=True)
class Sealed:
    """A folder sealed by a COMPLETE marker."""

    dir: Path

    @property
    def complete(self) -> Path:
        return self.dir / COMPLETE

    @property
    def verified(self) -> Path:
        return self.dir / VERIFIED

    @property
    def is_complete(self) -> bool:
        return self.complete.exists()

    @property
    def lock(self) -> Path:
        return self.dir / "lock"

    def chain(self, c: int) -> Path:
        return self.dir / chain_name(c)

    def chain_partial(self, c: int) -> Path:
        """Chain `c`'s file while it is written (bif.core.chainwriter.ChainWriter renames it to `chain(c)`)."""
        return self.chain(c).with_suffix(PARTIAL)

    def chains(self, n: int) -> list[Path]:
        return [self.chain(c) for c in range(n)]

    def existing_chains(self) -> list[Path]:
        """The finished chain files present, in chain order."""
        return sorted(self.dir.glob("chain_*.safetensors"))


@dataclass(frozen=True)
class AddedSet(Sealed):
    """A sealed folder added to a finished run: what it holds (META json), examples, one chain file per chain."""

    META = ""

    @property
    def meta(self) -> Path:
        return self.dir / self.META

    @property
    def examples(self) -> Path:
        return self.dir / "examples.safetensors"

    def sealed_names(self, chains: int) -> list[str]:
        return [self.META, "examples.safetensors"] + [chain_name(c) for c in range(chains)]


@dataclass(frozen=True)
class QueryFiles(AddedSet):
    """queries/<qkey>/ of a run: queries added after it finished (by replay or at its stored draws)."""

    META = "queries.json"

    @property
    def key(self) -> str:
        return self.dir.name


@dataclass(frozen=True)
class RankedFiles(AddedSet):
    """ranked/ of a run: its other training texts, scored afterwards at its stored draws (bif.store.rank)."""

    META = "rows.json"

    @property
    def rows(self) -> Path:
        return self.meta


@dataclass(frozen=True)
class RunFiles(Sealed):
    """runs/<key>/: one run."""

    @property
    def key(self) -> str:
        return self.dir.name

    @property
    def request(self) -> Path:
        return self.dir / "request.json"

    @property
    def examples(self) -> Path:
        return self.dir / "examples.safetensors"

    @property
    def texts(self) -> Path:
        return self.dir / "texts.json"

    @property
    def init(self) -> Path:
        return self.dir / "init.safetensors"

    @property
    def draws_json(self) -> Path:
        return self.dir / "draws.json"

    def draws(self, c: int) -> Path:
        return self.dir / draws_name(c)

    def state(self, c: int) -> Path:
        return self.dir / state_name(c)

    @property
    def grows_from(self) -> Path:
        """In a run that continues a shorter one (bif.store.grow): {"key", "draws"} of that run."""
        return self.dir / GROWS_FROM

    @property
    def parts(self) -> Path:
        return self.dir / "parts"

    def part(self, chain: int, index: int, count: int) -> Path:
        """One rank's shard of a chain while a distributed run is in progress."""
        return self.parts / f"chain_{chain:03d}.shard-{index}-of-{count}.safetensors"

    def init_part(self, rank: int, world: int) -> Path:
        return self.parts / f"init.rank-{rank}-of-{world}.safetensors"

    def partials(self) -> list[Path]:
        return list(self.dir.glob("*" + PARTIAL))

    def sealed_names(self) -> list[str]:
        """The files COMPLETE seals: every .json and .safetensors file of the run folder."""
        return sorted(p.name for p in self.dir.iterdir() if p.suffix in (".json", ".safetensors"))

    @property
    def queries_dir(self) -> Path:
        return self.dir / "queries"

    def query(self, qkey: str) -> QueryFiles:
        return QueryFiles(self.queries_dir / qkey)

    def query_sets(self) -> list[QueryFiles]:
        """The finished query sets, in the order `Run.queries` lists them."""
        return [QueryFiles(m.parent) for m in sorted(self.queries_dir.glob(f"*/{COMPLETE}"))]

    @property
    def ranked(self) -> "RankedFiles":
        return RankedFiles(self.dir / "ranked")

    @property
    def quarantine(self) -> Path:
        """Added query sets or ranked texts found damaged, set aside by open_run (not deleted)."""
        return self.dir / "quarantine"

    def markers(self) -> list[Path]:
        """The COMPLETE markers of the run, its query sets and its ranked texts (they change when one finishes)."""
        return [self.complete, *sorted(self.queries_dir.glob(f"*/{COMPLETE}")), self.ranked.complete]

    def files(self) -> list[Path]:
        return [p for p in self.dir.rglob("*") if p.is_file()]


@dataclass(frozen=True)
class TraceFiles(Sealed):
    """A folder written by `bif.core.stream.record`: config.json and one chain file per chain."""

    @property
    def config(self) -> Path:
        return self.dir / "config.json"


@dataclass(frozen=True)
class JobFiles:
    """jobs/<id>/: a background job (bif.service.jobs)."""

    dir: Path

    @property
    def id(self) -> str:
        return self.dir.name

    @property
    def spec(self) -> Path:
        """What to compute (bif.service.jobs.JobSpec)."""
        return self.dir / "job.json"

    @property
    def status(self) -> Path:
        return self.dir / "status.json"

    def progress(self, rank: int = 0) -> Path:
        return self.dir / ("progress.json" if rank == 0 else f"progress.rank{rank}.json")

    def other_progress(self) -> list[Path]:
        """progress files of ranks > 0."""
        return sorted(self.dir.glob("progress.rank*.json"))

    @property
    def cancel(self) -> Path:
        return self.dir / "cancel"

    @property
    def log(self) -> Path:
        return self.dir / "log.txt"

    @property
    def launcher(self) -> Path:
        return self.dir / "launcher.json"


def model_weights(folder: Path) -> list[Path]:
    """The weight files of a local transformers model directory."""
    return [p for p in Path(folder).glob("*") if p.suffix in (".safetensors", ".bin", ".pt")]


def model_config(folder: Path) -> Path:
    """config.json of a transformers model directory (its presence makes a folder a model directory)."""
    return Path(folder) / "config.json"


BUILD_INFO = "build_info.json"  # written last into a built-in model's folder: the build is finished


@dataclass(frozen=True)
class Store:
    """A cache root and everything under it. Paths only: reading and writing is the other modules' business."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    # runs
    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

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
    def jobs_dir(self) -> Path:
        return self.root / "jobs"

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
    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    def model(self, name: str) -> Path:
        return self.models_dir / name

    def model_lock(self, name: str) -> Path:
        return self.models_dir / f"{name}.lock"

    @property
    def uploads_dir(self) -> Path:
        return self.root / "uploads"

    def upload(self, digest: str, suffix: str) -> Path:
        return self.uploads_dir / (digest + suffix.lower())
