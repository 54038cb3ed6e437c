"""NIR interchange: explicit synapses, the round trip, analytic single-node checks, and
networks exported by snnTorch and Norse (fixtures from benchmarks/peers/nir_export.py)."""

import json
from pathlib import Path

import numpy as np
import pytest

from neurofabric.core.errors import ConfigError, ShapeError
from neurofabric.snn import (
    Explicit,
    LIFParams,
    Random,
    SpikeArrayInput,
    SpikeMonitor,
    SpikingNetwork,
    SynapseParams,
)

nir = pytest.importorskip("nir")  # the `nir` extra; installed by `make test`
from neurofabric.snn.nir import from_nir, to_nir, write  # noqa: E402

DATA = Path(__file__).parent / "data" / "nir"
FIXTURES = sorted(p.stem for p in DATA.glob("*.npz"))


def _dense(times, indices, steps, n, dt):
    out = np.zeros((steps, n), np.uint8)
    out[np.rint(times / dt).astype(int), indices] = 1
    return out


# ------------------------------------------------------------------ Explicit synapses
def test_explicit_synapses_are_placed_as_given():
    net = SpikingNetwork(4, synapse=SynapseParams("delta"), neuron=LIFParams(t_ref=0.0))
    net.add_input("x", SpikeArrayInput(3))
    topo = Explicit([2, 0, 2], [1, 3, 0], [1e-3, -2e-3, 3e-3], delay=[3e-4, 1e-4, 2e-4])
    net.connect(topo, weight=2.0, source="x", dale=False)
    net.build()
    csr = net.input_csr_
    assert csr.indptr.tolist() == [0, 1, 1, 3]
    assert csr.indices.tolist() == [3, 0, 1]  # row 2 sorted by target
    np.testing.assert_allclose(csr.synapse_weights(), [-4e-3, 6e-3, 2e-3], rtol=1e-6)
    assert csr.synapse_delays().tolist() == [1, 2, 3]


def test_explicit_network_runs_and_reloads(tmp_path):
    net = SpikingNetwork(3, synapse=SynapseParams("delta"), neuron=LIFParams(t_ref=0.0))
    net.add_input("x", SpikeArrayInput(2, indices=[0, 1, 0], times=[0.0, 1e-3, 2e-3]))
    net.connect(
        Explicit([0, 1, 1], [0, 1, 2], [20e-3, 16e-3, -3e-3], delay=[1e-4, 2e-4, 5e-4]),
        weight=1.0,
        source="x",
        dale=False,
    )
    net.connect(Explicit([0], [2], [20e-3]), weight=1.0, dale=False, delay=3e-4)
    net.save(tmp_path / "n")
    again = SpikingNetwork.load(tmp_path / "n")
    a = net.run(5e-3, monitors=[SpikeMonitor()])
    b = again.run(5e-3, monitors=[SpikeMonitor()])
    # input 0 at step 0 -> neuron 0 at step 1 -> neuron 2 three steps later
    assert np.rint(a.spike_times / 1e-4).astype(int).tolist() == [1, 4, 12, 21, 24]
    assert a.spike_indices.tolist() == [0, 2, 1, 0, 2]
    np.testing.assert_array_equal(a.spike_times, b.spike_times)
    np.testing.assert_array_equal(a.spike_indices, b.spike_indices)


@pytest.mark.parametrize(
    ("kwargs", "topo", "match"),
    [
        ({"dale": None}, Explicit([0], [0], [1e-3]), "dale=False"),
        ({"dale": False}, Explicit([0], [5], [1e-3]), "Explicit.post"),
        ({"dale": False, "delay": (1e-4, 2e-4)}, Explicit([0], [0], [1e-3]), "one value"),
        ({"dale": False}, Explicit([0], [0], [1e-3], delay=[1.0]), "max_delay"),
    ],
)
def test_explicit_errors(kwargs, topo, match):
    net = SpikingNetwork(3)
    with pytest.raises(ConfigError, match=match):
        net.connect(topo, weight=1.0, **kwargs)


def test_explicit_checks_its_arrays():
    with pytest.raises(ShapeError, match="one entry per synapse"):
        Explicit([0, 1], [0], [1.0, 1.0])
    with pytest.raises(ConfigError, match="non-negative integer"):
        Explicit([-1], [0], [1.0])
    with pytest.raises(ConfigError, match="storage='csr'"):
        SpikingNetwork(3, storage="procedural").connect(
            Explicit([0], [1], [1e-3]), weight=1.0, dale=False
        )


