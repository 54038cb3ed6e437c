"""`NeuralFabric`: a network as a structure of arrays, stored as Arrow columns.

Units ``0 .. n_in-1`` are inputs, the last ``n_out`` units are outputs (linear logits), the
rest hidden. The topology is the pair of ``uint32`` columns ``source``, ``target`` (every
connection goes to a higher unit index, so index order is topological), with ``weight`` beside
them and one ``bias`` per unit. A layered network (``layer_sizes``) allows every pair between
consecutive layers; any other DAG names its allowed pairs explicitly (by default its initial
connections), which are what growth may create.

On disk (``save``) a fabric is a directory::

    manifest.json   format, version, shape of the network, sha256 of each file, user meta
    edges.arrow     source, target (uint32), weight, sorted by target (one record batch)
    units.arrow     bias, edge_start, edge_stop (the per-target CSR offsets into edges), so
                    ``read_layer`` slices out one layer's connections and touches no other page
    pairs.arrow     allowed pairs (only for a DAG that is not layered)

All files are uncompressed Arrow IPC and ``load(..., mmap=True)`` returns numpy views on the
mapped file: no weight is copied.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from neurofabric.core.checkpoint import atomic_directory, read_manifest
from neurofabric.core.errors import CheckpointError, ConfigError, DataError, ShapeError
from neurofabric.core.rng import SeedLike, make_rng
from neurofabric.core.validation import check_array, check_choice, check_int, check_probability
from neurofabric.store import read_columns, read_parquet, sha256_file, write_columns, write_parquet
from neurofabric.thermo.kernels.common import ACTIVATIONS

log = logging.getLogger(__name__)

FORMAT_NAME = "neurofabric-thermo-fabric"
FORMAT_VERSION = 1
_FILES = ("edges.arrow", "units.arrow", "pairs.arrow")


def _has_duplicates(source: np.ndarray, target: np.ndarray, n: int) -> bool:
    """Whether a (source, target) pair repeats: one linear pass when the connections are
    sorted by target then source (as saved files are), else a sort."""
    key = target.astype(np.uint64) * np.uint64(n) + source
    if len(key) < 2:
        return False
    if np.all(key[1:] > key[:-1]):
        return False
    return len(np.unique(key)) != len(key)


class NeuralFabric:
    """A feed-forward network (layered or any sparse DAG) as columns of arrays.

    ``check=False`` skips the topology checks (they read every connection); ``load`` uses it
    only with ``verify=False``, for a cold start from a file this library wrote.
    """

    def __init__(
        self,
        *,
        n_in: int,
        n_out: int,
        source: Any,
        target: Any,
        weight: Any,
        bias: Any,
        activation: str = "relu",
        layer_sizes: Sequence[int] | None = None,
        pairs: tuple[Any, Any] | None = None,
        check: bool = True,
    ) -> None:
        self.activation = check_choice("activation", activation, tuple(ACTIVATIONS))
        self.bias = np.asarray(bias)
        n_units = check_int("len(bias)", len(self.bias), min_value=2)
        self.n_in = check_int("n_in", n_in, min_value=1, max_value=n_units - 1)
        self.n_out = check_int("n_out", n_out, min_value=1, max_value=n_units - self.n_in)
        self.layer_sizes = None if layer_sizes is None else tuple(int(s) for s in layer_sizes)
        if self.layer_sizes is not None and (
            sum(self.layer_sizes) != n_units
            or self.layer_sizes[0] != self.n_in
            or self.layer_sizes[-1] != self.n_out
            or min(self.layer_sizes) < 1
        ):
            raise ShapeError(
                f"`layer_sizes` {self.layer_sizes} must be positive, sum to the {n_units} units "
                f"and start with n_in={self.n_in} and end with n_out={self.n_out}"
            )
        self.source = np.asarray(source)
        self.target = np.asarray(target)
        self.weight = np.asarray(weight)
        n = len(self.source)
        for name, arr in (("target", self.target), ("weight", self.weight)):
            if arr.shape != (n,):
                raise ShapeError(f"`{name}` must have shape ({n},) like `source`, got {arr.shape}")
        for name, arr in (("source", self.source), ("target", self.target)):
            if arr.dtype.kind not in "iu":
                raise ShapeError(f"`{name}` must hold integer unit indices, got dtype {arr.dtype}")
        if self.weight.dtype.kind != "f" or self.bias.dtype.kind != "f":
            raise ShapeError("`weight` and `bias` must be floating point arrays")
        self._pairs = None
        if pairs is not None:
            self._pairs = tuple(np.asarray(p, dtype=np.uint32) for p in pairs)
        self.meta: dict[str, Any] = {}
        if check:
            self._check_topology()

    # ----------------------------------------------------------------- construction
    @classmethod
    def layered(
        cls,
        layer_sizes: Sequence[int],
        *,
        activation: str = "relu",
        density: float = 1.0,
        seed: SeedLike = None,
    ) -> NeuralFabric:
        """A layered network with He-initialised weights on a random ``density`` of the pairs."""
        sizes = [check_int(f"layer_sizes[{i}]", s, min_value=1) for i, s in enumerate(layer_sizes)]
        if len(sizes) < 2:
            raise ConfigError(
                f"`layer_sizes` needs at least an input and an output layer, got {sizes}"
            )
        if check_probability("density", density) == 0.0:
            raise ConfigError("`density` must be in (0, 1], got 0: keep some connections")
        rng = make_rng(seed)
        src, dst = _layered_pairs(sizes)
        keep = rng.random(len(src)) < density if density < 1.0 else np.ones(len(src), bool)
        starts = np.cumsum([0, *sizes])
        fan_in = np.asarray(sizes)[np.searchsorted(starts, dst, side="right") - 2]
        w = rng.standard_normal(len(src)) * np.sqrt(2.0 / (fan_in * density))
        return cls(
            n_in=sizes[0],
            n_out=sizes[-1],
            source=src[keep],
            target=dst[keep],
            weight=w[keep],
            bias=np.zeros(sum(sizes)),
            activation=activation,
            layer_sizes=sizes,
        )

    @classmethod
    def from_dense(
        cls,
        weights: Sequence[Any],
        biases: Sequence[Any] | None = None,
        *,
        activation: str = "relu",
        drop_zeros: bool = True,
    ) -> NeuralFabric:
        """From dense layer matrices shaped (fan_in, fan_out), as scikit-learn's ``coefs_``
        (transpose torch ``Linear.weight``); ``drop_zeros`` leaves exact zeros unconnected."""
        mats = [check_array(f"weights[{i}]", w, dtype=np.float64) for i, w in enumerate(weights)]
        if not mats:
            raise ConfigError("`weights` must hold at least one layer matrix")
        sizes = [mats[0].shape[0]] if mats[0].ndim == 2 else []
        for i, m in enumerate(mats):
            if m.ndim != 2 or m.shape[0] != sizes[-1]:
                raise ShapeError(
                    f"`weights[{i}]` must be 2-D with {sizes[-1] if sizes else '?'} rows "
                    f"(the previous layer's width), got shape {m.shape}"
                )
            sizes.append(m.shape[1])
        bias = np.zeros(sum(sizes))
        if biases is not None:
            if len(biases) != len(mats):
                raise ShapeError(f"`biases` must have {len(mats)} vectors, got {len(biases)}")
            starts = np.cumsum([0, *sizes])
            for i, b in enumerate(biases):
                bias[starts[i + 1] : starts[i + 2]] = check_array(
                    f"biases[{i}]", b, shape=(sizes[i + 1],), dtype=np.float64
                )
        src, dst = _layered_pairs(sizes)
        w = np.concatenate([m.reshape(-1) for m in mats])
        keep = w != 0.0 if drop_zeros else np.ones(len(w), bool)
        return cls(
            n_in=sizes[0],
            n_out=sizes[-1],
            source=src[keep],
            target=dst[keep],
            weight=w[keep],
            bias=bias,
            activation=activation,
            layer_sizes=sizes,
        )

    @classmethod
    def from_state_dict(
        cls, state_dict: Mapping[str, Any], *, activation: str = "relu"
    ) -> NeuralFabric:
        """From a torch-style state dict of ``Linear`` layers (``<name>.weight`` of shape
        (out, in), ``<name>.bias``), in the numeric order of the names. Values may be torch
        tensors or numpy arrays; torch itself is not imported."""
        names = sorted(
            (k[: -len(".weight")] for k in state_dict if k.endswith(".weight")), key=_natural
        )
        if not names:
            raise DataError("the state dict has no '<layer>.weight' entries")
        weights, biases = [], []
        for name in names:
            w = _as_numpy(state_dict[f"{name}.weight"])
            weights.append(w.T)
            b = state_dict.get(f"{name}.bias")
            biases.append(_as_numpy(b) if b is not None else np.zeros(w.shape[0]))
        return cls.from_dense(weights, biases, activation=activation)

    @classmethod
    def from_safetensors(
        cls, path: str | os.PathLike[str], *, activation: str = "relu"
    ) -> NeuralFabric:
        """From a safetensors file holding ``Linear`` layers as in :meth:`from_state_dict`."""
        from safetensors.numpy import load_file

        try:
            tensors = load_file(os.fspath(path))
        except (OSError, ValueError, RuntimeError) as exc:
            raise DataError(f"{path}: cannot read as safetensors ({exc})") from exc
        return cls.from_state_dict(tensors, activation=activation)

    # ----------------------------------------------------------------- properties
    @property
    def n_units(self) -> int:
        return len(self.bias)

    @property
    def n_edges(self) -> int:
        return len(self.source)

    def allowed_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """(source, target) of every connection growth may create."""
        if self._pairs is not None:
            return self._pairs
        if self.layer_sizes is not None:
            return _layered_pairs(self.layer_sizes)
        return self.source.astype(np.uint32), self.target.astype(np.uint32)

    @property
    def n_pairs(self) -> int:
        if self._pairs is None and self.layer_sizes is not None:
            s = self.layer_sizes
            return int(sum(a * b for a, b in zip(s[:-1], s[1:], strict=False)))
        return len(self.allowed_pairs()[0])

    @property
    def sparsity(self) -> float:
        """The fraction of allowed connections that are absent (1 - density)."""
        return 1.0 - self.n_edges / max(self.n_pairs, 1)

    def _check_topology(self) -> None:
        n = self.n_units
        if self.n_edges:
            if int(self.source.max()) >= n or int(self.target.max()) >= n:
                raise ShapeError(f"`source`/`target` index a unit >= n_units={n}")
            if np.any(self.source.astype(np.int64) >= self.target.astype(np.int64)):
                bad = int(np.argmax(self.source.astype(np.int64) >= self.target))
                raise ShapeError(
                    f"connection {bad} goes from unit {self.source[bad]} to {self.target[bad]}; "
                    "every connection must go to a higher unit index (a feed-forward DAG)"
                )
            if int(self.target.min()) < self.n_in:
                raise ShapeError(f"a connection targets an input unit (index < n_in={self.n_in})")
            if int(self.source.max()) >= n - self.n_out:
                raise ShapeError("a connection leaves an output unit; outputs must be sinks")
            if _has_duplicates(self.source, self.target, n):
                raise ShapeError("`source`/`target` list the same connection twice")
        if self._pairs is None and self.layer_sizes is not None and self.n_edges:
            # linear: every connection goes from a layer to the next one
            starts = np.cumsum([0, *self.layer_sizes])
            ls = np.searchsorted(starts, self.source, side="right") - 1
            lt = np.searchsorted(starts, self.target, side="right") - 1
            if np.any(lt != ls + 1):
                bad = int(np.argmax(lt != ls + 1))
                raise ShapeError(
                    f"connection {self.source[bad]}->{self.target[bad]} is not an allowed pair "
                    "(layered networks connect consecutive layers only)"
                )
        elif self._pairs is not None:
            ps, pt = self.allowed_pairs()
            pkey = np.sort(ps.astype(np.uint64) * n + pt)
            key = self.source.astype(np.uint64) * n + self.target
            pos = np.searchsorted(pkey, key)
            ok = (pos < len(pkey)) & (pkey[np.minimum(pos, len(pkey) - 1)] == key)
            if not np.all(ok):
                bad = int(np.argmin(ok))
                raise ShapeError(
                    f"connection {self.source[bad]}->{self.target[bad]} is not an allowed pair "
                    "(layered networks connect consecutive layers only)"
                )

    # ----------------------------------------------------------------- inference
    def forward(self, X: Any, *, batch_size: int = 4096) -> np.ndarray:
        """Logits, shape (n_samples, n_out), computed in float64."""
        from neurofabric.thermo.kernels import numba_cpu

        X = check_array("X", X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_in:
            raise ShapeError(f"`X` must have shape (n_samples, {self.n_in}), got {X.shape}")
        act = ACTIVATIONS[self.activation]
        src = self.source.astype(np.int64)
        dst = self.target.astype(np.int64)
        w = np.asarray(self.weight, dtype=np.float64)
        b = np.asarray(self.bias, dtype=np.float64)
        out = np.empty((len(X), self.n_out))
        for lo in range(0, len(X), batch_size):
            xb = np.ascontiguousarray(X[lo : lo + batch_size])
            A = np.empty((len(xb), self.n_units))
            Z = np.empty((len(xb), self.n_units - self.n_in))
            numba_cpu.forward(self.n_in, self.n_out, act, src, dst, w, len(w), b, xb, A, Z)
            out[lo : lo + batch_size] = A[:, self.n_units - self.n_out :]
        return out

    def predict_proba(self, X: Any) -> np.ndarray:
        z = self.forward(X)
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, X: Any) -> np.ndarray:
        """The index of the largest logit per sample."""
        return np.argmax(self.forward(X), axis=1)

    # ----------------------------------------------------------------- storage
    def sorted_by_target(self) -> tuple[NeuralFabric, np.ndarray]:
        """A copy with connections sorted by (target, source) and the per-target CSR offsets
        (``offsets[u] .. offsets[u+1]`` are the connections into unit u)."""
        order = np.lexsort((self.source, self.target))
        fab = NeuralFabric(
            n_in=self.n_in,
            n_out=self.n_out,
            source=self.source[order].astype(np.uint32),
            target=self.target[order].astype(np.uint32),
            weight=self.weight[order],
            bias=np.array(self.bias),
            activation=self.activation,
            layer_sizes=self.layer_sizes,
            pairs=self._pairs,
            check=False,  # a permutation of connections already checked
        )
        offsets = np.searchsorted(fab.target, np.arange(self.n_units + 1)).astype(np.uint64)
        return fab, offsets

    def save(
        self,
        path: str | os.PathLike[str],
        *,
        dtype: Any = None,
        meta: Mapping[str, Any] | None = None,
    ) -> Path:
        """Write the fabric (atomically) as Arrow IPC columns; ``dtype`` (e.g. ``np.float32``)
        converts weights and biases, by default they keep their dtype."""
        fab, offsets = self.sorted_by_target()
        wdt = np.dtype(dtype) if dtype is not None else fab.weight.dtype
        if wdt.kind != "f":
            raise ConfigError(f"`dtype` must be a floating point dtype, got {wdt}")
        info = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "n_in": self.n_in,
            "n_out": self.n_out,
            "n_units": self.n_units,
            "n_edges": self.n_edges,
            "activation": self.activation,
            "layer_sizes": list(self.layer_sizes) if self.layer_sizes else None,
            "dtype": wdt.str,
            "meta": dict(meta or {}),
            "files": {},
        }
        with atomic_directory(path) as tmp:
            edges = {"source": fab.source, "target": fab.target, "weight": fab.weight.astype(wdt)}
            write_columns(tmp / "edges.arrow", edges)
            units = {
                "bias": fab.bias.astype(wdt),
                "edge_start": offsets[:-1],
                "edge_stop": offsets[1:],
            }
            write_columns(tmp / "units.arrow", units)
            names = ["edges.arrow", "units.arrow"]
            if self._pairs is not None:
                write_columns(
                    tmp / "pairs.arrow", {"source": self._pairs[0], "target": self._pairs[1]}
                )
                names.append("pairs.arrow")
            for name in names:
                info["files"][name] = sha256_file(tmp / name)
            (tmp / "manifest.json").write_text(json.dumps(info, indent=1), encoding="utf-8")
        log.info("saved fabric (%d connections) to %s", self.n_edges, path)
        return Path(path)

    @classmethod
    def read_manifest(cls, path: str | os.PathLike[str]) -> dict[str, Any]:
        """The checked manifest of a saved fabric."""
        return read_manifest(path, format_name=FORMAT_NAME, version=FORMAT_VERSION)

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], *, mmap: bool = True, verify: bool = True
    ) -> NeuralFabric:
        """Load a saved fabric. With ``mmap`` the columns are read-only views on the mapped
        files (nothing is copied). ``verify`` checks every file's SHA-256 first, which reads
        every byte, as do the topology checks that follow; ``verify=False`` skips both, for a
        cold start that touches no weight page (use it only on files this library wrote)."""
        info = cls.read_manifest(path)
        root = Path(path)
        files = info.get("files", {})
        for name in ("edges.arrow", "units.arrow"):
            if name not in files or not (root / name).is_file():
                raise CheckpointError(f"{root}: {name} is missing")
        if verify:
            for name, digest in files.items():
                if name not in _FILES or sha256_file(root / name) != digest:
                    raise CheckpointError(f"{root / name}: sha256 mismatch, the file is corrupt")
        edges = read_columns(root / "edges.arrow", mmap=mmap).columns(
            ["source", "target", "weight"]
        )
        units = read_columns(root / "units.arrow", mmap=mmap).columns(["bias"])
        pairs = None
        if "pairs.arrow" in files:
            p = read_columns(root / "pairs.arrow", mmap=mmap).columns(["source", "target"])
            pairs = (p["source"], p["target"])
        if len(edges["source"]) != info.get("n_edges") or len(units["bias"]) != info.get("n_units"):
            raise CheckpointError(f"{root}: the column lengths do not match the manifest")
        try:
            fab = cls(
                n_in=info["n_in"],
                n_out=info["n_out"],
                source=edges["source"],
                target=edges["target"],
                weight=edges["weight"],
                bias=units["bias"],
                activation=info["activation"],
                layer_sizes=info.get("layer_sizes"),
                pairs=pairs,
                check=verify,
            )
        except (KeyError, TypeError, ConfigError, ShapeError) as exc:
            raise CheckpointError(
                f"{root}: the saved fabric is inconsistent ({exc}); the files are corrupt or "
                "were not written by this neurofabric: restore them from a backup"
            ) from exc
        fab.meta = info.get("meta", {})
        return fab

    @staticmethod
    def read_layer(
        path: str | os.PathLike[str], layer: int, *, mmap: bool = True
    ) -> dict[str, np.ndarray]:
        """The connections into layer ``layer`` (1 = first hidden) of a saved layered fabric,
        as views on the mapped file; no other layer's pages are read."""
        info = NeuralFabric.read_manifest(path)
        sizes = info.get("layer_sizes")
        if not sizes:
            raise ConfigError(f"{path} is not a layered fabric; load it whole")
        check_int("layer", layer, min_value=1, max_value=len(sizes) - 1)
        starts = np.cumsum([0, *sizes])
        units = read_columns(Path(path) / "units.arrow", mmap=mmap).columns(
            ["edge_start", "edge_stop"]
        )
        lo = int(units["edge_start"][starts[layer]])
        hi = int(units["edge_stop"][starts[layer + 1] - 1])
        cols = read_columns(Path(path) / "edges.arrow", mmap=mmap).columns()
        return {name: values[lo:hi] for name, values in cols.items()}

    def to_parquet(self, path: str | os.PathLike[str]) -> Path:
        """Export as a folder with ``edges.parquet`` and ``units.parquet`` (for other tools)."""
        fab, _ = self.sorted_by_target()
        meta = json.dumps(
            {
                "format": FORMAT_NAME,
                "n_in": self.n_in,
                "n_out": self.n_out,
                "activation": self.activation,
                "layer_sizes": list(self.layer_sizes) if self.layer_sizes else None,
            }
        )
        with atomic_directory(path) as tmp:
            write_parquet(
                tmp / "edges.parquet",
                {"source": fab.source, "target": fab.target, "weight": fab.weight},
                metadata=meta,
            )
            write_parquet(tmp / "units.parquet", {"bias": fab.bias})
            if self._pairs is not None:
                write_parquet(
                    tmp / "pairs.parquet", {"source": self._pairs[0], "target": self._pairs[1]}
                )
        return Path(path)

    @classmethod
    def from_parquet(cls, path: str | os.PathLike[str]) -> NeuralFabric:
        root = Path(path)
        edges, meta = read_parquet(root / "edges.parquet", ["source", "target", "weight"])
        units, _ = read_parquet(root / "units.parquet", ["bias"])
        try:
            info = json.loads(meta or "")
        except json.JSONDecodeError as exc:
            raise DataError(f"{root / 'edges.parquet'}: no neurofabric metadata ({exc})") from exc
        pairs = None
        if (root / "pairs.parquet").is_file():
            p, _ = read_parquet(root / "pairs.parquet", ["source", "target"])
            pairs = (p["source"], p["target"])
        return cls(
            n_in=info["n_in"],
            n_out=info["n_out"],
            activation=info["activation"],
            layer_sizes=info.get("layer_sizes"),
            pairs=pairs,
            bias=units["bias"],
            **edges,
        )

    def __repr__(self) -> str:
        shape = self.layer_sizes or f"{self.n_units} units"
        return (
            f"NeuralFabric({shape}, {self.n_edges} of {self.n_pairs} connections, "
            f"activation={self.activation!r})"
        )


def _layered_pairs(sizes: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    starts = np.cumsum([0, *sizes])
    srcs, dsts = [], []
    for i in range(len(sizes) - 1):
        s = np.arange(starts[i], starts[i + 1], dtype=np.uint32)
        t = np.arange(starts[i + 1], starts[i + 2], dtype=np.uint32)
        srcs.append(np.repeat(s, len(t)))
        dsts.append(np.tile(t, len(s)))
    return np.concatenate(srcs), np.concatenate(dsts)


def _natural(name: str) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _as_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float64)
