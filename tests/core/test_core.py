import math

import numpy as np
import pytest

from neurofabric.core import backend as backends
from neurofabric.core.config import config_context, get_config
from neurofabric.core.errors import BackendUnavailableError, ConfigError, ShapeError
from neurofabric.core.rng import make_rng, seed_to_int
from neurofabric.core.validation import broadcast_param, check_positive, check_probability


def test_config_context_nests_and_restores():
    base = get_config().backend
    with config_context(backend="reference"):
        assert get_config().backend == "reference"
        with config_context(backend="numba"):
            assert get_config().backend == "numba"
        assert get_config().backend == "reference"
    assert get_config().backend == base
    with pytest.raises(ConfigError, match="unknown setting"), config_context(colour="red"):
        pass


def test_environment_defaults(monkeypatch, tmp_path):
    import neurofabric.core.config as cfg

    monkeypatch.setenv("NEUROFABRIC_DATA", str(tmp_path))
    monkeypatch.setenv("NEUROFABRIC_THREADS", "3")
    settings = cfg._from_environment()
    assert settings.data_dir == tmp_path and settings.threads == 3
    monkeypatch.setenv("NEUROFABRIC_BACKEND", "gpu-magic")
    with pytest.raises(ConfigError, match="NEUROFABRIC_BACKEND"):
        cfg._from_environment()


def test_validation_messages_name_parameter_and_value():
    with pytest.raises(ConfigError, match=r"`tau_m` must be > 0 \(s\), got -0.01"):
        check_positive("tau_m", -0.01, "s")
    with pytest.raises(ConfigError, match=r"`p` must be a probability in \[0, 1\], got 1.5"):
        check_probability("p", 1.5)
    with pytest.raises(ShapeError, match="length 3"):
        broadcast_param("v_th", np.zeros(4), 3)
    assert broadcast_param("v_th", 2.0, 3).tolist() == [2.0, 2.0, 2.0]


def test_seeds():
    assert make_rng(3).random() == make_rng(3).random()
    g = np.random.default_rng(1)
    assert make_rng(g) is g
    assert seed_to_int(5) == 5
    with pytest.raises(ConfigError, match="seed"):
        make_rng(-1)


def test_backend_registry_never_swaps_silently():
    backends.register("unit-test", "reference", "math")
    backends.register("unit-test", "numba", "math", requires="a_module_that_is_not_there")
    assert backends.resolve("unit-test", "auto")[0] == "reference"
    with pytest.raises(BackendUnavailableError, match="pip install"):
        backends.resolve("unit-test", "numba")
    with pytest.raises(ConfigError, match="backend"):
        backends.resolve("unit-test", "cuda")


@pytest.mark.parametrize(
    "kwargs,bad,good,message",
    [
        ({"low": 0, "high": 1, "low_open": True}, 0.0, 1.0, r"`p` must lie in \(0, 1\], got 0.0"),
        ({"low": 0, "high": 1, "high_open": True}, 1.0, 0.0, r"`p` must lie in \[0, 1\), got 1.0"),
        ({"low": 1, "high": math.inf}, 0.5, 1.0, "`p` must be >= 1, got 0.5"),
        ({"low": 1, "high": math.inf, "low_open": True}, 1.0, 1.5, "`p` must be > 1, got 1.0"),
        ({"low": -math.inf, "high": 2}, 3.0, -5.0, "`p` must be <= 2, got 3.0"),
        ({"low": 0, "high": 1}, float("nan"), 0.5, "`p` must be a finite number"),
    ],
)
def test_check_interval_names_the_bound_it_broke(kwargs, bad, good, message):
    from neurofabric.core.validation import check_interval

    with pytest.raises(ConfigError, match=message):
        check_interval("p", bad, **kwargs)
    assert check_interval("p", good, **kwargs) == good


def test_kernel_digest_covers_the_files_compiled_in_from_elsewhere(tmp_path):
    """A package's cache key changes with its own compiled files and with the outside files
    it names (the shared intrinsics), not with the files it says numba never compiles."""
    from neurofabric.core.numba_cache import kernel_digest

    (tmp_path / "kernels.py").write_text("A = 1\n", encoding="utf-8")
    (tmp_path / "reference.py").write_text("B = 1\n", encoding="utf-8")
    outside = tmp_path.parent / f"{tmp_path.name}-intrinsics.py"
    outside.write_text("C = 1\n", encoding="utf-8")
    skip = frozenset({"reference.py"})
    before = kernel_digest(tmp_path, skip, also=(outside,))
    assert kernel_digest(tmp_path, skip) != before
    (tmp_path / "reference.py").write_text("B = 2\n", encoding="utf-8")
    assert kernel_digest(tmp_path, skip, also=(outside,)) == before
    outside.write_text("C = 2\n", encoding="utf-8")
    assert kernel_digest(tmp_path, skip, also=(outside,)) != before
    outside.unlink()


def _sleep():
    import time

    time.sleep(60)


def test_a_compile_helper_is_skipped_when_compiled_and_stopped_when_late():
    """``compile_ahead`` starts nothing for a kernel compiled already (or one without a disk
    cache), and ``settle`` stops a helper that runs over its time."""
    import multiprocessing

    from numba import njit

    from neurofabric.core import numba_cache

    @njit
    def add_one(x):
        return x + 1

    sig = numba_cache.argument_types(add_one, (1.0,))
    assert numba_cache.in_disk_cache(add_one, sig) is None  # no disk cache to tell
    assert numba_cache.compile_ahead(add_one, (1.0,)) is None
    add_one(1.0)
    assert numba_cache.in_disk_cache(add_one, sig) is True
    late = multiprocessing.get_context("fork").Process(target=_sleep, daemon=True)
    late.start()
    assert numba_cache.settle(late, timeout=0.2) is False
    assert not late.is_alive()
