"""Corrupt snn checkpoints (checksums fixed to match): loading raises CheckpointError or gives
a network that runs; never a crash. Out-of-range synapse indices segfaulted before."""

import shutil
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neurofabric.core.checkpoint import load_checkpoint
from neurofabric.core.errors import CheckpointError
from neurofabric.snn import OneToOne, PoissonInput, Random, SpikingNetwork
from tests._corrupt import corrupted_copy, rewrite_array


def _net():
    net = SpikingNetwork(60, dt=1e-4, seed=3, backend="numba", max_delay=3e-3)
    net.add_input("x", PoissonInput(60, rate=2000.0))
    net.connect(OneToOne(), source="x", weight=4e-3, delay=(1e-4, 2e-3))
    net.connect(Random(in_degree=10), weight=1e-3, delay=(1e-4, 3e-3))
    net.run(0.01)
    return net


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("snn") / "net"
    _net().save(folder)
    return folder, load_checkpoint(folder).arrays


def test_out_of_range_target_index_is_refused(saved, tmp_path):
    folder, arrays = saved
    bad = tmp_path / "net"
    shutil.copytree(folder, bad)
    idx = np.array(arrays["csr.indices"])
    idx[5] = 10**9
    rewrite_array(bad, "csr.indices", idx)
    with pytest.raises(CheckpointError, match=r"csr.indices.*<= 59, got 1000000000"):
        SpikingNetwork.load(bad)


def test_out_of_range_index_does_not_reach_a_kernel_in_a_subprocess(saved, tmp_path):
    """Belt and braces: the same corruption in a child process, so that a crash (as before the
    checks) fails this test instead of killing the test run."""
    folder, arrays = saved
    bad = tmp_path / "net"
    shutil.copytree(folder, bad)
    ptr = np.array(arrays["input_csr.indptr"])
    ptr[-1] += 10**6
    rewrite_array(bad, "input_csr.indptr", ptr)
    code = (
        "import sys\nfrom neurofabric.snn import SpikingNetwork\n"
        "from neurofabric.core.errors import CheckpointError\n"
        "try:\n    SpikingNetwork.load(sys.argv[1]).run(0.01)\n"
        "except CheckpointError as e:\n    print('refused:', e)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(bad)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    assert "refused:" in proc.stdout and "input_csr.ind" in proc.stdout


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    which=st.integers(0, 10**6),
    choice=st.integers(0, 4),
    pos=st.integers(0, 10**6),
    value=st.sampled_from([-1, 0, 1, 59, 60, 61, 255, 65535, 2**31 - 1, -(2**31), 10**12]),
)
def test_corrupted_arrays_never_crash(saved, tmp_path_factory, which, choice, pos, value):
    folder, arrays = saved
    bad = corrupted_copy(
        folder, arrays, tmp_path_factory.mktemp("bad") / "net", which, choice, pos, value
    )
    try:
        net = SpikingNetwork.load(bad)
    except CheckpointError:
        return
    net.run(2e-3)  # accepted corruptions are harmless values (a weight, a potential)
