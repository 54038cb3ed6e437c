"""The checkpoint format shared by every engine.

A checkpoint is a directory::

    manifest.json      {"format": "neurofabric-checkpoint", "format_version": 1,
                        "engine": ..., "params": {...}, "meta": {...},
                        "arrays": {name: {"file", "dtype", "shape", "sha256"}}}
    <name>.arrow       one uncompressed Arrow IPC file per array (memory-mapped on load)

It is written into a temporary sibling and renamed into place, so a crash never leaves a
half-written checkpoint, and the previous one survives until the new one is complete.
Checksums are verified on load. Nothing is pickled.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from neurofabric.core.errors import CheckpointError

log = logging.getLogger(__name__)

FORMAT_NAME = "neurofabric-checkpoint"
FORMAT_VERSION = 1
_ALLOWED_KINDS = "biuf"


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` returns."""

    engine: str
    params: dict[str, Any]
    arrays: dict[str, np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The hex SHA-256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _write_array(path: Path, arr: np.ndarray) -> None:
    flat = np.ascontiguousarray(arr).reshape(-1)
    if flat.dtype == np.bool_:
        flat = flat.view(np.uint8)
    table = pa.table({"values": pa.array(flat)})
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)


def _read_array(path: Path, dtype: str, shape: list[int]) -> np.ndarray:
    source = pa.memory_map(str(path), "r")
    table = pa.ipc.open_file(source).read_all()
    column = table.column("values")
    want = np.dtype(dtype)
    if column.num_chunks == 0:
        return np.empty(shape, dtype=want)
    if column.num_chunks != 1:
        column = pa.chunked_array([pa.concat_arrays(column.chunks)])
    values = column.chunk(0).to_numpy(zero_copy_only=column.null_count == 0)
    if want == np.bool_:
        values = values.view(np.bool_)
    if values.dtype != want:
        raise CheckpointError(f"{path.name}: stored dtype {values.dtype} but manifest says {want}")
    return values.reshape(shape)


@contextmanager
def atomic_directory(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write into; on success it replaces ``path``
    (the previous content survives until then), on failure it is removed."""
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        old = None
        if dest.exists():
            old = dest.parent / f".{dest.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(dest, old)
        os.replace(tmp, dest)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def save_checkpoint(
    path: str | os.PathLike[str],
    *,
    engine: str,
    params: Mapping[str, Any],
    arrays: Mapping[str, np.ndarray],
    meta: Mapping[str, Any] | None = None,
) -> Path:
    """Write a checkpoint directory atomically and return its path."""
    dest = Path(path)
    with atomic_directory(dest) as tmp:
        entries = {}
        for name, arr in arrays.items():
            arr = np.asarray(arr)
            if arr.dtype.kind not in _ALLOWED_KINDS:
                raise CheckpointError(f"array {name!r} has unsupported dtype {arr.dtype}")
            if not name.replace("_", "").replace(".", "").isalnum():
                raise CheckpointError(f"array name {name!r} must be alphanumeric, '_' or '.'")
            fname = f"{name}.arrow"
            _write_array(tmp / fname, arr)
            entries[name] = {
                "file": fname,
                "dtype": arr.dtype.str,
                "shape": list(arr.shape),
                "sha256": sha256_file(tmp / fname),
            }
        manifest = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "engine": engine,
            "params": dict(params),
            "meta": dict(meta or {}),
            "arrays": entries,
        }
        text = json.dumps(manifest, indent=1, sort_keys=True, allow_nan=False)
        with open(tmp / "manifest.json", "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
    log.info("saved %s checkpoint to %s (%d arrays)", engine, dest, len(entries))
    return dest


def read_manifest(
    path: str | os.PathLike[str], *, format_name: str = FORMAT_NAME, version: int = FORMAT_VERSION
) -> dict[str, Any]:
    """The ``manifest.json`` of a saved directory, checked for its format name and version."""
    src = Path(path)
    mpath = src / "manifest.json"
    if not mpath.is_file():
        raise CheckpointError(f"{src} is not a saved {format_name}: no manifest.json in it")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{mpath}: manifest is not valid JSON ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != format_name:
        raise CheckpointError(
            f"{mpath}: not a {format_name} manifest (format="
            f"{manifest.get('format') if isinstance(manifest, dict) else None!r})"
        )
    if manifest.get("format_version") != version:
        raise CheckpointError(
            f"{mpath}: format_version {manifest.get('format_version')!r} is not supported by "
            f"this neurofabric (reads version {version}); upgrade neurofabric"
        )
    return manifest


def load_checkpoint(
    path: str | os.PathLike[str], *, engine: str | None = None, verify: bool = True
) -> Checkpoint:
    """Read a checkpoint; raise :class:`CheckpointError` if it is corrupt or foreign."""
    src = Path(path)
    mpath = src / "manifest.json"
    manifest = read_manifest(src)
    version = manifest["format_version"]
    if engine is not None and manifest.get("engine") != engine:
        raise CheckpointError(
            f"{src} holds a {manifest.get('engine')!r} checkpoint, not {engine!r}"
        )
    arrays = {}
    for name, entry in manifest.get("arrays", {}).items():
        try:
            fpath = src / entry["file"]
            if Path(entry["file"]).name != entry["file"]:
                raise CheckpointError(f"{mpath}: array file {entry['file']!r} is not a plain name")
            if not fpath.is_file():
                raise CheckpointError(f"{src}: array file {entry['file']} is missing")
            if verify and sha256_file(fpath) != entry["sha256"]:
                raise CheckpointError(f"{fpath}: sha256 mismatch, the file is corrupt")
            arrays[name] = _read_array(fpath, entry["dtype"], entry["shape"])
        except (KeyError, TypeError, ValueError, pa.ArrowException) as exc:
            raise CheckpointError(f"{src}: array {name!r} cannot be read ({exc})") from exc
    return Checkpoint(
        engine=manifest["engine"],
        params=manifest.get("params", {}),
        arrays=arrays,
        meta=manifest.get("meta", {}),
        format_version=version,
    )
