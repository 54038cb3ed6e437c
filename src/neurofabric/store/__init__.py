"""Shared storage: columnar arrays in Arrow IPC (zero-copy memory maps) and Parquet."""

from neurofabric.core.checkpoint import sha256_file
from neurofabric.store.columns import (
    ColumnFile,
    read_columns,
    read_parquet,
    write_columns,
    write_parquet,
)

__all__ = [
    "ColumnFile",
    "read_columns",
    "read_parquet",
    "sha256_file",
    "write_columns",
    "write_parquet",
]
