"""The shared contracts of core, as the field uses them: one backend registry (a typo raises,
"auto" runs numba), one progress callback that can stop learning, one manifest reader."""

import json
from collections import Counter

import numpy as np
import pytest

from neurofabric.core.errors import CheckpointError, ConfigError
from neurofabric.field import DemandPagedField, HashGrid, HashGridSpec, TierConfig, TieredPages
from neurofabric.field.kernels import numba_cpu, reference
from neurofabric.field.prefetch import PrefetchTracker, StridePrefetcher
from neurofabric.field.workloads import make_workload
from neurofabric.store import ShardedPageStore

SPEC = HashGridSpec(
    n_dims=2, n_levels=4, n_features=2, log2_table=10, base_resolution=4, per_level_scale=1.6
)
KERNELS = (
    "hash_corners_serial",
    "hash_combine_serial",
    "accumulate_rows",
    "gather_rows",
    "scatter_rows",
    "encode_paged_serial",
    "adam_rows_paged",
)


def _count_calls(monkeypatch, module) -> Counter:
    calls: Counter = Counter()
    for name in KERNELS:
        fn = getattr(module, name)

        def counted(*args, _fn=fn, _name=name):
            calls[_name] += 1
            return _fn(*args)

        monkeypatch.setattr(module, name, counted)
    return calls


def _create(path, **kwargs):
    kwargs = {
        "spec": SPEC,
        "hidden": (8,),
        "logical_bytes": 1 << 24,
        "shard_bytes": 1 << 20,
    } | kwargs
    return DemandPagedField.create(path, seed=0, **kwargs)


@pytest.mark.parametrize(
    "make",
    [
        lambda tmp: HashGrid(SPEC, backend="numab"),
        lambda tmp: _create(tmp / "f", backend="numab"),
        lambda tmp: TieredPages(
            ShardedPageStore.create(tmp / "s", logical_bytes=1 << 20, shard_bytes=1 << 16),
            row_bytes=8,
            backend="numab",
        ),
    ],
)
def test_a_backend_typo_raises_naming_the_choices(tmp_path, make):
    with pytest.raises(
        ConfigError, match=r"`backend` must be one of \[.*\] for field, got 'numab'"
    ) as e:
        make(tmp_path)
    assert all(f"'{name}'" in str(e.value) for name in ("auto", "numba", "reference"))
    assert not (tmp_path / "f").exists()


@pytest.mark.parametrize(
    "backend,used", [("auto", "numba"), ("numba", "numba"), ("reference", "reference")]
)
def test_the_resolved_backend_is_the_one_whose_kernels_run(tmp_path, monkeypatch, backend, used):
    fast = _count_calls(monkeypatch, numba_cpu)
    slow = _count_calls(monkeypatch, reference)
    with _create(tmp_path / "f", backend=backend) as field:
        assert (field.backend, field.grid.backend, field.pages.backend) == (used, used, used)
        x = np.random.default_rng(0).random((5, 2))
        field.learn(x, np.ones((5, 1)))
        field.learn(x, np.ones((5, 1)))
        field.query(x)
    with DemandPagedField.open(tmp_path / "f", readonly=True, backend=backend) as field:
        assert field.backend == used
    ran, idle = (fast, slow) if used == "numba" else (slow, fast)
    # each learn and the query encode with encode_paged; in the first learn adam_rows_paged
    # finds the moments' pages not in DRAM, the tiers bring them in (gather_rows) and it runs
    # again; the second learn is adam_rows_paged's alone
    assert ran["encode_paged_serial"] == 3 and ran["adam_rows_paged"] == 3
    assert ran["gather_rows"] >= 1
    assert sum(idle.values()) == 0


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda tmp: HashGridSpec(n_dims=5), r"`n_dims` must be <= 4, got 5"),
        (lambda tmp: HashGridSpec(n_levels=2.0), r"`n_levels` must be an integer, got 2.0"),
        (lambda tmp: HashGridSpec(hash_bits=16), r"`hash_bits` must be one of \(32, 64\), got 16"),
        (lambda tmp: HashGridSpec(per_level_scale=0.5), r"`per_level_scale` must be >= 1, got 0.5"),
        (lambda tmp: TierConfig(dram_pages=0), r"`dram_pages` must be >= 1, got 0"),
        (lambda tmp: TierConfig(cxl_delay_s=-1), r"`cxl_delay_s` must be >= 0 \(seconds\), got -1"),
        (lambda tmp: TierConfig(ssd_pages=0, slow_url="x"), r"`ssd_pages` must be >= 1, got 0"),
        (
            lambda tmp: make_workload("interleaved", 5, random_fraction=2),
            r"`random_fraction` must be a probability in \[0, 1\], got 2",
        ),
        (lambda tmp: make_workload("zipf", 0), r"`n` must be >= 1, got 0"),
        (lambda tmp: PrefetchTracker(StridePrefetcher(), k=0), r"`k` must be >= 1, got 0"),
        (lambda tmp: StridePrefetcher(confirm=-1), r"`confirm` must be >= 0, got -1"),
        (lambda tmp: _create(tmp / "f", out_dim=0), r"`out_dim` must be >= 1, got 0"),
        (lambda tmp: _create(tmp / "f", hidden=(8, 0)), r"`hidden\[1\]` must be >= 1, got 0"),
        (
            lambda tmp: ShardedPageStore.create(tmp / "s", page_size=1000),
            r"`page_size` must be a power of two >= \d+, got 1000",
        ),
        (
            lambda tmp: ShardedPageStore.create(tmp / "s", logical_bytes=0),
            r"`logical_bytes` must be >= 1, got 0",
        ),
        (
            lambda tmp: ShardedPageStore.create(tmp / "s", max_open=0),
            r"`max_open` must be >= 1, got 0",
        ),
    ],
)
def test_parameters_are_checked_naming_the_parameter_and_value(tmp_path, make, match):
    with pytest.raises(ConfigError, match=match):
        make(tmp_path)


