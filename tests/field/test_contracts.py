"""The shared contracts of core, as the field uses them: one backend registry (a typo raises,
"auto" runs numba), one progress callback that can stop learning, one manifest reader."""

from collections import Counter

import numpy as np
import pytest

from neurofabric.core.errors import ConfigError
from neurofabric.field import DemandPagedField, HashGrid, HashGridSpec, TieredPages
from neurofabric.field.kernels import numba_cpu, reference
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
    return DemandPagedField.create(
        path, spec=SPEC, hidden=(8,), seed=0, logical_bytes=1 << 24, shard_bytes=1 << 20, **kwargs
    )


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
