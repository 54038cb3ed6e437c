"""``DemandPagedField``: a hash-encoded neural field whose parameters live in a paged store.

>>> import tempfile
>>> import numpy as np
>>> from neurofabric.field import DemandPagedField, HashGridSpec
>>> path = tempfile.mkdtemp() + "/field"
>>> spec = HashGridSpec(n_dims=2, n_levels=8, n_features=2, log2_table=14)
>>> with DemandPagedField.create(path, spec=spec, seed=0) as field:
...     for _ in range(200):
...         _ = field.learn([[0.3, 0.7]], [[1.0]])
...     round(float(field.query([[0.3, 0.7]])[0, 0]), 2)
1.0

Layout of the logical page space: the hash table (``spec.n_rows`` rows of ``n_features``
float32, all zero until written: nothing is allocated before a page is touched), then the
decoder's layers, each page-aligned. Every parameter, table and decoder alike, is read
through the tiers (DRAM, emulated CXL, SSD, slow), so a field far larger than memory answers
queries with its working set in DRAM. The decoder is an MLP (ReLU hidden layers, linear
output) initialized with a seed; ``learn`` takes SGD steps on it and on the touched table rows.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from typing import Any

import numpy as np

from neurofabric.core import backend as backends
from neurofabric.core.errors import (
    CheckpointError,
    ConfigError,
    DivergenceError,
    ShapeError,
    StorageError,
)
from neurofabric.core.progress import ProgressCallback, ProgressReporter, check_callback
from neurofabric.core.rng import make_rng
from neurofabric.core.validation import check_choice, check_int, check_positive
from neurofabric.field.encoding import PARALLEL_FROM, HashGrid
from neurofabric.field.optim import (
    DEFAULT_LR,
    OPTIMIZERS,
    ExponentialDecay,
    adam_hyper,
    adam_update,
    check_finite,
)
from neurofabric.field.params import HashGridSpec
from neurofabric.field.prefetch import PrefetchTracker, make_prefetcher
from neurofabric.field.tiers import TierConfig, TieredPages
from neurofabric.store.sharded import ShardedPageStore

log = logging.getLogger(__name__)

__all__ = ["DemandPagedField"]

FIELD_FORMAT = "neurofabric-field"
FIELD_VERSION = 1


def _align(n: int, to: int) -> int:
    return -(-n // to) * to


def _layout(store: ShardedPageStore) -> tuple[HashGridSpec, list[tuple[int, int, int]], int]:
    """(spec, decoder layers as (offset, n_in, n_out), table offset) from the field's section
    of the store manifest; a store that is not a field, or a field of another version or with
    a garbled section, is a :class:`CheckpointError` naming the manifest."""
    where = store.path / "manifest.json"
    meta = store.meta.get("meta")
    if not isinstance(meta, dict) or meta.get("format") != FIELD_FORMAT:
        raise CheckpointError(
            f"{where}: a page store but not a neural field (its meta has no "
            f"format={FIELD_FORMAT!r}); open it with ShardedPageStore"
        )
    if meta.get("version") != FIELD_VERSION:
        raise CheckpointError(
            f"{where}: field version {meta.get('version')!r} is not supported by this "
            f"neurofabric (reads version {FIELD_VERSION}); upgrade neurofabric"
        )
    try:
        spec = HashGridSpec(**meta["spec"])
        layers = [(int(o), int(i), int(n)) for o, i, n in meta["layers"]]
        table_offset = int(meta["table_offset"])
    except (KeyError, TypeError, ValueError) as exc:  # ConfigError is a ValueError
        raise CheckpointError(
            f"{where}: the field's spec, layers or table offset are missing or invalid ({exc}); "
            "the manifest is corrupt: restore it from a backup"
        ) from exc
    if not layers:
        raise CheckpointError(f"{where}: the field has no decoder layers; the manifest is corrupt")
    return spec, layers, table_offset


#: most pages given a direct page -> DRAM slot map (8 bytes each: 32 MiB covers 16 GiB of
#: table and moments; pages above it are found by binary search)
DIRECT_PAGES_MAX = 1 << 22


def layer_floats(n_in: int, n_out: int) -> int:
    """Floats of one decoder layer in the store: W (n_in x n_out) then b (n_out)."""
    return (n_in + 1) * n_out


def decoder_floats(layers) -> int:
    """Floats of all the decoder's layers, ``(offset, n_in, n_out)`` each."""
    return sum(layer_floats(n_in, n_out) for _, n_in, n_out in layers)


