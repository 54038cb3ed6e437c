"""The public shell: step vs run, save/load/resume, monitors, exports, errors."""

import numpy as np
import pyarrow.parquet as pq
import pytest

from neurofabric.core.errors import CheckpointError, ConfigError, NotFittedError
from neurofabric.snn import (
    PoissonInput,
    Random,
    RateMonitor,
    SpikeMonitor,
    SpikingNetwork,
    StateMonitor,
)
from neurofabric.snn.models import brunel, build_model, cuba


def _driven(seed=5, storage="csr"):
    net = SpikingNetwork(300, seed=seed, storage=storage, v_init=(-70e-3, -56e-3), max_delay=3e-3)
    net.add_input("drive", PoissonInput(100, rate=300.0))
    net.connect(Random(p=0.1), weight=0.5e-3, inh_weight=2e-3, delay=(1e-4, 3e-3))
    return net.connect(Random(p=0.2), source="drive", weight=1.5e-3)


def test_step_loop_equals_run_and_never_mutates_its_input():
    a, b = _driven(), _driven()
    res = a.run(0.01, monitors=[SpikeMonitor()])
    b.build()
    state = b.state_
    v0 = state.v.copy()
    spikes = []
    for _ in range(100):
        out, new = b.step(None, state)
        assert new is not state
        spikes.append(out)
        state = new
    np.testing.assert_array_equal(b.state_.v, v0)  # the original state is untouched
    assert sum(len(s) for s in spikes) == res.n_spikes > 0
    np.testing.assert_array_equal(np.concatenate(spikes), res.spike_indices)
    np.testing.assert_array_equal(state.v, a.state_.v)


@pytest.mark.parametrize("storage", ["csr", "procedural"])
def test_save_load_resume_equals_uninterrupted(tmp_path, storage):
    whole = _driven(storage=storage).run(0.2, monitors=[SpikeMonitor()])
    first = _driven(storage=storage)
    r1 = first.run(0.08, monitors=[SpikeMonitor()])
    first.save(tmp_path / "net")
    resumed = SpikingNetwork.load(tmp_path / "net")
    r2 = resumed.run(0.12, monitors=[SpikeMonitor()])
    assert r2.t_start == pytest.approx(0.08)
    np.testing.assert_array_equal(
        np.concatenate([r1.spike_indices, r2.spike_indices]), whole.spike_indices
    )
    np.testing.assert_allclose(
        np.concatenate([r1.spike_times, r2.spike_times]), whole.spike_times, rtol=0, atol=1e-12
    )
    np.testing.assert_array_equal(resumed.state_.v, _run_to(0.2, storage).state_.v)


def _run_to(t, storage):
    net = _driven(storage=storage)
    net.run(t)
    return net


def test_load_with_other_backend_gives_same_spikes(tmp_path):
    net = cuba(500, seed=2)
    net.run(0.05)
    net.save(tmp_path / "c")
    a = SpikingNetwork.load(tmp_path / "c", backend="numba").run(0.05, monitors=[SpikeMonitor()])
    b = SpikingNetwork.load(tmp_path / "c", backend="reference").run(
        0.05, monitors=[SpikeMonitor()]
    )
    np.testing.assert_array_equal(a.spike_indices, b.spike_indices)


def test_corrupt_checkpoint_raises_and_leaves_files(tmp_path):
    net = cuba(200, seed=1)
    net.build()
    path = net.save(tmp_path / "c")
    victim = path / "state.v.arrow"
    blob = bytearray(victim.read_bytes())
    blob[-50] ^= 0x55
    victim.write_bytes(bytes(blob))
    listing = sorted(p.name for p in path.iterdir())
    with pytest.raises(CheckpointError):
        SpikingNetwork.load(path)
    assert sorted(p.name for p in path.iterdir()) == listing
    assert victim.read_bytes() == bytes(blob)
    from neurofabric.core.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "other", engine="guard.Classifier", params={}, arrays={})
    with pytest.raises(CheckpointError, match="snn.SpikingNetwork"):
        SpikingNetwork.load(tmp_path / "other")


def test_monitors_and_exports(tmp_path):
    net = cuba(1000, seed=1)
    res = net.run(
        0.2,
        monitors=[
            SpikeMonitor(neurons=range(100)),
            StateMonitor(neurons=[1, 2], variables=("v", "gi"), every=10),
            RateMonitor(bin_steps=100),
        ],
    )
    assert res.spike_indices.max() < 100
    assert res.state["v"].shape == (200, 2) and "ge" not in res.state
    assert res.rate_hz.shape == (20,)
    assert np.sum(res.rate_hz) * 100 * 1e-4 * 1000 == pytest.approx(res.n_spikes)
    res.export_spikes(tmp_path / "s.parquet")
    table = pq.read_table(tmp_path / "s.parquet")
    np.testing.assert_array_equal(table["neuron"].to_numpy(), res.spike_indices)
    res.export_spikes(tmp_path / "s.arrow")
    with pytest.raises(ConfigError, match="parquet"):
        res.export_spikes(tmp_path / "s.txt")


