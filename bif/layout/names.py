"""The names every part of the layout shares: the markers of a sealed folder, the per-chain file names, and `Entry`,
a fixed name inside a folder read as an attribute."""

from __future__ import annotations

from pathlib import Path

COMPLETE = "COMPLETE"  # {name: sha256} of a sealed folder's files; written last (bif.core.files.seal)
VERIFIED = "VERIFIED"  # {name: [size, mtime_ns, sha256]} of the files last found intact
GROWS_FROM = "grows_from.json"  # in a run that continues a shorter one: {"key", "draws"} of that run
PARTIAL = ".partial"  # suffix of a file being written (renamed into place when finished)
BUILD_INFO = "build_info.json"  # written last into a built-in model's folder: the build is finished


class Entry:
    """A file or folder with a fixed name inside an instance's folder (`dir`, or `root` for the Store), read as an
    attribute: `RunFiles(d).request` is d / "request.json". One line per name instead of a property each."""

    def __init__(self, name: str, doc: str | None = None, base: str = "dir"):
        self.name, self.base, self.__doc__ = name, base, doc or f"{name} in the folder"

    def __get__(self, obj, owner=None) -> Path:
        return self if obj is None else getattr(obj, self.base) / self.name


def chain_name(chain: int) -> str:
    """The file of chain `chain`'s loss trace inside a run, query set or trace folder."""
    return f"chain_{chain:03d}.safetensors"


def draws_name(chain: int) -> str:
    """The file of chain `chain`'s stored draws inside a run folder."""
    return f"draws_{chain:03d}.safetensors"


def state_name(chain: int) -> str:
    """The file of chain `chain`'s last state inside a run folder (bif.core.chainstate)."""
    return f"state_{chain:03d}.safetensors"
