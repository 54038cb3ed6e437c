"""Compiling the step loop ahead: the probe's arguments type like the run's, and a first run
with an empty kernel cache loads the step loop a helper process compiled."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from numba.core.typing.typeof import Purpose, typeof

from neurofabric.core import backend as backends
from neurofabric.core.config import config_context
from neurofabric.snn import (
    Explicit,
    FixedTotalNumber,
    LIFParams,
    PoissonInput,
    Random,
    SpikeArrayInput,
    SpikingNetwork,
    SynapseParams,
)
from neurofabric.snn.connectivity import Normal
from neurofabric.snn.homeostasis import AdaptiveThreshold
from neurofabric.snn.kernels import numba_cpu
from neurofabric.snn.plasticity import TripletSTDP
from neurofabric.snn.stp import ShortTermPlasticity


def _cuba():
    net = SpikingNetwork(200, seed=1, v_init=(-70e-3, -52e-3))
    return net.connect(Random(p=0.1), weight=0.5e-3, inh_weight=2e-3)


def _coba_plastic_float32():
    net = SpikingNetwork(
        120, seed=2, synapse=SynapseParams(model="coba"), dtype="float32", max_delay=3e-3
    )
    net.add_input("drive", PoissonInput(50, rate=200.0))
    rule = TripletSTDP(a2_plus=1e-4, a3_plus=1e-4, a2_minus=2e-4, a3_minus=1e-5, w_max=0.05)
    net.connect(Random(p=0.2), source="drive", weight=0.02, plasticity=rule)
    return net.connect(Random(p=0.1), weight=0.01, delay=(1e-4, 2e-3))


def _inputs_stp_homeostasis():
    net = SpikingNetwork(
        100, seed=3, homeostasis=AdaptiveThreshold(), neuron=LIFParams(i_ext=1.2e-9)
    )
    net.add_input("x", SpikeArrayInput(4, indices=[0, 1, 2, 3], times=[1e-3, 2e-3, 3e-3, 4e-3]))
    net.connect(Random(p=0.5), source="x", weight=2e-3, stp=ShortTermPlasticity(U=0.3))
    return net.connect(FixedTotalNumber(500), weight=0.4e-3, delay=Normal(1.5e-3, 0.5e-3))


def _procedural_event():
    net = SpikingNetwork(300, seed=4, storage="procedural", propagation="event")
    net.add_input("drive", PoissonInput(20, rate=300.0))
    net.connect(Random(p=0.2), source="drive", weight=1e-3)
    return net.connect(Random(p=0.05), weight=0.5e-3)


def _explicit_long_delays():
    # delays above 255 steps: the CSR stores them as uint16
    net = SpikingNetwork(50, seed=5, max_delay=40e-3)
    pre, post = np.arange(49), np.arange(1, 50)
    synapses = Explicit(pre, post, np.full(49, 1e-3), delay=np.full(49, 30e-3))
    return net.connect(synapses, weight=1.0, dale=False)


NETWORKS = {
    "cuba": _cuba,
    "coba_plastic_float32": _coba_plastic_float32,
    "inputs_stp_homeostasis": _inputs_stp_homeostasis,
    "procedural_event": _procedural_event,
    "explicit_long_delays": _explicit_long_delays,
}


def _types(args):
    return [typeof(a, Purpose.argument) for a in args]


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_the_probe_types_the_kernel_arguments_as_the_run_does(name, monkeypatch):
    """What the helper compiles for is what ``run`` calls: the same kernel (model, threads,
    features) and the same argument types, for networks of every feature; so the helper's
    work is used, never thrown away."""
    net = NETWORKS[name]()
    probe = net._probe_run_args(*backends.resolve("snn", "numba"))
    calls = []
    original = numba_cpu.simulate

    def spy(*args):
        calls.append(args)
        return original(*args)

    monkeypatch.setattr(numba_cpu, "simulate", spy)
    with config_context(compile_ahead=False):
        net.run(5e-3)
    assert calls
    real = calls[0]
    assert numba_cpu._key(probe[2], probe[6]) == numba_cpu._key(real[2], real[6])
    assert _types(probe) == _types(real)
    assert net.n_synapses > 0  # the probe made none, and left the network's own alone


def test_a_dry_build_generates_no_synapse_and_keeps_the_layout():
    net = _coba_plastic_float32()
    probe = net._probe_run_args(*backends.resolve("snn", "numba"))
    rec, ext = probe[2].rec, probe[2].ext
    assert rec.indptr.size == net.n_neurons + 1 and rec.indptr[-1] == 0
    assert ext.indptr.size == 51 and ext.indptr[-1] == 0
    assert not hasattr(net, "csr_")  # the network itself is not built


def test_a_threaded_step_loop_is_not_probed(monkeypatch):
    """Numba caches no threaded step loop on disk: a network that will run on threads gets no
    helper, and no probe is built for it (its ring buffers could be large)."""
    net = _cuba()

    def no_probe(*_):
        raise AssertionError("the probe was built")

    monkeypatch.setattr(numba_cpu, "threads", lambda n: 2)
    monkeypatch.setattr(net, "_probe_run_args", no_probe)
    with config_context(compile_ahead=True):
        assert net.compile_ahead() is False


_FIRST_RUN = textwrap.dedent(
    """
    import json, logging, sys
    from neurofabric.snn import Random, SpikingNetwork
    from neurofabric.snn.kernels import numba_cpu

    net = SpikingNetwork(100, seed=7, v_init=(-70e-3, -52e-3))
    net.connect(Random(p=0.1), weight=0.5e-3, inh_weight=2e-3)
    started = net.compile_ahead()
    result = net.run(0.02)
    key = numba_cpu._key(net._kernel_net, net._counters(1))
    stats = numba_cpu.kernel(*key).stats
    json.dump(
        {
            "started": started,
            "hits": sum(stats.cache_hits.values()),
            "misses": sum(stats.cache_misses.values()),
            "spikes": result.n_spikes,
        },
        sys.stdout,
    )
    """
)


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or len(os.sched_getaffinity(0)) < 2,
    reason="compiling ahead forks a helper on Linux with two or more cores",
)
def test_a_first_run_loads_the_step_loop_the_helper_compiled(tmp_path):
    """A fresh process with an empty kernel cache: the helper compiles the step loop while
    the network builds, and the run loads it from the cache (a hit; a compile of its own
    would count a miss)."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"), NEUROFABRIC_COMPILE_AHEAD="1")
    out = subprocess.run(
        [sys.executable, "-c", _FIRST_RUN],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    first = json.loads(out.stdout)
    assert first["started"] is True
    assert (first["hits"], first["misses"]) == (1, 0)
    assert first["spikes"] > 0
