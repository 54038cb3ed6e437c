"""The torch backend (``backend="torch"``): the reference's spikes bit for bit on the CPU in
float64, checkpoints shared with the other backends, devices checked at the boundary, and on
a GPU (``gpu`` marker) the same rates. The per-feature comparisons (models, propagation paths,
plasticity, STP, homeostasis, procedural rows) are in the other test files' backend lists."""

import numpy as np
import pytest
import torch

from neurofabric.core.errors import BackendUnavailableError, ConfigError
from neurofabric.snn import OneToOne, PoissonInput, Random, SpikeMonitor, SpikingNetwork
from neurofabric.snn.models import cuba, microcircuit


def _spikes(net, duration):
    r = net.run(duration, monitors=[SpikeMonitor()])
    return r, np.stack([r.spike_times, r.spike_indices])


def test_the_microcircuit_on_torch_equals_numba():
    """Fixed-total projections, normal weights and delays, per-population DC and one Poisson
    train per neuron: the numba backend's raster (itself equal to the reference's)."""
    a, sa = _spikes(microcircuit(0.02, 0.02, seed=3, backend="torch"), 0.1)
    b, sb = _spikes(microcircuit(0.02, 0.02, seed=3, backend="numba"), 0.1)
    assert a.backend == "torch" and b.backend == "numba"
    assert a.n_spikes > 50
    np.testing.assert_array_equal(sa, sb)


def test_step_with_given_inputs_equals_the_reference():
    def make(backend):
        net = SpikingNetwork(30, seed=5, backend=backend, v_init=(-70e-3, -51e-3))
        net.add_input("x", PoissonInput(10, rate=50.0))
        net.connect(Random(p=0.3), source="x", weight=6e-3, delay=(1e-4, 1e-3))
        net.connect(Random(p=0.2), weight=2e-3, inh_weight=4e-3)
        return net.build()

    nets = {b: make(b) for b in ("torch", "reference")}
    rng = np.random.default_rng(0)
    for _ in range(40):
        given = {"x": rng.choice(10, 4, replace=False)}
        out = {}
        for b, net in nets.items():
            out[b], net.state_ = net.step(given)
        np.testing.assert_array_equal(out["torch"], out["reference"])
    np.testing.assert_array_equal(nets["torch"].state_.v, nets["reference"].state_.v)


def test_a_checkpoint_moves_between_torch_and_numba(tmp_path):
    whole, s_whole = _spikes(cuba(400, synapses_per_neuron=40, seed=2, backend="numba"), 0.1)
    part = cuba(400, synapses_per_neuron=40, seed=2, backend="torch")
    r1, s1 = _spikes(part, 0.04)
    part.save(tmp_path / "c")
    again = SpikingNetwork.load(tmp_path / "c", backend="numba")
    r2, s2 = _spikes(again, 0.06)
    assert whole.n_spikes > 100
    np.testing.assert_array_equal(np.concatenate([s1, s2], axis=1), s_whole)


def test_devices_are_checked_when_the_network_is_made_or_built():
    with pytest.raises(ConfigError, match=r"`device` 'cuda' needs backend='torch'"):
        SpikingNetwork(10, device="cuda")
    with pytest.raises(ConfigError, match=r"`device` must be 'cpu', 'cuda' or 'cuda:N', got 'gpu'"):
        SpikingNetwork(10, backend="torch", device="gpu").build()
    if not torch.cuda.is_available():
        with pytest.raises(BackendUnavailableError, match="needs a CUDA GPU.*device='cpu'"):
            SpikingNetwork(10, backend="torch", device="cuda").build()


def test_torch_threads_follow_the_network_size():
    from neurofabric.snn.kernels import torch_step

    assert torch_step.threads(1000) == 1
    assert torch_step.threads(torch_step.PARALLEL_MIN_NEURONS) >= 1
    before = torch.get_num_threads()
    net = SpikingNetwork(20, backend="torch", seed=1)
    net.add_input("x", PoissonInput(20, rate=100.0))
    net.connect(OneToOne(), source="x", weight=5e-3)
    net.run(0.01)
    assert torch.get_num_threads() == before  # restored after the run


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_a_gpu_the_rates_are_the_cpus():
    """CUDA adds a target's inputs in an unspecified order (the last bit may differ, and then
    the odd spike): the population rates agree, the spikes mostly do."""
    a, _ = _spikes(microcircuit(0.05, 0.05, seed=1, backend="torch", device="cuda"), 0.3)
    b, _ = _spikes(microcircuit(0.05, 0.05, seed=1, backend="torch"), 0.3)
    assert b.n_spikes > 1000
    assert abs(a.n_spikes - b.n_spikes) <= 0.05 * b.n_spikes


def test_the_poisson_stream_is_the_references_bit_for_bit():
    """The counter-based uniforms (exact 32-bit hashes in int64, then float64, not torch's
    default float32) and the Poisson counts drawn from them, over many draws."""
    from neurofabric.snn.kernels import reference as ref
    from neurofabric.snn.kernels import torch_step as ts

    i = np.arange(200_000, dtype=np.int64)
    for key in (0, 12345, 2**32 - 1):
        k = ref.row_key(key, 1592)
        u_ref = ref.uniform_array(k, i)
        u = ts._uniform(int(k), torch.from_numpy(i))
        assert u.dtype == torch.float64
        np.testing.assert_array_equal(u.numpy(), u_ref)
        lam = np.full(i.size, 0.168)
        elam = np.exp(-lam)
        fire = np.flatnonzero(u_ref > elam)
        counts = ts._poisson_counts(
            torch.from_numpy(lam[fire]), torch.from_numpy(elam[fire]), u[fire]
        )
        np.testing.assert_array_equal(
            counts.numpy(), ref.poisson_counts(lam[fire], elam[fire], u_ref[fire])
        )
