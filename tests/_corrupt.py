"""Helpers for tests that corrupt saved checkpoints while keeping their checksums valid."""

import json
from pathlib import Path

import numpy as np

from neurofabric.core import checkpoint as ckmod
from neurofabric.core.checkpoint import sha256_file


def rewrite_array(folder: Path, name: str, arr: np.ndarray) -> None:
    """Replace array ``name`` of the checkpoint in ``folder`` by ``arr`` and make the manifest
    agree (dtype, shape, sha256): only the loader's value checks can catch it."""
    arr = np.asarray(arr)
    manifest = json.loads((folder / "manifest.json").read_text())
    entry = manifest["arrays"][name]
    if "offset" in entry:  # a bundle: every array shares one file, so write them all again
        ck = ckmod.load_checkpoint(folder, verify=False)
        arrays = {k: np.array(v) for k, v in ck.arrays.items()} | {name: arr}
        ckmod.save_checkpoint(
            folder, engine=ck.engine, params=ck.params, arrays=arrays, meta=ck.meta, bundle=True
        )
        return
    ckmod._write_array(folder / entry["file"], arr)
    entry.update(
        sha256=sha256_file(folder / entry["file"]), dtype=arr.dtype.str, shape=list(arr.shape)
    )
    (folder / "manifest.json").write_text(json.dumps(manifest))


def read_array(folder: Path, name: str) -> np.ndarray:
    return np.array(ckmod.load_checkpoint(folder).arrays[name])


def corruptions(arr: np.ndarray, choice: int, position: int, value: int) -> np.ndarray:
    """One of several small corruptions of ``arr``: an element set to a (possibly huge or
    negative) value, one element dropped or added, or the dtype changed."""
    arr = np.array(arr)
    kind = choice % 5
    if kind == 0 and arr.size:
        flat = arr.reshape(-1).copy()
        info = np.iinfo(flat.dtype) if flat.dtype.kind in "iu" else None
        v = value if info is None else int(np.clip(value, info.min, info.max))
        flat[position % flat.size] = v
        return flat.reshape(arr.shape)
    if kind == 1 and arr.size:
        return arr.reshape(-1)[:-1]
    if kind == 2:
        return np.concatenate([arr.reshape(-1), arr.reshape(-1)[:1]])
    if kind == 3:
        return arr.astype(np.float64 if arr.dtype.kind != "f" else np.int64)
    return arr.reshape(-1)[::-1].copy().reshape(arr.shape) * (-1 if arr.dtype.kind in "if" else 1)


def corrupted_copy(
    folder: Path, arrays: dict, dest: Path, which: int, choice: int, position: int, value: int
) -> Path:
    """A copy of the checkpoint ``folder`` at ``dest`` with one array (picked by ``which``)
    corrupted by :func:`corruptions`, checksums fixed to match."""
    import shutil

    names = sorted(arrays)
    name = names[which % len(names)]
    shutil.copytree(folder, dest)
    rewrite_array(dest, name, corruptions(arrays[name], choice, position, value))
    return dest