# ------------------------------------------------------------------ the round trip
def _network(model, seed=3):
    rng = np.random.default_rng(seed)
    steps, n_in = 300, 30
    x = (rng.random((steps, n_in)) < 0.05).astype(np.uint8)
    t_idx, i_idx = np.nonzero(x)
    w = 4e-3 if model == "delta" else 3e-3
    net = SpikingNetwork(
        80,
        neuron=LIFParams(t_ref=0.0, i_ext=0.5e-9, v_rest=-65e-3),
        synapse=SynapseParams(model, tau_e=5e-3, tau_i=5e-3),
        dt=1e-4,
        max_delay=3e-3,
        seed=seed,
    )
    net.add_input("x", SpikeArrayInput(n_in, indices=i_idx, times=t_idx * 1e-4))
    net.connect(Random(p=0.2), weight=w, source="x", delay=(1e-4, 1e-3), dale=False)
    net.connect(Random(p=0.1), weight=w / 2, inh_weight=w, delay=(2e-4, 2e-3))
    return net, x


@pytest.mark.parametrize("model", ["delta", "cuba"])
def test_round_trip_runs_identically(model, tmp_path):
    net, x = _network(model)
    ours = net.run(x.shape[0] * net.dt, monitors=[SpikeMonitor()])
    expected = _dense(ours.spike_times, ours.spike_indices, x.shape[0], net.n_neurons, net.dt)
    assert 100 < expected.sum() < expected.size // 3  # a network that does something
    path = write(tmp_path / "net.nir", net)
    back = from_nir(path, dt=net.dt)
    assert back.latency == {"neurons": 0}
    out = back.run(x)["output"]
    np.testing.assert_array_equal(out, expected)
    graph = nir.read(str(path))
    kinds = {type(v).__name__ for v in graph.nodes.values()}
    assert {"Input", "Output", "Delay", "Affine", "Linear"} <= kinds
    assert ("LIF" if model == "delta" else "CubaLIF") in kinds


def test_to_nir_refuses_what_nir_cannot_hold():
    with pytest.raises(ConfigError, match="one synaptic time constant"):
        to_nir(SpikingNetwork(5).connect(Random(p=0.5), weight=1e-3))
    delta = SynapseParams("delta")
    with pytest.raises(ConfigError, match="refractory"):
        to_nir(SpikingNetwork(5, synapse=delta).connect(Random(p=0.5), weight=1e-3))
    coba = SpikingNetwork(5, synapse=SynapseParams("coba"), neuron=LIFParams(t_ref=0.0))
    with pytest.raises(ConfigError, match="conductance"):
        to_nir(coba.connect(Random(p=0.5), weight=0.1))
    big = SpikingNetwork(50, neuron=LIFParams(t_ref=0.0), synapse=delta)
    big.connect(Random(p=0.5), weight=1e-3)
    with pytest.raises(ConfigError, match="max_dense"):
        to_nir(big, max_dense=100)


# ------------------------------------------------------------------ analytic single nodes
def _li_graph(tau, r, bias, weight):
    """Input(1) -> Affine(weight, bias) -> LI(tau, r) -> Output."""
    return nir.NIRGraph(
        nodes={
            "in": nir.Input(input_type=np.array([1])),
            "w": nir.Affine(weight=np.array([[weight]]), bias=np.array([bias])),
            "li": nir.LI(tau=np.array([tau]), r=np.array([r]), v_leak=np.array([0.0])),
            "out": nir.Output(output_type=np.array([1])),
        },
        edges=[("in", "w"), ("w", "li"), ("li", "out")],
    )


@pytest.mark.parametrize("convention", ["exact", "euler"])
def test_leaky_integrator_follows_its_ode(convention):
    tau, r, b, dt, steps = 20e-3, 2.0, 0.3, 1e-3, 60
    net = from_nir(_li_graph(tau, r, b, 0.0), dt=dt, convention=convention)
    v = net.run(np.zeros((steps, 1), np.uint8))["out"][:, 0]
    k = np.arange(1, steps + 1)
    decay = np.exp(-dt / tau) if convention == "exact" else 1.0 - dt / tau
    np.testing.assert_allclose(v, r * b * (1.0 - decay**k), rtol=1e-9)


@pytest.mark.parametrize("convention", ["exact", "euler"])
def test_a_spike_moves_the_potential_as_the_convention_says(convention):
    tau, r, w, dt, steps = 20e-3, 2.0, 0.7, 1e-3, 30
    net = from_nir(_li_graph(tau, r, 0.0, w), dt=dt, convention=convention)
    x = np.zeros((steps, 1), np.uint8)
    x[5, 0] = 1
    v = net.run(x)["out"][:, 0]
    assert np.all(v[:5] == 0.0)
    k = np.arange(steps - 5)
    if convention == "exact":  # a Dirac delta: jump r w / tau, then exp decay
        want = r * w / tau * np.exp(-dt / tau * (k + 1))
    else:  # a unit current for one step: dt/tau r w, then (1 - dt/tau) per step
        want = dt / tau * r * w * (1.0 - dt / tau) ** k
    np.testing.assert_allclose(v[5:], want, rtol=1e-6)  # float32 weights


