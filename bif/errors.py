"""Exceptions. Every error a user can cause is a `BIFError` whose message says what to do."""


class BIFError(Exception):
    """Base class: a problem the user can fix. The message is shown as is, without a traceback."""


class ConfigError(BIFError, ValueError):
    """A sampler, data or model setting is out of range or inconsistent."""


class ModelNotFound(BIFError, FileNotFoundError):
    """The model directory does not exist or does not hold a causal LM."""


class DataError(BIFError, ValueError):
    """A training file or query cannot be read or is empty."""


class DivergedError(BIFError, FloatingPointError):
    """A chain produced NaN or Inf."""


class CacheError(BIFError):
    """A stored run is incomplete, corrupt or does not match what was asked for."""


class ReplayMismatch(CacheError):
    """Replaying a chain did not reproduce the stored sampling losses."""


class Cancelled(BIFError):
    """The run was cancelled by the user."""
