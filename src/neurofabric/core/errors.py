"""The error hierarchy shared by every engine.

Messages name the parameter, the constraint, the value received and the fix, e.g.
"`tau_m` must be > 0 seconds, got -0.01".
"""


class NeurofabricError(Exception):
    """Root of every error raised on purpose by neurofabric."""


class ConfigError(NeurofabricError, ValueError):
    """A parameter is outside its allowed range or of the wrong kind."""


class ShapeError(NeurofabricError, ValueError):
    """An array has the wrong shape or dtype."""


class NotFittedError(NeurofabricError, RuntimeError):
    """An engine was used before it was fitted or built."""


class BackendUnavailableError(NeurofabricError, ImportError):
    """An explicitly requested compute backend is not installed or not usable."""


class DataError(NeurofabricError, ValueError):
    """A data file is missing, malformed or fails its checksum."""


class StorageError(NeurofabricError, OSError):
    """Reading or writing a file failed."""


class CheckpointError(StorageError):
    """A checkpoint is corrupt, truncated, of a foreign format or of an unsupported version."""


class DivergenceError(NeurofabricError, FloatingPointError):
    """A learning step produced a non-finite loss or update; nothing was written."""


class DistributedError(NeurofabricError, RuntimeError):
    """A rank of a run over many processes failed: every rank raises this with its message."""