def test_current_based_node_follows_its_ode():
    """CubaLI, exact: a Dirac spike of weight w raises I by w_in w / tau_syn, and
    tau_m dv/dt = -v + r I gives v(t) = r I0 ts/(ts - tm) (e^{-t/ts} - e^{-t/tm})."""
    ts, tm, r, w_in, w, dt = 5e-3, 20e-3, 1.5, 2.5, 0.4, 1e-4
    graph = nir.NIRGraph(
        nodes={
            "in": nir.Input(input_type=np.array([1])),
            "w": nir.Linear(weight=np.array([[w]])),
            "li": nir.CubaLI(
                tau_syn=np.array([ts]),
                tau_mem=np.array([tm]),
                r=np.array([r]),
                v_leak=np.array([0.0]),
                w_in=np.array([w_in]),
            ),
            "out": nir.Output(output_type=np.array([1])),
        },
        edges=[("in", "w"), ("w", "li"), ("li", "out")],
    )
    x = np.zeros((400, 1), np.uint8)
    x[0, 0] = 1
    v = from_nir(graph, dt=dt).run(x)["out"][:, 0]
    t = dt * np.arange(1, 401)
    i0 = w_in * w / ts
    want = r * i0 * ts / (ts - tm) * (np.exp(-t / ts) - np.exp(-t / tm))
    np.testing.assert_allclose(v, want, rtol=1e-6)


def test_delay_node_delays_by_whole_steps():
    dt = 1e-4
    graph = nir.NIRGraph(
        nodes={
            "in": nir.Input(input_type=np.array([1])),
            "w": nir.Linear(weight=np.array([[100.0]])),
            "d": nir.Delay(delay=np.array([3 * dt])),
            "lif": nir.LIF(
                tau=np.array([0.01]),
                r=np.array([1.0]),
                v_leak=np.array([0.0]),
                v_threshold=np.array([1.0]),
            ),
            "out": nir.Output(output_type=np.array([1])),
        },
        edges=[("in", "w"), ("w", "d"), ("d", "lif"), ("lif", "out")],
    )
    net = from_nir(graph, dt=dt)
    x = np.zeros((10, 1), np.uint8)
    x[2, 0] = 1
    out = net.run(x)["out"][:, 0]
    assert np.flatnonzero(out).tolist() == [5]  # r w / tau = 1e4 >> threshold, 3 steps on
    graph.nodes["d"] = nir.Delay(delay=np.array([2.5 * dt]))
    with pytest.raises(ConfigError, match="whole number of steps"):
        from_nir(graph, dt=dt)


def test_integrate_and_fire_counts_its_input():
    graph = nir.NIRGraph(
        nodes={
            "in": nir.Input(input_type=np.array([1])),
            "w": nir.Linear(weight=np.array([[0.3]])),
            "if": nir.IF(r=np.array([1.0]), v_threshold=np.array([1.0])),
            "out": nir.Output(output_type=np.array([1])),
        },
        edges=[("in", "w"), ("w", "if"), ("if", "out")],
    )
    net = from_nir(graph, dt=1e-3, convention="exact")
    out = net.run(np.ones((12, 1), np.uint8))["out"][:, 0]
    # no leak: 0.3 per spike, the fourth crosses 1.0 and resets to 0
    assert np.flatnonzero(out).tolist() == [3, 7, 11]


# ------------------------------------------------------------------ errors
def test_unsupported_nodes_are_named():
    graph = nir.NIRGraph(
        nodes={
            "in": nir.Input(input_type=np.array([4])),
            "step": nir.Threshold(threshold=np.ones(4)),
            "out": nir.Output(output_type=np.array([4])),
        },
        edges=[("in", "step"), ("step", "out")],
    )
    with pytest.raises(ConfigError, match="'step' is a Threshold"):
        from_nir(graph, dt=1e-3)


def _two_layer(second):
    return nir.NIRGraph(
        nodes={
            "in": nir.Input(input_type=np.array([2])),
            "w1": nir.Linear(weight=np.ones((2, 2))),
            "a": nir.LIF(
                tau=np.full(2, 0.01),
                r=np.ones(2),
                v_leak=np.zeros(2),
                v_threshold=np.ones(2),
            ),
            "w2": nir.Affine(weight=np.ones((2, 2)), bias=np.full(2, 0.1)),
            "b": second,
            "out": nir.Output(output_type=np.array([2])),
        },
        edges=[("in", "w1"), ("w1", "a"), ("a", "w2"), ("w2", "b"), ("b", "out")],
    )


