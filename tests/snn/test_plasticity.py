"""Plasticity against closed-form results, bounds, backend parity and exact resume."""

import math

import numpy as np
import pytest

from neurofabric.core.errors import ConfigError
from neurofabric.snn import (
    OneToOne,
    PoissonInput,
    Random,
    SpikeArrayInput,
    SpikeMonitor,
    SpikingNetwork,
    SynapseParams,
)
from neurofabric.snn.plasticity import DiehlCookSTDP, PairSTDP, TripletSTDP

DT = 1e-4
W0 = 0.5e-3


def _run_pattern(rule, pre_steps, post_steps, backend="numba"):
    """One plastic synapse; the postsynaptic neuron is forced to spike at ``post_steps`` by a
    static 20 mV input delivered one step earlier. Returns (weight change, post spike steps)."""
    net = SpikingNetwork(
        1, dt=DT, synapse=SynapseParams("delta"), seed=0, max_delay=1e-3, backend=backend
    )
    net.add_input(
        "pre", SpikeArrayInput(1, indices=[0] * len(pre_steps), times=np.array(pre_steps) * DT)
    )
    net.add_input(
        "drive",
        SpikeArrayInput(1, indices=[0] * len(post_steps), times=(np.array(post_steps) - 1) * DT),
    )
    net.connect(OneToOne(), source="pre", weight=W0, plasticity=rule)
    net.connect(OneToOne(), source="drive", weight=20e-3)
    res = net.run((max(pre_steps + post_steps) + 5) * DT, monitors=[SpikeMonitor()])
    csr = net.input_csr_
    w = float(csr.weights[csr.mask == 1][0])
    return w - float(np.float32(W0)), np.rint(res.spike_times / DT).astype(int).tolist()


RULE = PairSTDP(a_plus=1e-5, a_minus=1.2e-5, tau_plus=17e-3, tau_minus=34e-3, w_max=1e-3)


@pytest.mark.parametrize("lag", [-300, -100, -20, -1, 0, 1, 20, 100, 300])
def test_pair_window_matches_the_analytic_curve(lag):
    pre = 50 if lag >= 0 else 50 - lag
    post = pre + lag
    dw, posts = _run_pattern(RULE, [pre], [post])
    assert posts == [post]
    if lag >= 0:  # pre before (or with) post: potentiation A+ exp(-dt / tau+)
        expected = RULE.a_plus * math.exp(-lag * DT / RULE.tau_plus)
    else:
        expected = -RULE.a_minus * math.exp(lag * DT / RULE.tau_minus)
    assert dw == pytest.approx(expected, rel=1e-4)


def _triplet_expectation(rule, pre, post, nearest):
    """Closed form of the triplet rule: sums of exponentials over the spike history
    (pre-before-post for spikes in the same step), additive, no clipping."""
    t_pre = [s * DT for s in pre]
    t_post = [s * DT for s in post]

    def trace(times, t, tau, strict):
        past = [s for s in times if (s < t if strict else s <= t)]
        if not past:
            return 0.0
        if nearest:
            return math.exp(-(t - past[-1]) / tau)
        return sum(math.exp(-(t - s) / tau) for s in past)

    dw = 0.0
    for t in t_pre:  # depression: post traces before t (posts of the same step come later)
        o1 = trace(t_post, t, rule.tau_minus, strict=True)
        r2 = trace(t_pre, t, rule.tau_x, strict=True)
        dw -= o1 * (rule.a2_minus + rule.a3_minus * r2)
    for t in t_post:  # potentiation: pre traces including pres of the same step
        r1 = trace(t_pre, t, rule.tau_plus, strict=False)
        o2 = trace(t_post, t, rule.tau_y, strict=True)
        dw += r1 * (rule.a2_plus + rule.a3_plus * o2)
    return dw


TRIPLET = TripletSTDP(a2_plus=5e-6, a3_plus=6e-6, a2_minus=7e-6, a3_minus=2e-6, w_max=1e-3)