def test_learn_checks_its_step_size(tmp_path):
    with _create(tmp_path / "f") as field:
        for lr in (0, -1.0, float("inf")):
            with pytest.raises(ConfigError, match="`lr` must be"):
                field.learn([[0.5, 0.5]], [[1.0]], lr=lr)


def _edit_manifest(folder, change):
    manifest = folder / "manifest.json"
    manifest.write_text(change(json.loads(manifest.read_text())))
    return manifest


@pytest.mark.parametrize(
    "change,match",
    [
        (lambda m: "{garbage", "manifest is not valid JSON"),
        (
            lambda m: json.dumps({**m, "format": "neurofabric-checkpoint"}),
            "not a neurofabric-pages manifest",
        ),
        (lambda m: json.dumps({**m, "format_version": 2}), "format_version 2 is not supported"),
        (
            lambda m: json.dumps(
                {k: v for k, v in m.items() if k != "format_version"} | {"version": 2}
            ),
            "version 2 is not supported",
        ),
        (lambda m: json.dumps({k: v for k, v in m.items() if k != "page_size"}), "incomplete"),
    ],
)
def test_a_wrong_store_manifest_is_a_checkpoint_error_naming_it(tmp_path, change, match):
    ShardedPageStore.create(tmp_path / "s", logical_bytes=1 << 20, shard_bytes=1 << 16).close()
    manifest = _edit_manifest(tmp_path / "s", change)
    with pytest.raises(CheckpointError, match=match) as e:
        ShardedPageStore(tmp_path / "s")
    assert str(manifest) in str(e.value)


def test_stores_written_before_format_version_still_open(tmp_path):
    with ShardedPageStore.create(tmp_path / "s", logical_bytes=1 << 20, shard_bytes=1 << 16) as s:
        s.write(4096, np.arange(8, dtype=np.uint8))
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert manifest["format_version"] == manifest["version"] == 1  # old readers read "version"
    _edit_manifest(
        tmp_path / "s", lambda m: json.dumps({k: v for k, v in m.items() if k != "format_version"})
    )
    with ShardedPageStore(tmp_path / "s", readonly=True) as s:
        assert s.read(4096, 8).tolist() == list(range(8))


@pytest.mark.parametrize(
    "change,match",
    [
        (
            lambda m: {k: v for k, v in m.items() if k != "meta"},
            "a page store but not a neural field",
        ),
        (
            lambda m: m | {"meta": m["meta"] | {"format": "other"}},
            "a page store but not a neural field",
        ),
        (lambda m: m | {"meta": m["meta"] | {"version": 2}}, "field version 2 is not supported"),
        (
            lambda m: m | {"meta": m["meta"] | {"spec": {"n_dims": 9}}},
            "spec, layers or table offset",
        ),
        (lambda m: m | {"meta": m["meta"] | {"layers": [[0, 1]]}}, "spec, layers or table offset"),
        (
            lambda m: m | {"meta": {k: v for k, v in m["meta"].items() if k != "table_offset"}},
            "spec, layers or table offset",
        ),
    ],
)
def test_a_wrong_field_section_is_a_checkpoint_error_naming_the_manifest(tmp_path, change, match):
    _create(tmp_path / "f").close()
    manifest = _edit_manifest(tmp_path / "f", lambda m: json.dumps(change(m)))
    with pytest.raises(CheckpointError, match=match) as e:
        DemandPagedField.open(tmp_path / "f")
    assert str(manifest) in str(e.value)


