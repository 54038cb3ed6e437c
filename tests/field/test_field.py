"""The demand-paged field end to end: learning, persistence, read-only use, threads (crashes:
test_kill.py)."""

import hashlib
import threading
import time

import numpy as np
import pytest

from neurofabric.core.errors import CheckpointError, ConfigError, ShapeError, StorageError
from neurofabric.field import DemandPagedField, HashGridSpec, TierConfig
from neurofabric.store import ShardedPageStore

SPEC = HashGridSpec(
    n_dims=2, n_levels=6, n_features=2, log2_table=12, base_resolution=4, per_level_scale=1.6
)


def _target(x):
    return np.sin(6 * x[:, :1]) * np.cos(4 * x[:, 1:2])


def _digest(folder):
    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(f.name.encode() + f.read_bytes() + str(f.stat().st_mtime_ns).encode())
    return h.hexdigest()


def test_learning_fits_a_function_and_survives_reopening(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((400, 2)).astype(np.float32)
    y = _target(x)
    with DemandPagedField.create(
        tmp_path / "f", spec=SPEC, hidden=(16,), seed=0, logical_bytes=1 << 30, shard_bytes=1 << 24
    ) as field:
        first = float(np.mean((field.query(x) - y) ** 2))
        for _ in range(60):
            for i in range(0, 400, 40):
                field.learn(x[i : i + 40], y[i : i + 40])  # Adam, lr 1e-2
        fitted = field.query(x)
        mse = float(np.mean((fitted - y) ** 2))
        stats = field.stats()
    assert mse < 0.1 * first
    assert stats["latency"]["queries"] >= 2 and stats["tiers"]["row_reads"]["dram"] > 0
    again = DemandPagedField.open(tmp_path / "f", readonly=True)
    np.testing.assert_allclose(again.query(x), fitted, rtol=1e-6, atol=1e-6)
    again.close()


def test_write_sets_a_value(tmp_path):
    with DemandPagedField.create(
        tmp_path / "f", spec=SPEC, seed=1, logical_bytes=1 << 30, shard_bytes=1 << 24
    ) as field:
        steps = field.write([[0.2, 0.9]], [[0.5]], tol=1e-3)
        assert steps < 200
        assert field.query([[0.2, 0.9]])[0, 0] == pytest.approx(0.5, abs=1e-3)


def test_a_petabyte_field_is_sparse_on_disk(tmp_path):
    spec = HashGridSpec(n_dims=3, n_levels=16, n_features=2, log2_table=40, hash_bits=64)
    t0 = time.perf_counter()
    field = DemandPagedField.create(tmp_path / "pb", spec=spec, logical_bytes=2**50)
    created = time.perf_counter() - t0
    field.learn([[0.1, 0.2, 0.3]], [[1.0]])
    field.flush()
    assert field.store.logical_bytes == 2**50 and spec.n_rows > 2**42
    assert field.store.disk_bytes() < 64 << 20  # a few touched pages and the decoder
    field.close()
    t0 = time.perf_counter()
    DemandPagedField.open(tmp_path / "pb", readonly=True).close()
    assert created + time.perf_counter() - t0 < 30  # (a loose bound: the benchmark times it)


def test_read_only_field_changes_nothing(tmp_path):
    with DemandPagedField.create(
        tmp_path / "f", spec=SPEC, logical_bytes=1 << 30, shard_bytes=1 << 24
    ) as f:
        f.learn([[0.5, 0.5]], [[1.0]])
    before = _digest(tmp_path / "f")
    ro = DemandPagedField.open(tmp_path / "f", readonly=True)
    ro.query(np.random.default_rng(0).random((50, 2)))
    with pytest.raises(StorageError, match="read-only"):
        ro.learn([[0.5, 0.5]], [[0.0]])
    ro.close()
    assert _digest(tmp_path / "f") == before


def test_bad_input_is_refused(tmp_path):
    with DemandPagedField.create(
        tmp_path / "f", spec=SPEC, logical_bytes=1 << 30, shard_bytes=1 << 24
    ) as f:
        with pytest.raises(ShapeError, match=r"\(n, 2\)"):
            f.query([[0.1, 0.2, 0.3]])
        with pytest.raises(ShapeError, match="target"):
            f.learn([[0.1, 0.2]], [[1.0, 2.0]])
    ShardedPageStore.create(tmp_path / "plain", logical_bytes=1 << 20, shard_bytes=1 << 16).close()
    with pytest.raises(CheckpointError, match="manifest.json: a page store but not a neural field"):
        DemandPagedField.open(tmp_path / "plain")
    with pytest.raises(ConfigError, match="logical_bytes"):
        DemandPagedField.create(tmp_path / "small", spec=SPEC, logical_bytes=4096, shard_bytes=4096)


def test_concurrent_queries_agree_with_sequential_ones(tmp_path):
    x = np.random.default_rng(3).random((64, 2)).astype(np.float32)
    with DemandPagedField.create(
        tmp_path / "f",
        spec=SPEC,
        logical_bytes=1 << 30,
        shard_bytes=1 << 24,
        tiers=TierConfig(dram_pages=8),
    ) as field:
        field.learn(x, _target(x))
        expected = field.query(x)
        results = [None] * 4

        def worker(k):
            results[k] = np.concatenate([field.query(x[i : i + 1]) for i in range(64)])

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    for r in results:
        np.testing.assert_allclose(r, expected, rtol=1e-6, atol=1e-6)


def test_the_decoder_starts_as_torch_nn_linear(tmp_path):
    """Weights and biases uniform in +-1/sqrt(fan_in), torch.nn.Linear's default and the torch
    peers' (a He-uniform decoder, 2.4x wider, fitted a 3-D SDF 10 dB worse held out)."""
    spec = HashGridSpec(n_dims=2, n_levels=8, n_features=4, log2_table=10)  # 32 inputs
    with DemandPagedField.create(
        tmp_path / "f", spec=spec, hidden=(256, 128), out_dim=64, seed=3, logical_bytes=1 << 24
    ) as field:
        layers = field.decoder()
    assert [W.shape for W, _ in layers] == [(32, 256), (256, 128), (128, 64)]
    for W, b in layers:
        bound = 1.0 / np.sqrt(W.shape[0])
        assert np.abs(W).max() <= bound and np.abs(b).max() <= bound
        # the weights (8,192 or more): centred, the full range used, and uniform: the standard
        # deviation of U(-c, c) is c / sqrt(3)
        assert np.abs(W).max() > 0.99 * bound and abs(float(np.mean(W))) < 0.05 * bound
        assert float(np.std(W)) == pytest.approx(bound / np.sqrt(3), rel=0.05)
        # the biases (64 or more) are drawn too, not constant (each 3.5 sigma or more)
        assert np.abs(b).max() > 0.8 * bound and abs(float(np.mean(b))) < 0.25 * bound
        assert float(np.std(b)) > 0.4 * bound