@pytest.mark.parametrize("interaction", ["all", "nearest"])
@pytest.mark.parametrize(
    "pre,post",
    [
        ([100], [150, 250]),  # pre-post-post triplet
        ([100, 200], [150]),  # pre-post-pre triplet
        ([150], [100, 200]),  # post-pre-post triplet
        ([100, 180], [130, 230]),  # quadruplet pre-post-pre-post
        ([100, 130, 400], [110, 300, 330]),
    ],
)
def test_triplet_rule_matches_closed_form(pre, post, interaction):
    rule = TripletSTDP(**{**TRIPLET.__dict__, "interaction": interaction})
    dw, posts = _run_pattern(rule, pre, post)
    assert posts == post
    expected = _triplet_expectation(rule, pre, post, nearest=interaction == "nearest")
    assert dw == pytest.approx(expected, rel=1e-4, abs=1e-12)


def test_diehl_cook_single_pair():
    rule = DiehlCookSTDP(nu_pre=1e-5, nu_post=1e-4, x_tar=0.2, mu=1.0, w_max=1e-3)
    dw, _ = _run_pattern(rule, [100], [180])
    w0 = float(np.float32(W0))
    expected = rule.nu_post * (math.exp(-80 * DT / rule.tau_pre) - rule.x_tar) * (1e-3 - w0)
    assert dw == pytest.approx(expected, rel=1e-4)
    # post first: the post spike alone gives nu_post (0 - x_tar) (w_max - w), then the pre
    # spike is depressed by the post trace
    dw, _ = _run_pattern(rule, [180], [100])
    w1 = w0 + rule.nu_post * (0.0 - rule.x_tar) * (1e-3 - w0)
    expected = (w1 - w0) - rule.nu_pre * math.exp(-80 * DT / rule.tau_post)
    assert dw == pytest.approx(expected, rel=1e-4)


def _learning_net(rule, backend="numba", seed=3):
    net = SpikingNetwork(
        50, dt=DT, seed=seed, backend=backend, v_init=(-70e-3, -56e-3), max_delay=2e-3
    )
    net.add_input("x", PoissonInput(40, rate=40.0))
    net.add_input("drive", PoissonInput(50, rate=400.0))
    net.connect(Random(p=0.5), source="x", weight=0.5e-3, weight_std=0.2e-3, plasticity=rule)
    net.connect(OneToOne(), source="drive", weight=9e-3)
    net.connect(Random(p=0.1), weight=0.2e-3, source_range=(0, 40), plasticity=rule, delay=1e-3)
    return net


RULES = [
    PairSTDP(a_plus=2e-4, a_minus=2.5e-4, w_max=1e-3),
    PairSTDP(
        a_plus=0.05,
        a_minus=0.05,
        w_max=1e-3,
        weight_dependence="multiplicative",
        interaction="nearest",
    ),
    TripletSTDP(a2_plus=1e-4, a3_plus=1e-4, a2_minus=2e-4, a3_minus=1e-5, w_max=1e-3),
    DiehlCookSTDP(nu_pre=1e-5, nu_post=1e-4, w_max=1e-3),
]


@pytest.mark.parametrize("backend", ["numba", "torch"])
@pytest.mark.parametrize("rule", RULES, ids=lambda r: type(r).__name__)
def test_backend_equals_reference_and_weights_stay_in_bounds(rule, backend):
    a = _learning_net(rule, backend)
    b = _learning_net(rule, "reference")
    ra = a.run(0.2, monitors=[SpikeMonitor()])
    rb = b.run(0.2, monitors=[SpikeMonitor()])
    assert ra.n_spikes > 100
    np.testing.assert_array_equal(ra.spike_indices, rb.spike_indices)
    for csr_a, csr_b in ((a.input_csr_, b.input_csr_), (a.csr_, b.csr_)):
        np.testing.assert_array_equal(csr_a.weights, csr_b.weights)
        w = csr_a.weights if not csr_a.mask.size else csr_a.weights[csr_a.mask == 1]
        assert np.all((w >= rule.w_min) & (w <= rule.w_max))
    initial = _learning_net(rule)
    initial.build()
    assert not np.array_equal(initial.input_csr_.weights, a.input_csr_.weights)  # it learned
    static = a.input_csr_.weights[a.input_csr_.mask == 0]
    np.testing.assert_array_equal(static, initial.input_csr_.weights[a.input_csr_.mask == 0])


