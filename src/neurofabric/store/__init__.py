"""Shared storage: columnar arrays in Arrow IPC (zero-copy memory maps) and Parquet, and a
sparse, sharded, demand-mapped page space."""

from neurofabric.core.checkpoint import sha256_file
from neurofabric.store.columns import (
    ColumnFile,
    read_columns,
    read_parquet,
    write_columns,
    write_parquet,
)
from neurofabric.store.sharded import ShardedPageStore

__all__ = [
    "ColumnFile",
    "ShardedPageStore",
    "read_columns",
    "read_parquet",
    "sha256_file",
    "write_columns",
    "write_parquet",
]
