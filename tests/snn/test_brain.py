"""The multi-scale brain: coupling delays and weights exactly, each level against the level
below it (population against mean-field, mean-field against spiking), and a region swapped
from spiking to mean-field leaving its neighbour's rate within 10 %."""

import numpy as np
import pytest

from neurofabric.core.errors import CheckpointError, ConfigError, ShapeError
from neurofabric.snn.brain import Brain, MeanFieldRegion, PopulationRegion, SpikingRegion
from neurofabric.snn.meanfield import brunel_population, stationary_rate
from neurofabric.snn.models import brunel


class Pulse:
    """A region that fires 100 Hz in its first interval only."""

    level = "test"

    def __init__(self, name):
        self.name, self.k = name, 0

    def advance(self, interval, extra):
        self.k += 1
        return 100.0 if self.k == 1 else 0.0

    def nbytes(self):
        return 0


class Recorder(Pulse):
    """A silent region that records the top-down input it gets."""

    def __init__(self, name):
        super().__init__(name)
        self.seen = []

    def advance(self, interval, extra):
        self.seen.append(extra)
        return 0.0


def test_input_arrives_after_its_delay_scaled_by_its_weight():
    p, r = Pulse("p"), Recorder("r")
    brain = Brain([p, r], [[0, 0], [0.5, 0]], delays=[[1, 1], [3, 1]], interval=1e-3)
    res = brain.run(6e-3)
    assert r.seen == [0.0, 0.0, 0.0, 50.0, 0.0, 0.0]  # interval 0's 100 Hz, 3 intervals on
    np.testing.assert_allclose(res.times, np.arange(1, 7) * 1e-3)
    assert res.rates[:, 0].tolist() == [100.0, 0, 0, 0, 0, 0]
    again = brain.run(2e-3)  # the clock and the delay line carry on
    np.testing.assert_allclose(again.times, [7e-3, 8e-3])


def test_the_coupling_is_checked():
    a, b = Recorder("a"), Recorder("b")
    with pytest.raises(ShapeError, match=r"\(2, 2\)"):
        Brain([a, b], [[0.0]])
    with pytest.raises(ConfigError, match=">= 0"):
        Brain([a, b], [[0, -1], [0, 0]])
    with pytest.raises(ConfigError, match="integers >= 1"):
        Brain([a, b], np.zeros((2, 2)), delays=np.zeros((2, 2), int))
    with pytest.raises(ConfigError, match="unique"):
        Brain([a, Recorder("a")], np.zeros((2, 2)))


def spiking(name, n, g=5.0, eta=2.0, seed=0):
    pop = brunel_population(n, g=g, eta=eta)
    net = brunel(n, g=g, eta=eta, seed=seed)
    return SpikingRegion(name, net, base_rate=pop.c_ext * pop.rate_ext, c_ext=pop.c_ext)


def test_a_population_region_fluctuates_like_n_neurons_around_the_mean_field():
    pop = brunel_population(5000)
    nu = stationary_rate(pop)
    var = {}
    for n in (200, 800):
        region = PopulationRegion("p", pop, n_neurons=n, seed=1)
        rates = Brain([region], [[0.0]], interval=2e-3).run(6.0).rates[50:, 0]
        assert rates.mean() == pytest.approx(nu, rel=0.05)
        var[n] = rates.var()
        # at least the Poisson variance of n neurons' counts (the recurrence adds to it)
        assert var[n] > nu / (n * 2e-3)
    assert var[200] / var[800] == pytest.approx(4.0, rel=0.25)  # finite-size noise ~ 1 / n
    still = Brain([MeanFieldRegion("m", pop, n_neurons=200)], [[0.0]]).run(0.2)
    np.testing.assert_allclose(still.rates, nu, rtol=1e-6)  # the noiseless limit


def test_swapping_a_region_from_spiking_to_mean_field_keeps_its_neighbour_within_10_percent():
    n = 2500
    W = [[0.0, 0.0], [0.2, 0.0]]  # A drives B: 0.2 Hz per external synapse per Hz of A
    D = [[1, 1], [2, 1]]
    results = {}
    for level in ("spiking", "mean-field"):
        a = (
            spiking("A", n, g=6.0, eta=3.0, seed=1)
            if level == "spiking"
            else MeanFieldRegion("A", brunel_population(n, g=6.0, eta=3.0), n_neurons=n)
        )
        b = spiking("B", n, seed=2)
        res = Brain([a, b], W, delays=D, interval=1e-3).run(0.6)
        results[level] = res.mean_rates(after=0.1)
    sp, mf = results["spiking"], results["mean-field"]
    assert mf["A"] == pytest.approx(sp["A"], rel=0.10)
    assert mf["B"] == pytest.approx(sp["B"], rel=0.10)
    # and the coupling matters: B alone fires slower than when A drives it
    alone = spiking("B", n, seed=2)
    base = Brain([alone], [[0.0]]).run(0.6).mean_rates(after=0.1)["B"]
    assert sp["B"] > 1.2 * base
    # B's rate as the mean field predicts from A's drive
    pop_b = brunel_population(n)
    assert stationary_rate(pop_b, extra_rate=0.2 * sp["A"]) == pytest.approx(sp["B"], rel=0.10)