def _direct_pages(store: ShardedPageStore) -> int:
    """Pages of the table, the decoder and the optimizer state (the hot part of the space)."""
    meta = store.meta["meta"]
    ends = [o + layer_floats(i, n) * 4 for o, i, n in meta["layers"]]
    optim = meta.get("optimizer")
    if optim:
        n_dec = decoder_floats(meta["layers"])
        ends.append(int(optim["state"]) + 8 + 2 * n_dec * 4)
    return min(-(-max(ends) // store.page_size), DIRECT_PAGES_MAX)


def _optimizer_layout(store: ShardedPageStore, table_offset: int, row_bytes: int) -> dict | None:
    optim = store.meta.get("meta", {}).get("optimizer")
    if optim is None:
        return None
    try:
        out = {k: int(optim[k]) for k in ("table_m", "table_v", "state")}
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(
            f"{store.path / 'manifest.json'}: the field's optimizer section is invalid ({exc})"
        ) from exc
    if any(out[k] % row_bytes for k in ("table_m", "table_v")):
        raise CheckpointError(
            f"{store.path / 'manifest.json'}: optimizer regions not aligned to rows: {out}"
        )
    out["m_row"] = (out["table_m"] - table_offset) // row_bytes
    out["v_row"] = (out["table_v"] - table_offset) // row_bytes
    return out


class DemandPagedField:
    """query / write / learn / stats / flush / close over a paged hash-grid field."""

    def __init__(
        self,
        store: ShardedPageStore,
        *,
        tiers: TierConfig | None = None,
        prefetcher: str | None = None,
        prefetch_depth: int = 8,
        layer_budget: int = 64 << 20,
        backend: str = "auto",
    ) -> None:
        self.store = store
        self.spec, self.layers, self.table_offset = _layout(store)
        self.grid = HashGrid(self.spec, backend=backend)
        #: the kernels' backend actually used, by the encoding and the DRAM tier ("auto" resolved)
        self.backend = self.grid.backend
        self.row_bytes = self.spec.n_features * 4
        self.pages = TieredPages(
            store,
            tiers,
            row_bytes=self.row_bytes,
            backend=self.backend,
            direct_pages=_direct_pages(store),
        )
        self.tracker = (
            PrefetchTracker(make_prefetcher(prefetcher), k=prefetch_depth) if prefetcher else None
        )
        if self.tracker is not None:
            self.pages.on_miss = self._on_miss
        self.layer_budget = layer_budget
        self._layer_cache: OrderedDict[int, list] = OrderedDict()  # k -> [W, b, dirty]
        self.layer_stats = {"loads": 0, "evictions": 0, "writebacks": 0}
        self._lock = threading.RLock()
        self.latencies: list[float] = []
        self.n_queries = 0
        #: where Adam's moments live (None: a field created without them learns with SGD)
        self.optim_layout = _optimizer_layout(store, self.table_offset, self.row_bytes)
        self._adam: dict[str, Any] | None = None  # the decoder's moments and t, paged in

    # ------------------------------------------------------------------ creation / opening
    @classmethod
    def create(
        cls,
        path: Any,
        *,
        spec: HashGridSpec | None = None,
        hidden: tuple[int, ...] = (64,),
        out_dim: int = 1,
        logical_bytes: int = 2**50,
        page_size: int = 4096,
        shard_bytes: int = 2**40,
        seed: Any = 0,
        tiers: TierConfig | None = None,
        prefetcher: str | None = None,
        backend: str = "auto",
        optimizer_state: bool = True,
    ) -> DemandPagedField:
        """A new field on disk (sparse: only the decoder's pages are written). ``backend``
        (``"auto"``: the fastest installed, ``"numba"`` or ``"reference"``) picks the kernels of
        the encoding and the DRAM tier; ``.backend`` is the one used. ``optimizer_state``
        reserves (sparse, free until touched) the pages of Adam's moments: two table-sized
        regions and one for the decoder (:mod:`neurofabric.field.optim`); without it the
        field learns with SGD only."""
        spec = spec or HashGridSpec()
        backends.resolve("field", backend)  # a typo is refused before anything is written
        check_int("out_dim", out_dim, min_value=1)
        for i, h in enumerate(hidden):
            check_int(f"hidden[{i}]", h, min_value=1)
        row_bytes = spec.n_features * 4
        table_bytes = spec.n_rows * row_bytes
        offset = _align(table_bytes, page_size)
        layers = []
        dims = [spec.n_outputs, *hidden, out_dim]
        for n_in, n_out in zip(dims[:-1], dims[1:], strict=True):
            layers.append((offset, n_in, n_out))
            offset = _align(offset + layer_floats(n_in, n_out) * 4, page_size)
        optim = None
        if optimizer_state:
            n_dec = decoder_floats(layers)
            m_off = offset
            v_off = _align(m_off + table_bytes, page_size)
            state_off = _align(v_off + table_bytes, page_size)
            offset = _align(state_off + 8 + 2 * n_dec * 4, page_size)
            optim = {"kind": "adam", "table_m": m_off, "table_v": v_off, "state": state_off}
        if offset > logical_bytes:
            raise ConfigError(
                f"the table, decoder{' and optimizer state' if optim else ''} need {offset:,} "
                f"bytes, more than logical_bytes {logical_bytes:,}; raise logical_bytes or "
                "shrink the spec" + (" (or optimizer_state=False: SGD only)" if optim else "")
            )
        meta = {
            "format": FIELD_FORMAT,
            "version": FIELD_VERSION,
            "spec": spec.as_dict(),
            "table_offset": 0,
            "layers": layers,
            "out_dim": out_dim,
            **({"optimizer": optim} if optim else {}),
        }
        store = ShardedPageStore.create(
            path,
            logical_bytes=logical_bytes,
            page_size=page_size,
            shard_bytes=shard_bytes,
            meta=meta,
        )
        rng = make_rng(seed)
        # torch.nn.Linear's default: weights and biases uniform in +-1/sqrt(fan_in). While
        # the table is still all zero (it is never initialized: untouched pages cost
        # nothing) the biases alone drive the ReLUs, about half of which pass gradient.
        # He-uniform weights (bound sqrt(6 / fan_in), 2.4x wider) with biases of 0.01 fitted
        # a 3-D signed distance's training points, not its held-out ones (docs/field.md).
        for off, n_in, n_out in layers:
            bound = 1.0 / np.sqrt(n_in)
            w = rng.uniform(-bound, bound, size=(n_in, n_out)).astype(np.float32)
            b = rng.uniform(-bound, bound, size=n_out).astype(np.float32)
            store.write(off, np.concatenate([w.reshape(-1), b]))
        store.flush()
        return cls(store, tiers=tiers, prefetcher=prefetcher, backend=backend)

    @classmethod
    def open(
        cls,
        path: Any,
        *,
        readonly: bool = False,
        tiers: TierConfig | None = None,
        prefetcher: str | None = None,
        prefetch_depth: int = 8,
        layer_budget: int = 64 << 20,
        backend: str = "auto",
    ) -> DemandPagedField:
        """Open an existing field; ``readonly`` never modifies its files."""
        return cls(
            ShardedPageStore(path, readonly=readonly),
            tiers=tiers,
            prefetcher=prefetcher,
            prefetch_depth=prefetch_depth,
            layer_budget=layer_budget,
            backend=backend,
        )

    # ------------------------------------------------------------------ parameters
    def _read_floats(self, offset: int, n: int) -> np.ndarray:
        rb = self.row_bytes
        first, skip = divmod(offset, rb)  # skip: bytes into the first row (a write's tail)
        n_rows = -(-(skip + n * 4) // rb)
        raw = self.pages.read_rows(np.arange(first, first + n_rows, dtype=np.uint64))
        return raw.reshape(-1)[skip : skip + n * 4].view(np.float32)

    def _write_floats(self, offset: int, values: np.ndarray) -> None:
        rb = self.row_bytes
        data = np.ascontiguousarray(values, dtype=np.float32).reshape(-1)
        pad = (-len(data) * 4) % rb
        if pad:  # keep whole rows: read the tail to pad it
            tail = self._read_floats(offset + len(data) * 4, pad // 4)
            data = np.concatenate([data, tail])
        first = offset // rb
        rows = np.arange(first, first + len(data) * 4 // rb, dtype=np.uint64)
        self.pages.write_rows(rows, data.view(np.uint8).reshape(len(rows), rb))

    def decoder(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """The decoder's (W, b) per layer: paged in on first use, kept in an LRU of layers
        under ``layer_budget`` bytes (a dirty layer is written back when it leaves)."""
        out = []
        for k, (off, n_in, n_out) in enumerate(self.layers):
            entry = self._layer_cache.get(k)
            if entry is None:
                flat = self._read_floats(off, layer_floats(n_in, n_out))
                entry = [
                    flat[: n_in * n_out].reshape(n_in, n_out).copy(),
                    flat[n_in * n_out :].copy(),
                    False,
                ]
                self._layer_cache[k] = entry
                self.layer_stats["loads"] += 1
                self._trim_layers(keep=k)
            else:
                self._layer_cache.move_to_end(k)
            out.append((entry[0], entry[1]))
        return out

    def _trim_layers(self, keep: int) -> None:
        def size() -> int:
            return sum(e[0].nbytes + e[1].nbytes for e in self._layer_cache.values())

        while size() > self.layer_budget and len(self._layer_cache) > 1:
            k = next(iter(self._layer_cache))
            if k == keep:
                self._layer_cache.move_to_end(k)
                k = next(iter(self._layer_cache))
            self._evict_layer(k)

    def _evict_layer(self, k: int) -> None:
        W, b, dirty = self._layer_cache.pop(k)
        if dirty:
            self._write_floats(self.layers[k][0], np.concatenate([W.reshape(-1), b]))
            self.layer_stats["writebacks"] += 1
        self.layer_stats["evictions"] += 1

    def _set_layer(self, k: int, W: np.ndarray, b: np.ndarray) -> None:
        self._layer_cache[k] = [W.astype(np.float32), b.astype(np.float32), True]
        self._layer_cache.move_to_end(k)

    def _table_rows(self, rows: np.ndarray) -> np.ndarray:
        rows = rows + np.uint64(self.table_offset // self.row_bytes)
        return self.pages.read_rows(rows.reshape(-1)).view(np.float32)

    # ------------------------------------------------------------------ queries
    def _on_miss(self, pages: np.ndarray) -> None:
        """Prefetchers train on the miss stream (as hardware ones do): each missing page is an
        access; the pages they predict that are not in DRAM get a WILLNEED hint on SSD."""
        wanted: list[int] = []
        for p in pages.tolist():
            wanted.extend(self.tracker.access(p))
        if wanted:
            cand = np.array(wanted, dtype=np.uint64)
            cand = cand[~self.pages.is_resident(cand)]
            if len(cand):
                self.store.prefetch(cand)

    def encode(self, coords: Any) -> np.ndarray:
        """Hash-grid features (n, L*F) of coordinates in [0, 1]^D: read straight from the DRAM
        pool in one pass (``encode_paged``); the points with a corner on a page not in DRAM go
        through the tiers (which bring the pages in) and ``combine``: the same bits."""
        x = self.grid.check_points(coords)
        p = self.pages
        p.tick += 1
        k = self.grid.kernels
        fn = k.encode_paged if len(x) >= PARALLEL_FROM else k.encode_paged_serial
        feats, missing = fn(
            x,
            *self.grid.args,
            self.table_offset // self.row_bytes,
            self.row_bytes,
            p.page_size,
            p.resident,
            p.resident_slots,
            p.page_slot,
            p.pool_f32,
            p.slot_tick,
            p.tick,
        )
        n_miss = int(missing.sum())
        p.counts["dram"] += (len(x) - n_miss) * self.spec.n_levels * (1 << self.spec.n_dims)
        if n_miss:
            rows, weights = self.grid.corners(x[missing])
            values = self._table_rows(rows).reshape(*rows.shape, self.spec.n_features)
            feats[missing] = self.grid.combine(values, weights)
        return feats

    def _forward(self, feats: np.ndarray, params) -> list[np.ndarray]:
        acts = [feats]
        for k, (W, b) in enumerate(params):
            z = acts[-1] @ W + b
            acts.append(np.maximum(z, 0.0) if k < len(params) - 1 else z)
        return acts

    def _decode(self, feats: np.ndarray) -> np.ndarray:
        """The decoder's outputs: a batch through the fused kernel (``mlp_forward``: one pass
        per point, nothing materialized between layers; one or two hidden layers), a few
        points or a deeper decoder through numpy."""
        params = self.decoder()
        if len(feats) < PARALLEL_FROM or len(params) > 3:
            return self._forward(feats, params)[-1]
        if len(params) == 2:
            params = [*params, (np.zeros((0, 0), np.float32), np.zeros(0, np.float32))]
        args = [np.ascontiguousarray(a, dtype=np.float32) for W, b in params for a in (W, b)]
        return self.grid.kernels.mlp_forward(feats, *args)

    def query(self, coords: Any) -> np.ndarray:
        """Decoded values (n, out_dim); the latency of each call is recorded."""
        t0 = time.perf_counter()
        with self._lock:
            feats = self.encode(coords)
            out = self._decode(feats)
            self.n_queries += 1
            self.latencies.append(time.perf_counter() - t0)
        return out

    def loss_and_grads(self, coords: Any, target: Any):
        """0.5 * mean squared error at ``coords`` and its exact gradient (backpropagation).

        Returns ``(loss, rows, row_grads, decoder_grads)``: ``rows`` are the table rows the
        points touch (unique, uint64, in first-seen order), ``row_grads`` (len(rows), n_features) float32 their
        gradients summed over every corner that lands on them, ``decoder_grads`` one
        ``(dW, db)`` per decoder layer. With o = MLP(enc(x)), d(loss)/d(o) = (o - y) / n; a
        hidden layer passes d/dz = d/da * [z > 0] (the ReLU's derivative); the encoding passes
        weight * d/d(enc) to each corner's row (``accumulate_rows``). ``learn`` applies it.
        """
        return self._loss_and_grads(coords, target)[:4]

    def _loss_and_grads(self, coords: Any, target: Any):
        """``loss_and_grads`` plus the touched rows' current values (len(rows), F), taken
        from the forward pass so that a step does not read the table twice."""
        with self._lock:
            x, y = self._targets(coords, target)
            rows, weights = self.grid.corners(x)
            table_vals = self._table_rows(rows).reshape(*rows.shape, self.spec.n_features)
            feats = self.grid.combine(table_vals, weights)
            loss, decoder_grads, grad = self._backprop(feats, self.decoder(), y)
            uniq, summed, first = self.grid.accumulate(rows, weights, grad)
            current = table_vals.reshape(-1, self.spec.n_features)[first]
            return loss, uniq, summed, decoder_grads, current

    def _targets(self, coords: Any, target: Any) -> tuple[np.ndarray, np.ndarray]:
        x = self.grid.check_points(coords)
        y = np.asarray(target, dtype=np.float32).reshape(len(x), -1)
        out_dim = self.layers[-1][2]
        if y.shape[1] != out_dim:
            raise ShapeError(f"target must have shape ({len(x)}, {out_dim}), got {y.shape}")
        return x, y

    def _backprop(self, feats: np.ndarray, params, y: np.ndarray):
        """(loss, decoder gradients, d(loss)/d(encoding) float32) of the decoder at ``feats``."""
        acts = self._forward(feats, params)
        loss = 0.5 * float(np.sum((acts[-1] - y) ** 2)) / len(y)
        grad = (acts[-1] - y) / len(y)
        decoder_grads = []
        for k in range(len(params) - 1, -1, -1):
            W, _ = params[k]
            decoder_grads.append((acts[k].T @ grad, grad.sum(axis=0)))
            grad = grad @ W.T
            if k > 0:
                grad = grad * (acts[k] > 0)
        decoder_grads.reverse()
        return loss, decoder_grads, np.ascontiguousarray(grad, dtype=np.float32)

    def learn(
        self,
        coords: Any,
        target: Any,
        *,
        lr: float | None = None,
        optimizer: str | None = None,
        lr_decay: ExponentialDecay | None = None,
        decoder: bool = True,
        batch_size: int | None = None,
        report_every: int = 1,
        callback: ProgressCallback | None = None,
    ) -> float:
        """Minimize 0.5 * mean squared error (``loss_and_grads``): updates the touched table
        rows and (unless ``decoder=False``, which trains the table alone) the decoder in the
        paged store.

        ``optimizer``: "adam" (the default where the field has optimizer state: tiny-cuda-nn's
        settings, :mod:`neurofabric.field.optim`) or "sgd" (the default of fields created
        without it). ``lr``: default 1e-2 for Adam, 0.05 for SGD. A step whose loss or update
        is not finite raises :class:`neurofabric.core.errors.DivergenceError` and writes
        nothing (the earlier steps of the call stay). ``lr_decay``: an
        :class:`neurofabric.field.optim.ExponentialDecay` (Adam only): each step uses
        ``lr * lr_decay.factor(adam_step)``, the stored step count, so a schedule spans calls
        and close/open.

        Without ``batch_size``: one step on all the points; returns the loss before it. With
        ``batch_size``: one step per consecutive batch of that many points, in their order;
        returns the mean of the batches' losses (each before its step). ``callback`` gets a
        :class:`neurofabric.core.progress.Progress` (task "field.learn", unit "batch", metrics
        ``loss``: the mean loss of the batches since the last report, ``points``: the points
        learned so far) every ``report_every`` batches and after the last; returning True
        stops after that batch, keeping the steps taken (in the store, as any learn)."""
        if optimizer is None:
            optimizer = "adam" if self.optim_layout is not None else "sgd"
        check_choice("optimizer", optimizer, OPTIMIZERS)
        if optimizer == "adam" and self.optim_layout is None:
            raise ConfigError(
                "`optimizer` 'adam' needs the optimizer state this field was created without "
                "(DemandPagedField.create(..., optimizer_state=True)); use optimizer='sgd'"
            )
        lr = DEFAULT_LR[optimizer] if lr is None else lr
        check_positive("lr", lr)
        if lr_decay is not None:
            if not isinstance(lr_decay, ExponentialDecay):
                raise ConfigError(
                    "`lr_decay` must be a neurofabric.field.optim.ExponentialDecay or None, "
                    f"got {type(lr_decay).__name__}"
                )
            if optimizer != "adam":
                raise ConfigError(
                    "`lr_decay` follows the Adam step count; use optimizer='adam' (or change "
                    "`lr` between calls for SGD)"
                )
        check_int("report_every", report_every, min_value=1)
        check_callback(callback)
        if self.store.readonly:
            raise StorageError(
                f"{self.store.path} is open read-only; open it with readonly=False to learn"
            )
        if batch_size is None:
            batches = [(coords, target)]
        else:
            check_int("batch_size", batch_size, min_value=1)
            x = self.grid.check_points(coords)
            y = np.asarray(target, dtype=np.float32).reshape(len(x), -1)
            starts = range(0, max(len(x), 1), batch_size)
            batches = [(x[i : i + batch_size], y[i : i + batch_size]) for i in starts]
        report = ProgressReporter("field.learn", len(batches), "batch", callback)
        losses: list[float] = []
        points = reported = 0
        for k, (xb, yb) in enumerate(batches, start=1):
            lr_k = lr if lr_decay is None else lr * lr_decay.factor(self.adam_step)
            losses.append(self._step(xb, yb, lr_k, optimizer, decoder))
            points += len(np.atleast_2d(xb))
            if k % report_every == 0 or k == len(batches):
                recent, reported = losses[reported:], k
                if report.update(k, loss=sum(recent) / len(recent), points=points):
                    log.info("learn stopped by the callback after batch %d", k)
                    break
        return sum(losses) / len(losses)

    def _step(
        self, coords: Any, target: Any, lr: float, optimizer: str = "sgd", decoder: bool = True
    ) -> float:
        """One step of ``optimizer`` (see ``learn``); the loss before it. Everything is
        computed and checked finite before the first write."""
        with self._lock, np.errstate(over="ignore", invalid="ignore"):  # checked below
            if optimizer == "adam":
                loss = self._adam_pool_step(coords, target, lr, decoder)
                if loss is not None:
                    return loss
            loss, rows, row_grads, decoder_grads, current = self._loss_and_grads(coords, target)
            params = self.decoder()
            table_rows = rows + np.uint64(self.table_offset // self.row_bytes)
            if optimizer == "sgd":
                layers = [
                    (W - lr * gW, b - lr * gb)
                    for (W, b), (gW, gb) in zip(params, decoder_grads, strict=True)
                ]
                updated = current - lr * row_grads
                check_finite(
                    "this SGD step", updated, *(a for wb in layers for a in wb), lr=lr, loss=loss
                )
                writes = [(table_rows, updated)]
            else:
                layers, writes = self._adam_step(
                    params, decoder_grads, rows, current, row_grads, lr, loss, decoder
                )
            for k, (W, b) in enumerate(layers if decoder else ()):
                self._set_layer(k, W, b)
            for where, values in writes:
                self.pages.write_rows(
                    where, np.ascontiguousarray(values, np.float32).view(np.uint8)
                )
            return loss

    def _adam_decoder(self, params, decoder_grads, lr: float, t: int):
        """The decoder's new layers and moments after Adam step ``t`` (nothing stored)."""
        layers, moments = [], []
        for (W, b), (gW, gb), (mW, vW, mb, vb) in zip(
            params, decoder_grads, self._adam_state()["layers"], strict=True
        ):
            W2, mW2, vW2 = adam_update(W, mW, vW, gW.astype(np.float32), lr=lr, t=t)
            b2, mb2, vb2 = adam_update(b, mb, vb, gb.astype(np.float32), lr=lr, t=t)
            layers.append((W2, b2))
            moments.append((mW2, vW2, mb2, vb2))
        return layers, moments

    def _commit_adam(self, t: int, layers, moments, decoder: bool) -> None:
        state = self._adam_state()
        state["t"], state["dirty"] = t, True
        if decoder:
            state["layers"] = moments
            for k, (W, b) in enumerate(layers):
                self._set_layer(k, W, b)

    def _adam_row_offsets(self) -> np.ndarray:
        """The global row of table row 0, of its first moment and of its second (uint64)."""
        lay = self.optim_layout
        return np.array(
            [self.table_offset // self.row_bytes, lay["m_row"], lay["v_row"]], np.uint64
        )

    def _pool_adam_args(self, x: np.ndarray, grad_enc: np.ndarray, hyper: np.ndarray, tick: int):
        """The arguments of the kernels' ``adam_rows_paged`` for this field's DRAM pool."""
        p = self.pages
        return [
            x,
            grad_enc,
            *self.grid.args,
            self._adam_row_offsets(),
            self.row_bytes,
            p.page_size,
            p.resident,
            p.resident_slots,
            p.page_slot,
            p.pool_f32,
            hyper,
            p.slot_dirty,
            p.slot_tick,
            tick,
        ]

    def _adam_pool_step(self, coords: Any, target: Any, lr: float, decoder: bool) -> float | None:
        """An Adam step computed and written straight in the DRAM pool (the kernels'
        ``adam_rows_paged``: no row lists gathered, no tier calls for the moments); the same
        bits as the tiered path of ``_step``. Where a touched row's value or moment is on a page
        not in DRAM, the batch's pages are brought in and the kernel runs once more; None, with
        nothing written, if they still are not all in DRAM (more than it holds): the caller
        then takes the tiered path."""
        x, y = self._targets(coords, target)
        feats = self.encode(x)  # brings the table pages of the batch into DRAM
        params = self.decoder()
        loss, decoder_grads, grad_enc = self._backprop(feats, params, y)
        t = self._adam_state()["t"] + 1
        layers, moments = self._adam_decoder(params, decoder_grads, lr, t)
        check_finite("this Adam step", *(a for wb in layers for a in wb), lr=lr, loss=loss)
        hyper, p = adam_hyper(lr, t), self.pages
        p.tick += 1

        def apply() -> tuple[int, int]:  # the arguments again: a bring-in replaces arrays
            return self.grid.kernels.adam_rows_paged(
                *self._pool_adam_args(x, grad_enc, hyper, p.tick)
            )

        touched, status = apply()
        if status == 1:  # a value's or moment's page is not in DRAM: bring them in, try again
            # every corner as it comes (no np.unique: 40 ms for a batch of 4,096 points, where
            # the tiers look only at the rows that miss, often a handful of pages)
            rows = self.grid.corners(x)[0].reshape(-1)
            p.read_rows(np.concatenate([rows + o for o in self._adam_row_offsets()]))
            touched, status = apply()
        if status == 1:  # the batch's pages do not fit in DRAM together
            return None
        if status == 2:
            raise DivergenceError(
                f"the learning step diverged: this Adam step would write non-finite table "
                f"values (loss {loss:.6g}); nothing was written (the field keeps its last "
                f"finite state). Lower `lr` (it was {lr:g})"
            )
        self._commit_adam(t, layers, moments, decoder)
        p.counts["dram"] += 2 * touched  # the moments' rows read
        return loss

    def _adam_step(self, params, decoder_grads, rows, current, row_grads, lr, loss, decoder=True):
        """New decoder layers and the table writes (rows, m, v) of one Adam step through the
        tiers; the decoder's moments and t are updated in memory only once everything is known
        to be finite."""
        t = self._adam_state()["t"] + 1
        layers, moments = self._adam_decoder(params, decoder_grads, lr, t)
        lay = self.optim_layout
        F = self.spec.n_features
        m_rows, v_rows = rows + np.uint64(lay["m_row"]), rows + np.uint64(lay["v_row"])
        m = self.pages.read_rows(m_rows).view(np.float32).reshape(len(rows), F)
        v = self.pages.read_rows(v_rows).view(np.float32).reshape(len(rows), F)
        w2, m2, v2 = adam_update(current, m, v, row_grads, lr=lr, t=t)
        check_finite(
            "this Adam step", w2, m2, v2, *(a for wb in layers for a in wb), lr=lr, loss=loss
        )
        self._commit_adam(t, layers, moments, decoder)
        table_rows = rows + np.uint64(self.table_offset // self.row_bytes)
        return [], [(table_rows, w2), (m_rows, m2), (v_rows, v2)]

    def _adam_state(self) -> dict[str, Any]:
        """The decoder's Adam moments and the step count t, paged in on first use."""
        if self._adam is None:
            n = [layer_floats(n_in, n_out) for _, n_in, n_out in self.layers]
            off = self.optim_layout["state"]
            raw = self._read_floats(off, 2 + 2 * sum(n))
            t = int(raw[:2].copy().view(np.int64)[0])
            flat, layers, pos = raw[2:], [], 0
            for (_, n_in, n_out), size in zip(self.layers, n, strict=True):
                m, v = flat[pos : pos + size], flat[pos + size : pos + 2 * size]
                pos += 2 * size
                split = n_in * n_out
                layers.append(
                    (
                        m[:split].reshape(n_in, n_out).copy(),
                        v[:split].reshape(n_in, n_out).copy(),
                        m[split:].copy(),
                        v[split:].copy(),
                    )
                )
            self._adam = {"t": t, "layers": layers, "dirty": False}
        return self._adam

    def _flush_adam(self) -> None:
        state = self._adam
        if state is None or not state["dirty"]:
            return
        parts = [np.array([state["t"]], np.int64).view(np.float32)]
        for mW, vW, mb, vb in state["layers"]:
            parts += [mW.reshape(-1), mb, vW.reshape(-1), vb]
        self._write_floats(self.optim_layout["state"], np.concatenate(parts))
        state["dirty"] = False

    @property
    def adam_step(self) -> int:
        """Adam steps taken by this field (0 without optimizer state)."""
        return 0 if self.optim_layout is None else int(self._adam_state()["t"])

    def write(
        self,
        coords: Any,
        value: Any,
        *,
        tol: float = 1e-3,
        max_steps: int = 200,
        lr: float | None = None,
        optimizer: str | None = None,
    ) -> int:
        """Learn until the field returns ``value`` at ``coords`` (within ``tol``); returns the
        steps taken (``lr``, ``optimizer``: as ``learn``; nothing non-finite is written)."""
        for step in range(1, max_steps + 1):
            self.learn(coords, value, lr=lr, optimizer=optimizer)
            err = np.max(
                np.abs(
                    self.query(coords)
                    - np.asarray(value, dtype=np.float32).reshape(len(np.atleast_2d(coords)), -1)
                )
            )
            if err <= tol:
                return step
        return max_steps

    # ------------------------------------------------------------------ bookkeeping
    def latency_summary(self) -> dict[str, float]:
        if not self.latencies:
            return {"p50_us": float("nan"), "p95_us": float("nan"), "p99_us": float("nan")}
        lat = np.asarray(self.latencies) * 1e6
        p50, p95, p99 = np.percentile(lat, [50, 95, 99])
        return {
            "p50_us": float(p50),
            "p95_us": float(p95),
            "p99_us": float(p99),
            "mean_us": float(lat.mean()),
            "queries": len(lat),
        }

    def latency_histogram(self, bins: int = 30) -> tuple[np.ndarray, np.ndarray]:
        """Counts and log-spaced edges (microseconds) of the recorded query latencies."""
        lat = np.asarray(self.latencies) * 1e6
        if not len(lat):
            return np.zeros(0, int), np.zeros(0)
        edges = np.logspace(np.log10(max(lat.min(), 0.1)), np.log10(lat.max() * 1.001), bins + 1)
        edges[0] = min(edges[0], lat.min())  # 10**log10(x) can round above x: keep the fastest
        return np.histogram(lat, bins=edges)

    def stats(self) -> dict[str, Any]:
        out = {
            "tiers": self.pages.stats(),
            "latency": self.latency_summary(),
            "decoder_layers": dict(self.layer_stats),
            "disk_bytes": self.store.disk_bytes(),
            "logical_bytes": self.store.logical_bytes,
        }
        if self.tracker is not None:
            out["prefetch"] = self.tracker.summary()
        return out

    def reset_stats(self) -> None:
        self.latencies.clear()
        self.pages.counts = dict.fromkeys(self.pages.counts, 0)
        if self.tracker is not None:
            t = self.tracker
            t.accesses = t.covered = t.issued = t.useful = 0
            t.seconds = 0.0

    def flush(self) -> None:
        """Write dirty decoder layers and pages back to SSD and sync (not on the query path)."""
        with self._lock:
            self._flush_adam()
            for k, entry in self._layer_cache.items():
                if entry[2]:
                    self._write_floats(
                        self.layers[k][0], np.concatenate([entry[0].reshape(-1), entry[1]])
                    )
                    entry[2] = False
                    self.layer_stats["writebacks"] += 1
            self.pages.flush()

    def close(self) -> None:
        with self._lock:
            if not self.store.readonly:
                self.flush()
            self.store.close()

    def __enter__(self) -> DemandPagedField:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