def test_save_load_resume_while_learning(tmp_path):
    rule = RULES[2]
    whole = _learning_net(rule)
    rw = whole.run(0.2, monitors=[SpikeMonitor()])
    part = _learning_net(rule)
    r1 = part.run(0.08, monitors=[SpikeMonitor()])
    part.save(tmp_path / "net")
    loaded = SpikingNetwork.load(tmp_path / "net")
    r2 = loaded.run(0.12, monitors=[SpikeMonitor()])
    np.testing.assert_array_equal(
        np.concatenate([r1.spike_indices, r2.spike_indices]), rw.spike_indices
    )
    np.testing.assert_array_equal(loaded.input_csr_.weights, whole.input_csr_.weights)
    np.testing.assert_array_equal(loaded.csr_.weights, whole.csr_.weights)


def test_plasticity_errors():
    with pytest.raises(ConfigError, match="w_max"):
        PairSTDP(w_min=1.0, w_max=0.5)
    with pytest.raises(ConfigError, match="storage='csr'"):
        SpikingNetwork(10, storage="procedural").connect(
            Random(p=0.1), weight=0.5, source_range=(0, 8), plasticity=PairSTDP()
        )
    with pytest.raises(ConfigError, match="excitatory"):
        SpikingNetwork(10).connect(Random(p=0.1), weight=0.5, plasticity=PairSTDP())
    with pytest.raises(ConfigError, match="bounds"):
        SpikingNetwork(10).connect(
            Random(p=0.1), weight=2.0, source_range=(0, 8), plasticity=PairSTDP()
        )
    net = SpikingNetwork(10)
    net.connect(Random(p=0.1), weight=0.5, source_range=(0, 4), plasticity=PairSTDP())
    net.connect(Random(p=0.1), weight=0.5, source_range=(4, 8), plasticity=PairSTDP())
    with pytest.raises(ConfigError, match="one rule per source group"):
        net.build()


@pytest.mark.parametrize("name", ["visual_cortex_all_to_all_minimal", "visual_cortex_nearest_full"])
def test_triplet_presets_reproduce_the_frequency_dependence_of_pairing(name):
    """Sjostrom et al. (2001), as fitted by Pfister & Gerstner (2006, Fig. 4): at 0.1 Hz
    pre-post pairing (+10 ms) barely changes the weight while post-pre (-10 ms) depresses; at
    40 Hz both orders potentiate once the traces reach their regime (60 pairings)."""
    rule = TripletSTDP.preset(name, w_scale=W0, w_max=1.0)

    def pairing(rate, lag_ms, n):
        period = int(round(1 / rate / DT))
        pre = [200 + k * period for k in range(n)]
        post = [p + int(round(lag_ms * 1e-3 / DT)) for p in pre]
        dw, posts = _run_pattern(rule, pre, post)
        assert posts == post
        expected = _triplet_expectation(rule, pre, post, nearest=rule.interaction == "nearest")
        assert dw == pytest.approx(expected, rel=1e-3, abs=1e-12)
        return dw / (n * W0)  # relative change per pairing

    ltd = pairing(0.1, -10.0, 5)
    assert ltd < -1e-3
    assert abs(pairing(0.1, +10.0, 5)) < 0.05 * abs(ltd)
    assert pairing(40.0, +10.0, 60) > 1e-3
    assert pairing(40.0, -10.0, 60) > 1e-3


def test_triplet_preset_errors():
    with pytest.raises(ConfigError, match="unknown triplet preset"):
        TripletSTDP.preset("visual_cortex_nearest_minimal")
    rule = TripletSTDP.preset("hippocampal_all_to_all_full", w_scale=2.0)
    assert rule.a2_plus == pytest.approx(2 * 6.1e-3) and rule.tau_y == pytest.approx(27e-3)