def test_regions_paged_to_disk_under_a_ram_budget_give_the_same_rates(tmp_path):
    def regions():
        return [spiking(f"r{i}", 400, seed=i) for i in range(3)]

    W = np.array([[0, 0.1, 0], [0, 0, 0.1], [0.1, 0, 0]])
    ref = Brain(regions(), W, interval=2e-3).run(0.02)
    rs = regions()
    one = rs[0].nbytes()
    paged = Brain(rs, W, interval=2e-3, ram_budget=int(1.5 * one), page_dir=tmp_path)
    assert sum(r.resident for r in rs) == 1  # the others went to disk at once
    res = paged.run(0.02)
    np.testing.assert_array_equal(res.rates, ref.rates)  # exact: state, RNG streams, delays
    # with room for one region of three, every step of every region is a miss
    assert res.paging["misses"] == 3 * 10 and res.paging["hits"] == 0
    assert res.paging["bytes_read"] > 0 and res.paging["bytes_written"] > 0
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == [
        "r0",
        "r1",
        "r2",
    ]
    with pytest.raises(ConfigError, match="largest spiking region"):
        Brain(regions(), W, ram_budget=one // 2, page_dir=tmp_path)
    with pytest.raises(ConfigError, match="page_dir"):
        Brain(regions(), W, ram_budget=one)


def test_eviction_by_schedule_keeps_hits_where_lru_has_none(tmp_path):
    W = np.zeros((4, 4))
    ref = Brain([spiking(f"r{i}", 400, seed=i) for i in range(4)], W, interval=2e-3).run(0.02)
    out = {}
    for eviction in ("lru", "schedule"):
        rs = [spiking(f"r{i}", 400, seed=i) for i in range(4)]
        budget = int(2.5 * rs[0].nbytes())
        folder = tmp_path / eviction
        brain = Brain(rs, W, interval=2e-3, ram_budget=budget, page_dir=folder, eviction=eviction)
        res = brain.run(0.02)
        np.testing.assert_array_equal(res.rates, ref.rates)
        out[eviction] = res.paging
    assert out["lru"]["hits"] == 0  # a round of 4 through 2 slots: LRU always evicts the next
    assert out["schedule"]["hits"] >= 10
    with pytest.raises(ConfigError, match="eviction"):
        Brain([Recorder("a")], [[0.0]], eviction="fifo")


def test_a_brain_saved_and_loaded_continues_exactly_as_an_uninterrupted_run(tmp_path):
    def build(**kw):
        pop = brunel_population(5000)
        regions = [
            spiking("s0", 400, seed=0),
            spiking("s1", 400, seed=1),
            PopulationRegion("p", pop, n_neurons=300, seed=5),
            MeanFieldRegion("m", brunel_population(5000, g=6.0), n_neurons=10**6),
        ]
        W = np.full((4, 4), 0.05)
        np.fill_diagonal(W, 0.0)
        D = np.array([[1, 2, 3, 1], [2, 1, 1, 4], [1, 3, 1, 2], [2, 2, 2, 1]])
        return Brain(regions, W, delays=D, interval=2e-3, **kw)

    whole = build().run(0.04).rates
    first = build(ram_budget=int(1.2 * spiking("x", 400).nbytes()), page_dir=tmp_path / "pages")
    head = first.run(0.02).rates
    assert sum(r.resident for r in first.regions[:2]) == 1  # one spiking region on disk
    first.save(tmp_path / "brain")
    again = Brain.load(tmp_path / "brain")
    tail = again.run(0.02)
    np.testing.assert_array_equal(np.vstack([head, tail.rates]), whole)
    np.testing.assert_allclose(tail.times, np.arange(11, 21) * 2e-3)
    # a damaged file is refused, not half-loaded
    hist = next((tmp_path / "brain" / "brain").glob("history*"))
    hist.write_bytes(hist.read_bytes()[:-8] + b"\x00" * 8)
    with pytest.raises(CheckpointError):
        Brain.load(tmp_path / "brain")


@pytest.mark.parametrize("eviction", ["lru", "schedule"])
def test_reading_the_next_region_ahead_changes_nothing_but_the_waiting(tmp_path, eviction):
    W = np.full((4, 4), 0.05)
    ref = Brain([spiking(f"r{i}", 400, seed=i) for i in range(4)], W, interval=2e-3).run(0.02)
    rs = [spiking(f"r{i}", 400, seed=i) for i in range(4)]
    budget = int(2.5 * rs[0].nbytes())
    brain = Brain(
        rs, W, interval=2e-3, ram_budget=budget, page_dir=tmp_path, eviction=eviction, prefetch=True
    )
    res = brain.run(0.02)
    np.testing.assert_array_equal(res.rates, ref.rates)
    p = res.paging
    assert p["prefetched"] >= 30  # nearly every load happened ahead of its turn
    assert p["hits"] + p["misses"] + p["prefetched"] == 40
    assert sum(r.resident for r in rs) <= 2  # the budget held
