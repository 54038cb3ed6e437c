"""The shared contracts of core, as the field uses them: one backend registry (a typo raises,
"auto" runs numba), one progress callback that can stop learning, one manifest reader."""

from collections import Counter

import numpy as np
import pytest

from neurofabric.core.errors import ConfigError
from neurofabric.field import DemandPagedField, HashGrid, HashGridSpec, TierConfig, TieredPages
from neurofabric.field.kernels import numba_cpu, reference
from neurofabric.field.prefetch import PrefetchTracker, StridePrefetcher
from neurofabric.field.workloads import make_workload
from neurofabric.store import ShardedPageStore

SPEC = HashGridSpec(
    n_dims=2, n_levels=4, n_features=2, log2_table=10, base_resolution=4, per_level_scale=1.6
)
KERNELS = ("hash_corners_serial", "hash_combine_serial", "hash_backward", "gather_rows")


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
        field.query(x)
    with DemandPagedField.open(tmp_path / "f", readonly=True, backend=backend) as field:
        assert field.backend == used
    ran, idle = (fast, slow) if used == "numba" else (slow, fast)
    assert ran["hash_corners_serial"] == 2 and ran["hash_combine_serial"] == 2
    assert ran["hash_backward"] == 1 and ran["gather_rows"] >= 3
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