def test_graphs_we_cannot_express_are_refused():
    cuba = nir.CubaLIF(
        tau_syn=np.full(2, 0.005),
        tau_mem=np.full(2, 0.01),
        r=np.ones(2),
        v_leak=np.zeros(2),
        v_threshold=np.ones(2),
    )
    with pytest.raises(ConfigError, match="mixes current-based"):
        from_nir(_two_layer(cuba), dt=1e-4)
    with pytest.raises(ConfigError, match="no leak"):
        from_nir(_two_layer(nir.IF(r=np.ones(2), v_threshold=np.ones(2))), dt=1e-4)
    lif = nir.LIF(tau=np.full(2, 1e-4), r=np.ones(2), v_leak=np.zeros(2), v_threshold=np.ones(2))
    with pytest.raises(ConfigError, match="dt < tau"):
        from_nir(_two_layer(lif), dt=1e-4, convention="euler")


def test_run_checks_its_inputs():
    net = from_nir(_li_graph(0.02, 1.0, 0.0, 1.0), dt=1e-3)
    with pytest.raises(ConfigError, match="spike counts"):
        net.run(np.full((5, 1), 0.5))
    with pytest.raises(ShapeError, match=r"shape \(T, 1\)"):
        net.run(np.zeros((5, 2)))
    with pytest.raises(ConfigError, match="convention"):
        from_nir(_li_graph(0.02, 1.0, 0.0, 1.0), dt=1e-3, convention="rk4")


# ------------------------------------------------------------------ snnTorch and Norse
@pytest.mark.parametrize("name", FIXTURES)
def test_networks_exported_by_snntorch_and_norse_run_the_same(name):
    """Spikes identical step for step; an LI readout's potential to the float32 weights."""
    data = np.load(DATA / f"{name}.npz")
    meta = json.loads(str(data["meta"]))
    net = from_nir(DATA / f"{name}.nir", dt=meta["dt"], convention=meta["convention"])
    keys = [k for k in data.files if ":" in k]
    out = net.run(data["x"], record=tuple(k.split(":", 1)[1] for k in keys))
    for key in keys:
        theirs, ours = data[key], out[key.split(":", 1)[1]]
        if key.startswith("v:"):
            np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6 * np.abs(theirs).max())
        else:
            assert theirs.sum() > 0.05 * theirs.size  # layers that spike
            np.testing.assert_array_equal(ours, theirs, err_msg=f"{name} {key}")


def test_fixtures_cover_both_frameworks_and_recurrence():
    assert any(n.startswith("snntorch") for n in FIXTURES)
    assert any(n.startswith("norse") for n in FIXTURES)
    assert "snntorch_recurrent" in FIXTURES


def test_a_missing_nir_package_says_how_to_install_it(monkeypatch):
    import sys

    from neurofabric.core.errors import BackendUnavailableError

    monkeypatch.setitem(sys.modules, "nir", None)  # import nir -> ImportError
    with pytest.raises(BackendUnavailableError, match=r"neurofabric\[nir\]"):
        from_nir("graph.nir", dt=1e-3)


def test_the_cli_exports_a_network_and_runs_a_graph(tmp_path):
    from typer.testing import CliRunner

    from neurofabric.cli import app

    net, x = _network("delta")
    net.save(tmp_path / "net")
    ours = net.run(x.shape[0] * net.dt, monitors=[SpikeMonitor()])
    runner = CliRunner()
    done = runner.invoke(
        app, ["snn", "nir", "export", str(tmp_path / "net"), str(tmp_path / "g.nir")]
    )
    assert done.exit_code == 0, done.output
    np.save(tmp_path / "x.npy", x)
    args = ["snn", "nir", "run", str(tmp_path / "g.nir"), "--input", str(tmp_path / "x.npy")]
    args += ["--dt", "1e-4", "--out", str(tmp_path / "o.npz"), "--json"]
    done = runner.invoke(app, args)
    assert done.exit_code == 0, done.output
    summary = json.loads(done.output.strip().splitlines()[-1])
    assert summary["spikes"] == {"output": ours.n_spikes}
    out = np.load(tmp_path / "o.npz")["output"]
    np.testing.assert_array_equal(
        out, _dense(ours.spike_times, ours.spike_indices, x.shape[0], net.n_neurons, net.dt)
    )
    bad = runner.invoke(app, [*args[:4], "--input", str(tmp_path / "none.npy"), "--dt", "1e-4"])
    assert bad.exit_code == 2 and "does not exist" in " ".join(bad.output.split())