def test_spike_buffer_drains_when_full():
    # 4000 neurons at ~6 Hz for 1 s give ~23k spikes; buffers start at 65k so force refills
    net = cuba(4000, seed=1)
    net.build()
    res_small = net.run(3.0, monitors=[SpikeMonitor()])
    assert len(res_small.spike_indices) == res_small.n_spikes > 65536


def test_errors_before_any_work():
    with pytest.raises(ConfigError, match="max_delay"):
        SpikingNetwork(10, max_delay=2e-3).connect(Random(p=0.1), weight=1e-3, delay=5e-3)
    with pytest.raises(ConfigError, match="delay"):
        SpikingNetwork(10).connect(Random(p=0.1), weight=1e-3, delay=1e-5)
    with pytest.raises(ConfigError, match="unknown model"):
        build_model("hodgkin")
    with pytest.raises(NotFittedError):
        _ = SpikingNetwork(10).n_synapses
    with pytest.raises(ConfigError, match="duration"):
        SpikingNetwork(10).run(-1.0)
    with pytest.raises(ConfigError, match="StateMonitor"):
        SpikingNetwork(10).run(0.01, monitors=[StateMonitor(neurons=[11])])


def test_models_rates():
    assert 4.0 <= cuba(4000, seed=0).run(1.0).mean_rate_hz <= 8.0
    from neurofabric.snn.models import coba

    assert 15.0 <= coba(4000, seed=0).run(1.0).mean_rate_hz <= 25.0
    res = brunel(2500, seed=0).run(0.3)
    assert 1.0 < res.mean_rate_hz < 100.0


def _small_driven(backend):
    net = SpikingNetwork(
        60, seed=4, backend=backend, v_init=(-70e-3, -56e-3), max_delay=2e-3, dt=1e-4
    )
    net.add_input("drive", PoissonInput(20, rate=400.0))
    net.connect(Random(p=0.1), weight=0.5e-3, inh_weight=2e-3, delay=(1e-4, 2e-3))
    return net.connect(Random(p=0.3), source="drive", weight=2e-3)


@pytest.mark.parametrize("backend", ["numba", "reference"])
@pytest.mark.parametrize("stop_at", [2000, 4000])
def test_run_stops_after_the_chunk_whose_callback_returns_true(backend, stop_at):
    monitors = [
        SpikeMonitor(),
        StateMonitor(neurons=[0, 7], variables=("v", "ge"), every=7),
        RateMonitor(bin_steps=100),
    ]
    seen = []

    def stop(p):
        seen.append(p.done)
        return p.done >= stop_at

    net = _small_driven(backend)
    res = net.run(0.6, monitors=monitors, callback=stop)  # 6,000 steps in chunks of 2,000
    assert res.stopped and seen == list(range(2000, stop_at + 1, 2000))
    assert net.state_.t == stop_at and res.duration == pytest.approx(stop_at * 1e-4)
    short_net = _small_driven(backend)
    short = short_net.run(stop_at * 1e-4, monitors=monitors)
    assert not short.stopped and res.n_spikes == short.n_spikes > 50
    for name in ("spike_indices", "spike_times", "state_times", "rate_times", "rate_hz"):
        np.testing.assert_array_equal(getattr(res, name), getattr(short, name), err_msg=name)
    assert res.state["v"].shape == (len(range(0, stop_at, 7)), 2)
    for var in ("v", "ge"):
        np.testing.assert_array_equal(res.state[var], short.state[var])
    np.testing.assert_array_equal(net.state_.v, short_net.state_.v)
    # the stopped network goes on from where it stopped, as an unstopped one would
    rest = net.run(0.6 - stop_at * 1e-4, monitors=[SpikeMonitor()])
    np.testing.assert_array_equal(
        rest.spike_times, short_net.run(0.6 - stop_at * 1e-4, monitors=[SpikeMonitor()]).spike_times
    )


def test_run_callback_must_be_callable():
    with pytest.raises(ConfigError, match="callback"):
        SpikingNetwork(10).run(0.01, callback="print")


