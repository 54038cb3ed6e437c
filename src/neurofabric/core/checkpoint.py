"""The checkpoint format shared by every engine.

A checkpoint is a directory::

    manifest.json      {"format": "neurofabric-checkpoint", "format_version": 1,
                        "engine": ..., "params": {...}, "meta": {...},
                        "arrays": {name: {"file", "dtype", "shape", "sha256"}}}
    <name>.arrow       one uncompressed Arrow IPC file per array (memory-mapped on load)

or, saved with ``bundle=True`` (format_version 2, for models of many small arrays, where one
file read beats several: a 10 KB text model loads from two files instead of seven)::

    manifest.json      ... "arrays": {name: {"file": "arrays.arrow", "offset", "nbytes",
                        "dtype", "shape", "sha256"}}
    arrays.arrow       one Arrow IPC file, one uint8 column: every array's bytes, each at an
                       8-byte aligned offset; "sha256" is the file's, checked once

It is written into a temporary sibling, fsynced, and swapped into place (see
:func:`atomic_directory`), so a crash or power loss at any step leaves either the previous or
the new checkpoint (an interrupted swap is completed by the next load). Checksums are verified
on load, every array's dtype and shape against the manifest, and engines check values (index
ranges, row pointers) with :meth:`Checkpoint.array` before a kernel sees them. Nothing is
pickled.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
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

from neurofabric.core.errors import CheckpointError, StorageError

log = logging.getLogger(__name__)

FORMAT_NAME = "neurofabric-checkpoint"
FORMAT_VERSION = 1
#: a checkpoint whose arrays share one file (``save_checkpoint(bundle=True)``)
BUNDLED_VERSION = 2
READ_VERSIONS = (FORMAT_VERSION, BUNDLED_VERSION)
BUNDLE_FILE = "arrays.arrow"
_ALIGN = 8  # the largest itemsize: every array a view at an aligned address
_ALLOWED_KINDS = "biuf"


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` returns.

    Loaders check every array they use with :meth:`array` and :meth:`indptr` before any
    kernel sees it: a file whose checksums match can still hold values that would make a
    kernel index out of bounds (written by a bug, or by hand).
    """

    engine: str
    params: dict[str, Any]
    arrays: dict[str, np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    path: Path | None = None
    files: dict[str, str] = field(default_factory=dict)

    def fail(self, name: str, problem: str) -> CheckpointError:
        """A :class:`CheckpointError` naming the checkpoint, the array and its file."""
        where = f"{self.path}: " if self.path is not None else ""
        file = f" (file {self.files[name]})" if name in self.files else ""
        return CheckpointError(
            f"{where}array {name!r}{file} {problem}; the checkpoint is corrupt or was not "
            "written by this neurofabric: restore it from a backup or save it again"
        )

    def array(
        self,
        name: str,
        *,
        kinds: str = "biuf",
        shape: tuple[int | None, ...] | None = None,
        lo: float | None = None,
        hi: float | None = None,
        finite: bool = False,
    ) -> np.ndarray:
        """The array ``name``, checked: dtype kind in ``kinds``, ``shape`` (None: any size on
        that axis), every value in ``[lo, hi]``, all finite."""
        if name not in self.arrays:
            raise self.fail(name, "is missing from the manifest")
        arr = self.arrays[name]
        if arr.dtype.kind not in kinds:
            raise self.fail(name, f"must have a dtype of kind {kinds!r}, got {arr.dtype}")
        if shape is not None and (
            arr.ndim != len(shape)
            or any(
                want is not None and got != want for got, want in zip(arr.shape, shape, strict=True)
            )
        ):
            want_s = tuple("any" if w is None else w for w in shape)
            raise self.fail(name, f"must have shape {want_s}, got {arr.shape}")
        if arr.size and arr.dtype.kind == "f" and (finite or lo is not None or hi is not None):
            if not np.all(np.isfinite(arr)):
                raise self.fail(name, "must hold finite values, got NaN or infinity")
        if arr.size and lo is not None and arr.min() < lo:
            raise self.fail(name, f"must hold values >= {lo}, got {arr.min()}")
        if arr.size and hi is not None and arr.max() > hi:
            raise self.fail(name, f"must hold values <= {hi}, got {arr.max()}")
        return arr

    def indptr(self, name: str, n_rows: int, n_items: int | None = None) -> np.ndarray:
        """A CSR row pointer: integers, ``n_rows + 1`` of them, from 0, non-decreasing,
        ending at ``n_items`` when given."""
        ptr = self.array(name, kinds="iu", shape=(n_rows + 1,))
        if ptr[0] != 0:
            raise self.fail(name, f"must start at 0, got {ptr[0]}")
        if n_rows and np.any(np.diff(ptr.astype(np.int64)) < 0):
            raise self.fail(name, "must be non-decreasing (a CSR row pointer)")
        if n_items is not None and ptr[-1] != n_items:
            raise self.fail(name, f"must end at {n_items} (the number of entries), got {ptr[-1]}")
        return ptr


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


#: arrays in files up to this size are read into memory in one call (and hashed from those
#: bytes); larger ones are memory-mapped, so that a big array loads without a copy
SMALL_FILE = 1 << 20


def _check_layout(name: str, dtype: str, shape: Any) -> np.dtype:
    want = np.dtype(dtype)
    if want.kind not in _ALLOWED_KINDS or not want.isnative:
        raise CheckpointError(f"{name}: dtype {dtype!r} is not a native numeric dtype")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise CheckpointError(f"{name}: shape {shape!r} is not a list of sizes >= 0")
    return want


def _read_values(path: Path, data: bytes | None = None) -> np.ndarray | None:
    """The one column of an Arrow file, from ``data`` (its bytes, already read) or
    memory-mapped; None when it holds no chunk."""
    source = pa.py_buffer(data) if data is not None else pa.memory_map(str(path), "r")
    table = pa.ipc.open_file(source).read_all()
    column = table.column("values")
    if column.num_chunks == 0:
        return None
    if column.num_chunks != 1:
        column = pa.chunked_array([pa.concat_arrays(column.chunks)])
    return column.chunk(0).to_numpy(zero_copy_only=column.null_count == 0)


def _read_array(path: Path, dtype: str, shape: list[int], data: bytes | None = None) -> np.ndarray:
    """The array of an Arrow file (one per array), checked against the manifest."""
    want = _check_layout(path.name, dtype, shape)
    values = _read_values(path, data)
    if values is None:
        return np.empty(shape, dtype=want)
    if want == np.bool_:
        values = values.view(np.bool_)
    if values.dtype != want:
        raise CheckpointError(f"{path.name}: stored dtype {values.dtype} but manifest says {want}")
    if len(values) != math.prod(shape):
        raise CheckpointError(
            f"{path.name}: holds {len(values)} values but the manifest's shape {tuple(shape)} "
            f"needs {math.prod(shape)}"
        )
    return values.reshape(shape)


def _from_bundle(blob: np.ndarray, entry: dict[str, Any], path: Path) -> np.ndarray:
    """One array of a bundle file: ``nbytes`` bytes at ``offset``, viewed (no copy)."""
    want = _check_layout(path.name, entry["dtype"], entry["shape"])
    offset, nbytes = entry["offset"], entry["nbytes"]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (offset, nbytes)):
        raise CheckpointError(f"{path.name}: offset and nbytes must be integers")
    if (
        offset < 0
        or nbytes != math.prod(entry["shape"]) * want.itemsize
        or offset + nbytes > blob.size
        or offset % want.itemsize
    ):
        raise CheckpointError(
            f"{path.name}: {nbytes} bytes at offset {offset} do not hold a {entry['dtype']} "
            f"array of shape {tuple(entry['shape'])} inside its {blob.size} bytes"
        )
    return blob[offset : offset + nbytes].view(want).reshape(entry["shape"])


