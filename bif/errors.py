"""Exceptions, and the one place that turns any error into a one-line message that says what to do.

Every error a user can cause is a `BIFError` whose message says what to do. `user_message(exc)` is what the CLI
prints and the app shows for any exception: a BIFError's message as is; well-known system errors (a missing or
read-only path, a full disk, out of memory) in words; anything else as an unexpected problem pointing to the log.
"""

from __future__ import annotations

import errno


class BIFError(Exception):
    """Base class: a problem the user can fix. The message is shown as is, without a traceback."""


class ConfigError(BIFError, ValueError):
    """A sampler, data or model setting is out of range or inconsistent (also: a bad argument to the API)."""


class ModelNotFound(BIFError, FileNotFoundError):
    """The model directory does not exist or does not hold a causal LM."""


class ModelRefused(ModelNotFound):
    """The directory holds a model, but not one BIF can trust: another architecture, missing or unexpected
    weights, damaged weight files, or not a causal language model."""


class DataError(BIFError, ValueError):
    """A training file or query cannot be read or is empty."""


class DivergedError(BIFError, FloatingPointError):
    """A chain produced NaN or Inf."""


class CacheError(BIFError):
    """A stored run is incomplete, corrupt or does not match what was asked for."""


class RunNotFound(CacheError):
    """No run with this key in the cache."""


class RunBusy(CacheError):
    """The run is being computed by another process (its lock is held)."""


class ReplayMismatch(CacheError):
    """Replaying a chain did not reproduce the stored sampling losses."""


class OutputError(BIFError, OSError):
    """A file cannot be written where the user asked (missing folder, a directory, read-only, a system path)."""


class Cancelled(BIFError):
    """The run was cancelled by the user."""


def _os_message(e: OSError) -> str | None:
    where = f" {e.filename!r}" if getattr(e, "filename", None) else ""
    return {
        errno.ENOENT: f"No such file or folder{where}. Check the path.",
        errno.ENOTDIR: f"A part of the path{where} is a file, not a folder. Check the path.",
        errno.EISDIR: f"{where.strip() or 'The path'} is a folder; give a file name inside it.",
        errno.EACCES: f"No permission to use{where}. Choose a path you may write to.",
        errno.EPERM: f"Not permitted to use{where}. Choose another path.",
        errno.EROFS: f"{where.strip() or 'The path'} is on a read-only file system. Choose another path.",
        errno.ENOSPC: f"The disk is full (writing{where}). Free some space (`bif runs`, `bif delete KEY`) and rerun.",
        errno.EEXIST: f"{where.strip() or 'The path'} already exists.",
    }.get(e.errno)


def as_bif_error(e: BaseException) -> BIFError | None:
    """`e` as a BIFError when it is one, or a system error a user can act on (a path, memory); else None."""
    if isinstance(e, BIFError):
        return e
    if isinstance(e, OSError) and (msg := _os_message(e)):
        return OutputError(msg)
    if isinstance(e, MemoryError):
        return BIFError("Out of memory. Use a smaller model, fewer scored samples (--n-scored) or shorter texts "
                        "(--max-length), or fewer processes (--procs 1).")
    if type(e).__name__ == "OutOfMemoryError":  # torch.cuda.OutOfMemoryError, without importing torch here
        return BIFError("The GPU ran out of memory. Lower score_batch_size or batch_size, or sample fewer "
                        "parameters (--last-blocks).")
    return None


def user_message(e: BaseException, log: str | None = None) -> str:
    """One line for the user: what went wrong and what to do. Never a traceback.

    `log`: where the details of an unexpected error were written (shown in the message)."""
    known = as_bif_error(e)
    if known is not None:
        return " ".join(str(known).split()) or type(known).__name__
    where = f" The details are in {log}." if log else " The details are in the log."
    return (f"Unexpected problem ({type(e).__name__}).{where} Rerunning resumes where it stopped; if it happens "
            "again, please report it with those details.")
