"""The torch chains against the numpy reference: chain by chain, the same random numbers give
the same acceptances, energies and weights (float64), on networks with one and two hidden
layers, with the L1 cost, the weight bound and the lattice; and population annealing."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from neurofabric.core.errors import ConfigError  # noqa: E402
from neurofabric.thermo import Moves, NeuralFabric  # noqa: E402
from neurofabric.thermo.chain import Chain, EnergySpec  # noqa: E402
from neurofabric.thermo.kernels import reference  # noqa: E402
from neurofabric.thermo.kernels.common import Draws, Proposal  # noqa: E402
from neurofabric.thermo.population import TorchChains, draw_generation  # noqa: E402

C, N = 4, 300


def _data(n_in, n_out, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.random((24, n_in))
    X[rng.random(X.shape) < 0.3] = 0.0  # zeros: some moves leave the energy unchanged
    X[:, 0] = 0.0  # an input that is always off: its weights' moves are neutral
    return X, rng.integers(0, n_out, 24)


@pytest.mark.parametrize(
    "sizes, activation, spec",
    [
        ((6, 5, 3), "relu", EnergySpec(lambda_l1=0.3, w_max=3.0)),
        ((6, 4, 4, 3), "tanh", EnergySpec(lambda_l0=0.5, w_max=2.0)),
        ((5, 4, 3), "sigmoid", EnergySpec(loss="squared_error", grid=0.05, w_prune=0.1)),
    ],
)
def test_torch_chains_accept_what_the_reference_accepts(sizes, activation, spec):
    fabric = NeuralFabric.layered(sizes, activation=activation, density=0.8, seed=3)
    X, y = _data(sizes[0], sizes[-1])
    cum = Moves(weight=0.7, bias=0.2, birth=0.0, death=0.0, all=0.1).cumulative()
    sigma = np.array([0.3, 0.2, 0.0, 0.0, 0.01])
    temps = np.array([0.05, 0.2, 1.0, 5.0])
    chains = TorchChains(fabric, C, spec)
    chains.set_batch(X, y, scale=2.0)
    refs, draws = [], []
    for c in range(C):
        ch = Chain(fabric, spec, reference)
        ch.set_batch(X, y, 2.0)
        d = draw_generation(np.random.default_rng(50 + c), N, cum, len(ch.esrc) + ch.n_units)
        prop = Proposal(
            cum,
            sigma,
            temps[c],
            2.0,
            spec.lambda_l0,
            spec.lambda_l1,
            spec.w_prune,
            spec.w_max,
            spec.grid,
        )
        reference.mh_generation(
            ch.net, ch.pairs, ch.edges, ch.batch, prop, d, ch.scratch, ch.energy, ch.stats
        )
        refs.append(ch)
        draws.append(d)
    m = max(len(d.all_gauss) for d in draws)
    stacked = Draws(
        *(np.stack([getattr(d, f) for d in draws]) for f in Draws._fields[:5]),
        np.stack([np.pad(d.all_gauss, (0, m - len(d.all_gauss))) for d in draws]),
    )
    stats = chains.run(N, temperature=temps, move_cum=cum, sigma=sigma, draws=stacked)
    energy = chains.energy().numpy()
    for c, ch in enumerate(refs):
        # proposed, accepted, uphill and neutral counts per move, exactly
        np.testing.assert_array_equal(stats[c][:, [0, 1, 3, 4, 5]], ch.stats[:, [0, 1, 3, 4, 5]])
        np.testing.assert_allclose(stats[c][:, 2], ch.stats[:, 2], atol=1e-8)
        assert energy[c] == pytest.approx(ch.energy[0], rel=1e-10)
        np.testing.assert_allclose(chains.w[c].numpy(), ch.ew[: ch.n_edges], atol=1e-12)
        np.testing.assert_allclose(chains.b[c].numpy(), ch.bias[sizes[0] :], atol=1e-12)
    assert stats[:, 0, 1].min() > 10 and stats[:, 4, 1].sum() > 0  # weights and all-moves taken
    if spec.lambda_l1 == 0:  # a weight of the input that is always off: dE exactly 0
        assert stats[:, 0, 5].sum() > 0
    # the cached activations equal a fresh forward pass
    logits = chains.A[chains.L].clone()
    chains.recompute()
    torch.testing.assert_close(chains.A[chains.L], logits, rtol=1e-10, atol=1e-10)


def test_birth_and_death_are_refused_with_the_fix():
    fabric = NeuralFabric.layered((4, 3, 2), seed=0)
    chains = TorchChains(fabric, 2, EnergySpec())
    chains.set_batch(*_data(4, 2))
    with pytest.raises(ConfigError, match="birth and death must have probability 0"):
        chains.run(
            5,
            temperature=1.0,
            move_cum=Moves().cumulative(),
            sigma=np.full(5, 0.1),
            rng=np.random.default_rng(0),
        )


def test_a_fabric_without_layers_is_refused():
    fabric = NeuralFabric(
        n_in=2,
        n_out=1,
        source=np.array([0, 1, 2]),
        target=np.array([2, 3, 3]),
        weight=np.array([0.1, 0.2, 0.3]),
        bias=np.zeros(4),
    )
    with pytest.raises(ConfigError, match="need a layered fabric"):
        TorchChains(fabric, 2, EnergySpec())


def test_systematic_resampling_keeps_each_chain_in_proportion_to_its_weight():
    from neurofabric.thermo.population import resample

    rng = np.random.default_rng(0)
    for _ in range(50):
        logw = rng.normal(0, 2, 16)
        keep, ess = resample(logw, rng)
        w = np.exp(logw - logw.max())
        w /= w.sum()
        counts = np.bincount(keep, minlength=16)
        assert counts.sum() == 16
        assert np.all(counts >= np.floor(16 * w) - 1e-9) and np.all(
            counts <= np.ceil(16 * w) + 1e-9
        )
        assert ess == pytest.approx(1 / (16 * (w * w).sum()))
    keep, ess = resample(np.zeros(8), rng)  # equal weights: every chain once
    assert sorted(keep.tolist()) == list(range(8)) and ess == pytest.approx(1.0)


def test_population_annealing_learns_digits():
    from sklearn.datasets import load_digits

    from neurofabric.thermo import Geometric
    from neurofabric.thermo.population import PopulationAnnealer

    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    m = PopulationAnnealer(
        hidden=(16,),
        n_chains=16,
        n_proposals=4000,
        generation=400,
        batch_size=300,
        schedule=Geometric(0.3, 0.01),
        seed=0,
    )
    m.fit(X[:1000], y[:1000])
    h = m.history_
    assert len(h) == 10 and h.rows[-1]["proposals"] == 4000
    assert h.column("energy")[-1] < 0.65 * h.column("energy")[0]
    assert m.score(X[1000:], y[1000:]) > 0.7  # chance is 0.1
    ess = h.column("ess")[1:]
    assert (ess <= 1.0).all() and (ess >= 0.5 - 1e-6).all()  # ess_min: never below half
    T = h.column("temperature")
    assert (np.diff(T) <= 0).all() and T[-1] >= 0.01
    again = PopulationAnnealer(**{k: getattr(m, k) for k in vars(m) if not k.endswith("_")})
    again.fit(X[:1000], y[:1000])  # the same seed: the same model
    np.testing.assert_array_equal(again.fabric_.weight, m.fabric_.weight)


def test_a_batch_of_the_wrong_shape_is_refused():
    from neurofabric.core.errors import ShapeError

    chains = TorchChains(NeuralFabric.layered((4, 3, 2), seed=0), 2, EnergySpec())
    X, y = _data(4, 2)
    with pytest.raises(ShapeError, match=r"`X` must be \(n_samples, 4\)"):
        chains.set_batch(X, y[:-1])
    with pytest.raises(ShapeError, match="class indices 0..1"):
        chains.set_batch(X, y + 1)


def test_a_cooling_step_is_shortened_to_keep_half_the_population():
    from neurofabric.thermo.population import _ess, cooling_step

    rng = np.random.default_rng(1)
    E = rng.normal(1000.0, 30.0, 64)
    t = cooling_step(E, 1.0, 0.5, 0.5)  # a step far too long for this spread of energies
    assert 0.5 < t < 1.0
    assert _ess(E, 1 / t - 1.0) == pytest.approx(0.5, abs=1e-6)
    assert cooling_step(E, 1.0, 0.9999, 0.5) == 0.9999  # short enough: kept
    assert cooling_step(np.full(8, 3.0), 1.0, 0.1, 0.5) == 0.1  # equal energies: any step


def test_a_population_model_saves_loads_and_refuses_the_other_class(tmp_path):
    from sklearn.datasets import load_digits

    from neurofabric.thermo import ThermoClassifier
    from neurofabric.thermo.population import PopulationAnnealer

    X, y = load_digits(return_X_y=True)
    X = X[:300] / 16.0
    m = PopulationAnnealer(hidden=(8,), n_chains=4, n_proposals=400, generation=200, seed=0)
    m.fit(X, y[:300])
    assert m.get_params()["n_chains"] == 4 and m.set_params(n_chains=8).n_chains == 8
    m.save(tmp_path / "pa")
    back = PopulationAnnealer.load(tmp_path / "pa")
    np.testing.assert_array_equal(back.predict(X), m.predict(X))
    with pytest.raises(ConfigError, match="not a ThermoClassifier"):
        ThermoClassifier.load(tmp_path / "pa")
    with pytest.raises(ConfigError, match="unknown parameter 'chains'"):
        m.set_params(chains=2)
