"""Columns of numpy arrays in uncompressed Arrow IPC files, read back zero-copy.

An Arrow IPC *file* written uncompressed keeps each column of each record batch as one
contiguous, aligned buffer, so a memory-mapped reader hands numpy a view on the mapped pages:
opening costs a parse of the footer and no data is read until it is touched. Record batches
split a file into ranges (e.g. one per network layer) that can be read on their own.

Parquet is offered for exchange with other tools (it is compressed and always copied on read).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from neurofabric.core.checkpoint import atomic_file
from neurofabric.core.errors import DataError, StorageError

_META_KEY = b"neurofabric"


def _table(columns: Mapping[str, np.ndarray], rows: slice | None = None) -> pa.RecordBatch:
    arrays = []
    for name, values in columns.items():
        arr = np.ascontiguousarray(values)
        if arr.ndim != 1:
            raise StorageError(f"column {name!r} must be 1-D, got shape {arr.shape}")
        if rows is not None:
            arr = arr[rows]
        arrays.append(pa.array(arr))
    return pa.RecordBatch.from_arrays(arrays, names=list(columns))


def _check_spans(batches: Sequence[tuple[int, int]] | None, n: int) -> list[tuple[int, int]]:
    """The record-batch row ranges: each ``(start, stop)`` with ``start <= stop``, each
    starting where the previous one stopped, from row 0 to row ``n`` (so every row is written
    exactly once)."""
    if batches is None:
        return [(0, n)]
    spans = []
    for k, span in enumerate(batches):
        try:
            start, stop = (int(x) for x in span)
        except (TypeError, ValueError) as exc:
            raise StorageError(
                f"`batches[{k}]` must be a (start, stop) pair of ints, got {span!r}"
            ) from exc
        expect = spans[-1][1] if spans else 0
        if start != expect or stop < start:
            raise StorageError(
                f"`batches` must be contiguous ranges covering rows 0..{n} in order, each "
                f"starting where the previous one stopped: batches[{k}] = {span!r} should "
                f"start at {expect} and not end before it"
            )
        spans.append((start, stop))
    if (spans[-1][1] if spans else 0) != n:
        raise StorageError(
            f"`batches` must end at row {n} (the column length), got "
            f"{spans[-1][1] if spans else 'no batches'}; add a last (start, {n}) range"
        )
    return spans


def write_columns(
    path: str | os.PathLike[str],
    columns: Mapping[str, np.ndarray],
    *,
    batches: Sequence[tuple[int, int]] | None = None,
    metadata: str | None = None,
) -> None:
    """Write equal-length 1-D ``columns`` to an uncompressed Arrow IPC file.

    ``batches`` splits the rows into record batches ``[(start, stop), ...]``: contiguous,
    in order, covering every row exactly once (else :class:`StorageError`); ``metadata`` is a
    string stored in the schema. The file is written to a temporary sibling, fsynced and
    renamed into place, so a crash leaves the previous file or the new one.
    """
    lengths = {len(v) for v in columns.values()}
    if len(lengths) > 1:
        raise StorageError(f"columns must have equal lengths, got {sorted(lengths)}")
    n = lengths.pop() if lengths else 0
    spans = _check_spans(batches, n)
    first = _table(columns, slice(0, 0))
    schema = first.schema
    if metadata is not None:
        schema = schema.with_metadata({_META_KEY: metadata.encode("utf-8")})
    with (
        atomic_file(path) as tmp,
        pa.OSFile(os.fspath(tmp), "wb") as sink,
        pa.ipc.new_file(sink, schema) as writer,
    ):
        for start, stop in spans:
            writer.write_batch(
                _table(columns, slice(start, stop)).replace_schema_metadata(schema.metadata)
            )


@dataclass
class ColumnFile:
    """An opened Arrow IPC column file: numpy views per column and per record batch."""

    path: Path
    reader: pa.ipc.RecordBatchFileReader
    source: pa.NativeFile
    metadata: str | None

    @property
    def num_batches(self) -> int:
        return self.reader.num_record_batches

    def batch(self, i: int, columns: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """The arrays of record batch ``i`` (only ``columns`` if given), zero-copy views."""
        rb = self.reader.get_batch(i)
        names = list(columns) if columns is not None else rb.schema.names
        missing = [c for c in names if c not in rb.schema.names]
        if missing:
            raise DataError(f"{self.path}: column(s) {missing} missing (has {rb.schema.names})")
        return {c: _to_numpy(rb.column(c), self.path, c) for c in names}

    def columns(self, columns: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Whole columns: a view when the file has one batch, else a concatenated copy."""
        if self.num_batches == 1:
            return self.batch(0, columns)
        parts = [self.batch(i, columns) for i in range(self.num_batches)]
        names = list(columns) if columns is not None else self.reader.schema.names
        if not parts:
            return {
                c: np.empty(0, self.reader.schema.field(c).type.to_pandas_dtype()) for c in names
            }
        return {c: np.concatenate([p[c] for p in parts]) for c in names}


def _to_numpy(col: pa.Array, path: Path, name: str) -> np.ndarray:
    if col.null_count:
        raise DataError(f"{path}: column {name!r} has {col.null_count} null values")
    try:
        return col.to_numpy(zero_copy_only=True)
    except pa.ArrowInvalid as exc:
        raise DataError(f"{path}: column {name!r} cannot be viewed zero-copy ({exc})") from exc


def read_columns(path: str | os.PathLike[str], *, mmap: bool = True) -> ColumnFile:
    """Open an Arrow IPC file written by :func:`write_columns` (memory-mapped by default)."""
    p = Path(path)
    if not p.is_file():
        raise StorageError(f"{p}: no such column file")
    try:
        source = pa.memory_map(str(p), "r") if mmap else pa.BufferReader(p.read_bytes())
        reader = pa.ipc.open_file(source)
    except pa.ArrowException as exc:
        raise DataError(f"{p}: not an Arrow IPC file ({exc})") from exc
    meta = (reader.schema.metadata or {}).get(_META_KEY)
    return ColumnFile(p, reader, source, meta.decode("utf-8") if meta is not None else None)


def write_parquet(
    path: str | os.PathLike[str], columns: Mapping[str, np.ndarray], *, metadata: str | None = None
) -> None:
    """Write columns to a Parquet file (zstd), ``metadata`` stored in the schema (atomically)."""
    table = pa.Table.from_batches([_table(columns)])
    if metadata is not None:
        table = table.replace_schema_metadata({_META_KEY: metadata.encode("utf-8")})
    with atomic_file(path) as tmp:
        pq.write_table(table, os.fspath(tmp), compression="zstd")


def read_parquet(
    path: str | os.PathLike[str], columns: Sequence[str]
) -> tuple[dict[str, np.ndarray], str | None]:
    """Read ``columns`` of a Parquet file as numpy arrays, with the schema metadata string."""
    p = Path(path)
    if not p.is_file():
        raise StorageError(f"{p}: no such Parquet file")
    try:
        table = pq.read_table(str(p))
    except pa.ArrowException as exc:
        raise DataError(f"{p}: not a Parquet file ({exc})") from exc
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise DataError(f"{p}: column(s) {missing} missing (has {table.column_names})")
    meta = (table.schema.metadata or {}).get(_META_KEY)
    out = {c: table.column(c).to_numpy() for c in columns}
    return out, meta.decode("utf-8") if meta is not None else None
