"""Shared foundation: errors, configuration, validation, seeds, backends, checkpoints."""

from neurofabric.core.errors import (
    BackendUnavailableError,
    CheckpointError,
    ConfigError,
    DataError,
    NeurofabricError,
    NotFittedError,
    ShapeError,
    StorageError,
)

__all__ = [
    "BackendUnavailableError",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "NeurofabricError",
    "NotFittedError",
    "ShapeError",
    "StorageError",
]