def _fsync_path(path: Path) -> None:
    """fsync a file or a directory (directories: where the platform allows it)."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) if path.is_dir() else os.O_RDONLY
    try:
        fd = os.open(path, flags)
    except OSError:  # e.g. directories on Windows cannot be opened
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on directories
        if not path.is_dir():
            raise
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """fsync every file under ``root``, then every directory bottom-up, then ``root``."""
    for dirpath, _dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames:
            _fsync_path(Path(dirpath) / name)
        _fsync_path(Path(dirpath))


def _siblings(dest: Path, kind: str) -> list[Path]:
    """Leftovers of interrupted saves of ``dest``: ``.{name}.{kind}-*`` beside it, newest first."""
    if not dest.parent.is_dir():
        return []
    found = [p for p in dest.parent.glob(f".{dest.name}.{kind}-*") if p.is_dir()]
    return sorted(found, key=lambda p: p.stat().st_mtime_ns, reverse=True)


def recover_directory(path: str | os.PathLike[str]) -> bool:
    """Finish or roll back a save of ``path`` that a crash interrupted; True if it did.

    :func:`atomic_directory` swaps a complete new directory in with two renames, so a crash
    between them leaves ``path`` missing with the complete new version beside it (a
    ``.{name}.new-*`` sibling, completed and fsynced before the swap began) and the old one
    renamed to ``.{name}.old-*``. This renames the new one into place (or, without it, the old
    one back). Incomplete ``.tmp-*`` siblings are never used.
    """
    dest = Path(path)
    if dest.exists():
        return False
    for kind in ("new", "old"):
        found = _siblings(dest, kind)
        if found:
            os.replace(found[0], dest)
            _fsync_path(dest.parent)
            log.warning("recovered %s from an interrupted save (%s)", dest, found[0].name)
            return True
    return False


def _recover_chain(path: Path) -> None:
    """Recover ``path`` or the nearest missing ancestor that an interrupted save removed (a
    checkpoint may sit inside a directory that was saved atomically as a whole)."""
    missing = []
    p = path
    while not p.exists() and p != p.parent and len(missing) < 3:
        missing.append(p)
        p = p.parent
    for q in reversed(missing):
        if not recover_directory(q):
            break


def _remove_leftovers(dest: Path) -> None:
    for kind in ("tmp", "new", "old"):
        for p in _siblings(dest, kind):
            shutil.rmtree(p, ignore_errors=True)


@contextmanager
def atomic_directory(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write into; on success it replaces ``path``
    so that a crash or a power loss at any point leaves either the old or the new version.

    The steps: write into ``.{name}.tmp-*``; fsync its files and directories; rename it to
    ``.{name}.new-*`` (now known complete) and fsync the parent; rename the old ``path`` to
    ``.{name}.old-*``; rename the new one to ``path``; fsync the parent; remove the old one.
    A crash between the two renames leaves ``path`` missing, which
    :func:`recover_directory` (called by every loader here) repairs. On an exception the
    temporary directory is removed and ``path`` is untouched. One writer per ``path``.
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    recover_directory(dest)
    _remove_leftovers(dest)
    tag = uuid.uuid4().hex[:8]
    tmp = dest.parent / f".{dest.name}.tmp-{tag}"
    tmp.mkdir()
    try:
        yield tmp
        fsync_tree(tmp)
        new = dest.parent / f".{dest.name}.new-{tag}"
        os.replace(tmp, new)
        _fsync_path(dest.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if dest.exists():
        old = dest.parent / f".{dest.name}.old-{tag}"
        os.replace(dest, old)
    os.replace(new, dest)
    _fsync_path(dest.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
        _fsync_path(dest.parent)


@contextmanager
def atomic_file(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary sibling of the file ``path`` (``.{stem}.tmp-*{suffix}``: the suffix is
    kept for writers that choose a format by it) to write in any way, streaming included; on
    success it is fsynced and renamed over ``path`` and the parent fsynced, so a crash leaves
    either the old file or the new one. On an exception the temporary file is removed and
    ``path`` is untouched::

        with atomic_file("spikes.parquet") as tmp:
            pyarrow.parquet.write_table(table, tmp)
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.stem}.tmp-{uuid.uuid4().hex[:8]}{dest.suffix}"
    try:
        yield tmp
        if not tmp.is_file():
            raise StorageError(f"nothing was written for {dest} (the temporary file {tmp.name})")
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_path(dest.parent)


def atomic_write(path: str | os.PathLike[str], data: bytes | str) -> Path:
    """Write one file so that a crash leaves either the old or the new content (through
    :func:`atomic_file`). ``str`` data is written as UTF-8."""
    payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    with atomic_file(path) as tmp:
        tmp.write_bytes(payload)
    return Path(path)


def write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """:func:`atomic_write` of ``obj`` as indented JSON (NaN and infinity refused)."""
    return atomic_write(path, json.dumps(obj, indent=1, sort_keys=True, allow_nan=False))


def save_checkpoint(
    path: str | os.PathLike[str],
    *,
    engine: str,
    params: Mapping[str, Any],
    arrays: Mapping[str, np.ndarray],
    meta: Mapping[str, Any] | None = None,
    bundle: bool = False,
) -> Path:
    """Write a checkpoint directory atomically and return its path (``bundle=True``: every
    array in one file, see the module docstring)."""
    dest = Path(path)
    with atomic_directory(dest) as tmp:
        entries = {}
        parts: list[np.ndarray] = []
        offset = 0
        for name, arr in arrays.items():
            arr = np.asarray(arr)
            if arr.dtype.kind not in _ALLOWED_KINDS:
                raise CheckpointError(f"array {name!r} has unsupported dtype {arr.dtype}")
            if not name.replace("_", "").replace(".", "").isalnum():
                raise CheckpointError(f"array name {name!r} must be alphanumeric, '_' or '.'")
            if bundle:
                raw = np.ascontiguousarray(arr).reshape(-1).view(np.uint8)
                pad = (-offset) % _ALIGN
                parts += [np.zeros(pad, np.uint8), raw]
                offset += pad
                entries[name] = {
                    "file": BUNDLE_FILE,
                    "offset": offset,
                    "nbytes": int(raw.size),
                    "dtype": arr.dtype.str,
                    "shape": list(arr.shape),
                }
                offset += raw.size
                continue
            fname = f"{name}.arrow"
            _write_array(tmp / fname, arr)
            entries[name] = {
                "file": fname,
                "dtype": arr.dtype.str,
                "shape": list(arr.shape),
                "sha256": sha256_file(tmp / fname),
            }
        if bundle:
            _write_array(tmp / BUNDLE_FILE, np.concatenate([np.zeros(0, np.uint8), *parts]))
            digest = sha256_file(tmp / BUNDLE_FILE)
            for entry in entries.values():
                entry["sha256"] = digest
        manifest = {
            "format": FORMAT_NAME,
            "format_version": BUNDLED_VERSION if bundle else FORMAT_VERSION,
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
    path: str | os.PathLike[str],
    *,
    format_name: str = FORMAT_NAME,
    version: int | None = FORMAT_VERSION,
    filename: str = "manifest.json",
) -> dict[str, Any]:
    """The manifest (``filename`` in the saved directory ``path``) checked for its format name
    and ``format_version`` (``version=None``: any, for a reader that migrates old versions).
    Every wrong file (missing, not JSON, another format or version) is a CheckpointError."""
    src = Path(path)
    mpath = src / filename
    _recover_chain(src)
    if not mpath.is_file():
        raise CheckpointError(f"{src} is not a saved {format_name}: no {filename} in it")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{mpath}: manifest is not valid JSON ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != format_name:
        raise CheckpointError(
            f"{mpath}: not a {format_name} manifest (format="
            f"{manifest.get('format') if isinstance(manifest, dict) else None!r})"
        )
    if version is not None and manifest.get("format_version") != version:
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
    manifest = read_manifest(src, version=None)
    version = manifest.get("format_version")
    if version not in READ_VERSIONS:
        raise CheckpointError(
            f"{mpath}: format_version {version!r} is not supported by this neurofabric (reads "
            f"versions {', '.join(map(str, READ_VERSIONS))}); upgrade neurofabric"
        )
    if engine is not None and manifest.get("engine") != engine:
        raise CheckpointError(
            f"{src} holds a {manifest.get('engine')!r} checkpoint, not {engine!r}"
        )
    for key in ("params", "meta", "arrays"):
        if not isinstance(manifest.get(key, {}), dict):
            raise CheckpointError(f"{mpath}: {key!r} must be a JSON object")
    if not isinstance(manifest.get("engine"), str):
        raise CheckpointError(f"{mpath}: 'engine' must be a string")
    arrays, files = {}, {}
    bundles: dict[str, np.ndarray] = {}  # a bundle file, read (and verified) once
    for name, entry in manifest.get("arrays", {}).items():
        try:
            if not isinstance(entry, dict) or not isinstance(entry.get("file"), str):
                raise CheckpointError(f"{mpath}: array {name!r} has no file name")
            fpath = src / entry["file"]
            if Path(entry["file"]).name != entry["file"] or entry["file"] in ("", ".", ".."):
                raise CheckpointError(f"{mpath}: array file {entry['file']!r} is not a plain name")
            bundled = "offset" in entry
            if bundled and entry["file"] in bundles:
                arrays[name] = _from_bundle(bundles[entry["file"]], entry, fpath)
                files[name] = entry["file"]
                continue
            try:
                small = fpath.stat().st_size <= SMALL_FILE
            except FileNotFoundError:
                raise CheckpointError(f"{src}: array file {entry['file']} is missing") from None
            data = fpath.read_bytes() if small else None
            if verify:
                digest = hashlib.sha256(data).hexdigest() if small else sha256_file(fpath)
                if digest != entry["sha256"]:
                    raise CheckpointError(f"{fpath}: sha256 mismatch, the file is corrupt")
            if bundled:
                blob = _read_values(fpath, data)
                if blob is None:  # every array empty
                    blob = np.zeros(0, dtype=np.uint8)
                if blob.dtype != np.uint8:
                    raise CheckpointError(f"{fpath}: a bundle must hold one uint8 column")
                bundles[entry["file"]] = blob
                arrays[name] = _from_bundle(blob, entry, fpath)
            else:
                arrays[name] = _read_array(fpath, entry["dtype"], entry["shape"], data)
            files[name] = entry["file"]
        except (KeyError, TypeError, ValueError, OSError, pa.ArrowException) as exc:
            if isinstance(exc, CheckpointError):
                raise
            raise CheckpointError(f"{src}: array {name!r} cannot be read ({exc})") from exc
    return Checkpoint(
        engine=manifest["engine"],
        params=manifest.get("params", {}),
        arrays=arrays,
        meta=manifest.get("meta", {}),
        format_version=version,
        path=src,
        files=files,
    )