@pytest.mark.parametrize(
    "make, match",
    [
        (
            lambda: SpikingNetwork(10).connect(Random(p=0.1), weight=1e-3, target_range=(5, 11)),
            r"`target_range` must be a \(start, stop\) pair .* stop <= 10, got \(5, 11\)",
        ),
        (
            lambda: SpikingNetwork(10).connect(Random(p=0.1), weight=1e-3, source_range=(3, 3)),
            "source_range",
        ),
        (lambda: SpikingNetwork(10, homeostasis="adaptive"), "`homeostasis` must be Adaptive"),
        (
            lambda: SpikingNetwork(10).connect(Random(p=0.1), weight=1e-3, stp=0.5),
            "`stp` must be a ShortTermPlasticity",
        ),
        (
            lambda: SpikingNetwork(10).connect(Random(p=0.1), weight=1e-3, plasticity="stdp"),
            "`plasticity` must be a rule",
        ),
        (lambda: SpikingNetwork(10).add_input(3, PoissonInput(2)), "`name` must be a non-empty"),
        (
            lambda: SpikingNetwork(10).run(0.01, monitors=[SpikeMonitor(neurons=[0, 10])]),
            r"`SpikeMonitor.neurons` must be indices in \[0, 10\), got values in \[0, 10\]",
        ),
        (
            lambda: SpikingNetwork(10).run(0.01, monitors=[StateMonitor(neurons=[])]),
            "`StateMonitor.neurons` must be a non-empty",
        ),
        (
            lambda: SpikingNetwork(10).run(0.01, monitors=[StateMonitor(variables=("u",))]),
            "`StateMonitor.variables` must be one of",
        ),
        (lambda: SpikingNetwork(4).step({"x": [0]}), "`inputs` must be one of"),
    ],
)
def test_parameter_errors_name_the_parameter_and_the_constraint(make, match):
    with pytest.raises(ConfigError, match=match):
        make()


def test_step_input_indices_are_checked():
    net = SpikingNetwork(4)
    net.add_input("x", PoissonInput(3))
    with pytest.raises(ConfigError, match=r"`inputs\['x'\]` must be indices in \[0, 3\)"):
        net.step({"x": [3]})


def test_backends_are_resolved_by_the_registry_and_a_typo_raises():
    from neurofabric.core import backend as backends
    from neurofabric.snn.diehl_cook import DiehlCookClassifier

    assert {"numba", "reference"} <= set(backends.available("snn"))
    net = SpikingNetwork(10, seed=0)
    assert net.backend == "auto" and net.build().backend_ == "numba"  # the fastest
    assert net.run(1e-3).backend == "numba"
    with pytest.raises(ConfigError, match=r"`backend` must be one of .*'reference'.*got 'numab'"):
        SpikingNetwork(10, backend="numab").build()
    with pytest.raises(ConfigError, match="got 'cuda'"):
        DiehlCookClassifier(n_neurons=2, backend="cuda").fit(np.ones((1, 4)), np.zeros(1, int))
    clf = DiehlCookClassifier(n_neurons=2, backend="reference", t_present=0.01, t_rest=0.0)
    assert clf.fit(np.ones((1, 4)), np.zeros(1, int), label_images=0).backend_ == "reference"


def test_a_rule_and_stp_shared_by_two_projections_survive_save_and_load(tmp_path):
    # one rule (and one STP) object for two projections of a group: loading made one object
    # per projection, which the network refused (CheckpointError); it shares them again
    from neurofabric.snn import LIFParams, OneToOne
    from neurofabric.snn.plasticity import TripletSTDP
    from neurofabric.snn.stp import ShortTermPlasticity

    def make():
        net = SpikingNetwork(
            40, seed=2, v_init=(-70e-3, -56e-3), max_delay=2e-3, neuron=LIFParams(i_ext=1.4e-9)
        )
        net.add_input("a", PoissonInput(40, rate=300.0))
        net.add_input("b", PoissonInput(10, rate=200.0))
        rule = TripletSTDP(a2_plus=1e-4, a3_plus=1e-4, a2_minus=2e-4, a3_minus=1e-5, w_max=1e-2)
        stp = ShortTermPlasticity(U=0.4, tau_rec=0.02)
        net.connect(OneToOne(), source="a", weight=9e-3, plasticity=rule, stp=stp)
        return net.connect(Random(p=0.3), source="b", weight=2e-3, plasticity=rule, stp=stp)

    whole = make()
    r_whole = whole.run(0.1, monitors=[SpikeMonitor()])
    first = make()
    first.run(0.05)
    first.save(tmp_path / "net")
    back = SpikingNetwork.load(tmp_path / "net")
    assert back.projections[0].plasticity is back.projections[1].plasticity
    rest = back.run(0.05, monitors=[SpikeMonitor()])
    assert r_whole.n_spikes > 20
    np.testing.assert_array_equal(
        rest.spike_times, r_whole.spike_times[r_whole.spike_times >= 0.05 - 1e-9]
    )
    np.testing.assert_array_equal(back.input_csr_.weights, whole.input_csr_.weights)


def test_vogels_abbott_delay():
    """``delay`` sets every recurrent synapse's delay (in steps) and the ring buffer to hold it;
    the default stays Brian2's one step, and a non-positive delay is refused by name."""
    from neurofabric.snn.models import coba

    one = cuba(300, seed=3).build()
    assert one.max_delay_steps == 1 and set(np.unique(one.csr_.synapse_delays())) == {1}
    for model in (cuba, coba):
        net = model(300, seed=3, delay=1.5e-3).build()
        assert net.max_delay_steps == 15
        assert set(np.unique(net.csr_.synapse_delays())) == {15}
        # the same synapses, later: only the delays differ
        np.testing.assert_array_equal(net.csr_.indices, model(300, seed=3).build().csr_.indices)
    with pytest.raises(ConfigError, match="delay"):
        cuba(100, delay=0.0)
