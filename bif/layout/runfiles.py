"""The folders of a run: `RunFiles` (runs/<key>/), the sets added to it afterwards (`QueryFiles`, `RankedFiles`)
and `TraceFiles` (bif.core.stream.record's folder); `Sealed` is what they share (COMPLETE, chain files)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bif.layout.names import COMPLETE, GROWS_FROM, PARTIAL, VERIFIED, Entry, chain_name, draws_name, state_name


@dataclass(frozen=True)
class Sealed:
    """A folder sealed by a COMPLETE marker."""

    dir: Path

    complete = Entry(COMPLETE)
    verified = Entry(VERIFIED)
    lock = Entry("lock")

    @property
    def is_complete(self) -> bool:
        return self.complete.exists()

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
    examples = Entry("examples.safetensors")

    @property
    def meta(self) -> Path:
        return self.dir / self.META

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

    request = Entry("request.json")
    examples = Entry("examples.safetensors")
    texts = Entry("texts.json")
    init = Entry("init.safetensors")
    draws_json = Entry("draws.json")
    grows_from = Entry(GROWS_FROM, 'In a run that continues a shorter one (bif.store.grow): {"key", "draws"} of it.')
    parts = Entry("parts", "Only while a distributed run is in progress: the ranks' shards (bif.dist).")
    queries_dir = Entry("queries")
    quarantine = Entry("quarantine", "Added query sets or ranked texts found damaged, set aside by open_run.")

    @property
    def key(self) -> str:
        return self.dir.name

    def draws(self, c: int) -> Path:
        return self.dir / draws_name(c)

    def state(self, c: int) -> Path:
        return self.dir / state_name(c)

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

    def query(self, qkey: str) -> QueryFiles:
        return QueryFiles(self.queries_dir / qkey)

    def query_sets(self) -> list[QueryFiles]:
        """The finished query sets, in the order `Run.queries` lists them."""
        return [QueryFiles(m.parent) for m in sorted(self.queries_dir.glob(f"*/{COMPLETE}"))]

    @property
    def ranked(self) -> "RankedFiles":
        return RankedFiles(self.dir / "ranked")

    def markers(self) -> list[Path]:
        """The COMPLETE markers of the run, its query sets and its ranked texts (they change when one finishes)."""
        return [self.complete, *sorted(self.queries_dir.glob(f"*/{COMPLETE}")), self.ranked.complete]

    def files(self) -> list[Path]:
        return [p for p in self.dir.rglob("*") if p.is_file()]


@dataclass(frozen=True)
class TraceFiles(Sealed):
    """A folder written by `bif.core.stream.record`: config.json and one chain file per chain."""

    config = Entry("config.json")