@pytest.mark.parametrize(
    "content,match",
    [
        (b"not a numpy file", "not a .npy array of page numbers"),
        (None, "must be a 1-D integer array"),  # a float matrix
    ],
)
def test_a_wrong_slow_tier_index_is_a_checkpoint_error_naming_it(tmp_path, content, match):
    store = ShardedPageStore.create(tmp_path / "s", logical_bytes=1 << 24, shard_bytes=1 << 20)
    index = tmp_path / "s" / "slow_pages.npy"
    if content is None:
        np.save(index, np.ones((2, 2)))
    else:
        index.write_bytes(content)
    config = TierConfig(dram_pages=2, ssd_pages=2, slow_url=str(tmp_path / "slow"))
    with pytest.raises(CheckpointError, match=match) as e:
        TieredPages(store, config, row_bytes=8)
    assert str(index) in str(e.value)


def test_the_slow_tier_index_is_written_atomically_and_read_back(tmp_path):
    store = ShardedPageStore.create(tmp_path / "s", logical_bytes=1 << 24, shard_bytes=1 << 20)
    config = TierConfig(dram_pages=2, ssd_pages=2, slow_url=str(tmp_path / "slow"))
    tiers = TieredPages(store, config, row_bytes=8)
    for page in range(8):
        tiers.write_rows(np.array([page * 512], np.uint64), np.full((1, 8), page, np.uint8))
    tiers.flush()
    assert tiers.slow_pages
    assert sorted(p.name for p in (tmp_path / "s").iterdir() if p.name.startswith(".")) == []
    assert TieredPages(store, config, row_bytes=8).slow_pages == tiers.slow_pages


def _state(field):
    table = field.pages.read_rows(np.arange(SPEC.n_rows, dtype=np.uint64)).copy()
    return table, [(W.copy(), b.copy()) for W, b in field.decoder()]


def _same_state(a, b):
    (ta, da), (tb, db) = _state(a), _state(b)
    assert np.array_equal(ta, tb)
    for (Wa, ba), (Wb, bb) in zip(da, db, strict=True):
        assert np.array_equal(Wa, Wb) and np.array_equal(ba, bb)


def _points(n=70):
    rng = np.random.default_rng(4)
    x = rng.random((n, 2)).astype(np.float32)
    return x, np.sin(5 * x[:, :1]) + x[:, 1:]


def test_learning_in_batches_is_one_learn_step_per_batch(tmp_path):
    x, y = _points()
    with _create(tmp_path / "a") as a, _create(tmp_path / "b") as b:
        mean = a.learn(x, y, lr=0.1, batch_size=10)
        losses = [b.learn(x[i : i + 10], y[i : i + 10], lr=0.1) for i in range(0, 70, 10)]
        assert mean == sum(losses) / 7
        _same_state(a, b)


def test_learn_reports_every_interval_and_stops_after_the_batch_where_asked(tmp_path):
    x, y = _points()
    seen = []
    with _create(tmp_path / "a") as a:
        a.learn(x, y, batch_size=10, report_every=3, callback=seen.append)
    assert [(p.done, p["points"]) for p in seen] == [(3, 30), (6, 60), (7, 70)]
    assert {(p.task, p.total, p.unit) for p in seen} == {("field.learn", 7, "batch")}
    with _create(tmp_path / "b") as b:
        losses = [b.learn(x[i : i + 10], y[i : i + 10]) for i in range(0, 70, 10)]
    assert [p["loss"] for p in seen] == pytest.approx(
        [np.mean(losses[:3]), np.mean(losses[3:6]), losses[6]], rel=1e-12
    )

    seen.clear()
    with _create(tmp_path / "stopped") as s, _create(tmp_path / "short") as short:
        mean = s.learn(
            x, y, batch_size=10, report_every=2, callback=lambda p: seen.append(p) or p.done == 4
        )
        assert [p.done for p in seen] == [2, 4]  # stopped after the fourth batch
        assert mean == pytest.approx(short.learn(x[:40], y[:40], batch_size=10))
        _same_state(s, short)
    with (
        DemandPagedField.open(tmp_path / "stopped", readonly=True) as s,
        DemandPagedField.open(tmp_path / "short", readonly=True) as short,
    ):
        _same_state(s, short)  # what was learned is kept on disk


def test_one_learn_step_reports_once(tmp_path):
    seen = []
    with _create(tmp_path / "f") as field:
        loss = field.learn([[0.2, 0.4]], [[1.0]], callback=seen.append)
        with pytest.raises(ConfigError, match="`callback` must be a function"):
            field.learn([[0.2, 0.4]], [[1.0]], callback=1)
        with pytest.raises(ConfigError, match="`batch_size` must be >= 1, got 0"):
            field.learn([[0.2, 0.4]], [[1.0]], batch_size=0)
    assert [(p.done, p.total, p["points"], p["loss"]) for p in seen] == [(1, 1, 1, loss)]
