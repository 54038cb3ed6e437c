"""A multi-scale brain: regions simulated at three levels of detail, coupled on one clock.

- :class:`SpikingRegion`: a :class:`~neurofabric.snn.network.SpikingNetwork` neuron by neuron;
  its rate over each coupling interval is its spike count / (neurons x interval).
- :class:`PopulationRegion`: the rate model of :mod:`neurofabric.snn.meanfield` with the
  finite-size noise of ``n_neurons`` independent neurons: over each interval the population
  emits ``Poisson(n_neurons x rate x interval)`` spikes, and that count, not the smooth rate, is
  what it reports and feeds back into its own recurrence. Between the spiking and the
  mean-field level: a few floats of state, the fluctuations of a real population.
- :class:`MeanFieldRegion`: the same rate model without noise (the limit of infinitely many
  neurons).

**Coupling.** ``weights[i, j]`` is the extra Poisson rate (Hz) that each external synapse of
region ``i`` receives per Hz of region ``j``'s rate, ``delays[i, j]`` the delay in coupling
intervals (>= 1). Bottom-up, every region reports its rate each interval; top-down, region
``i`` gets ``extra_i(t) = sum_j weights[i, j] rate_j(t - delays[i, j] interval)``: a spiking
region as a higher rate of its external Poisson input (``c_ext`` synapses per neuron), a rate
region through the same synapses in its input moments (:meth:`LIFPopulation.moments`), so the
two levels see the same input. The interval must not exceed the shortest inter-region delay,
which is why delays are counted in intervals.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neurofabric.core.errors import ConfigError, ShapeError
from neurofabric.core.progress import ProgressCallback, ProgressReporter
from neurofabric.core.rng import make_rng
from neurofabric.core.validation import check_choice, check_int, check_positive
from neurofabric.snn.meanfield import LIFPopulation, RateModel

log = logging.getLogger(__name__)

__all__ = [
    "Brain",
    "BrainResult",
    "MeanFieldRegion",
    "PopulationRegion",
    "SpikingRegion",
    "WongWangRegion",
]


class SpikingRegion:
    """A spiking network as a region. ``drive`` names its external Poisson input (one source
    per neuron at ``base_rate`` Hz, e.g. ``C_E x nu_ext`` in Brunel's model); top-down input of
    ``extra`` Hz per synapse raises each source to ``base_rate + c_ext x extra``."""

    level = "spiking"

    def __init__(
        self, name: str, network: Any, *, drive: str = "poisson", base_rate: float, c_ext: int
    ) -> None:
        self.name, self.net, self.drive = name, network, drive
        self.base_rate = check_positive("base_rate", base_rate, "Hz")
        self.c_ext = check_int("c_ext", c_ext, min_value=1)
        self.n_neurons = int(network.n_neurons)
        self._extra = 0.0

        self._nbytes: int | None = None
        self.file: Path | None = None  # where it lies while paged out

    @property
    def resident(self) -> bool:
        return self.net is not None

    def advance(self, interval: float, extra: float) -> float:
        if self.net is None:
            raise ConfigError(f"region {self.name!r} is paged out; page_in() it first")
        if extra != self._extra:
            self.net.set_input_rates(self.drive, self.base_rate + self.c_ext * max(extra, 0.0))
            self._extra = extra
        res = self.net.run(interval)
        return res.n_spikes / (self.n_neurons * interval)

    def nbytes(self) -> int:
        """Synapses (as the network reports them) and the neuron state (float64 potentials,
        refractory counters, one delay ring of input per neuron and delay step)."""
        if self._nbytes is None:
            n, d = self.n_neurons, int(self.net.max_delay_steps) + 1
            self._nbytes = int(self.net.synapse_memory_bytes()) + n * (8 + 4) + n * d * 8
        return self._nbytes

    def state(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "name": self.name,
            "drive": self.drive,
            "base_rate": self.base_rate,
            "c_ext": self.c_ext,
            "extra": self._extra,
        }

    def page_out(self, folder: Path) -> int:
        """Save the whole network (structure, synapses, state: an exact resume point; atomic
        and checksummed, :mod:`neurofabric.core.checkpoint`) and drop it; bytes written."""
        self.nbytes()
        self.file = self.net.save(Path(folder) / self.name)
        self.net = None
        return _folder_bytes(self.file)

    def page_in(self) -> int:
        """Load the network back (checksums verified); bytes read."""
        from neurofabric.snn.network import SpikingNetwork

        self.net = SpikingNetwork.load(self.file)
        return _folder_bytes(self.file)


def _folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


class MeanFieldRegion:
    """A LIF population as its Siegert rate model (no noise). ``n_neurons`` only counts."""

    level = "mean-field"

    def __init__(
        self,
        name: str,
        pop: LIFPopulation,
        *,
        n_neurons: int,
        tau_r: float = 0.01,
        dt: float = 5e-4,
        rate: float | None = None,
    ) -> None:
        self.name, self.pop = name, pop
        self.n_neurons = check_int("n_neurons", n_neurons, min_value=1)
        self.model = RateModel(pop, tau_r=tau_r, rate=rate)
        self.dt = check_positive("dt", dt, "seconds")

    def state(self) -> dict[str, Any]:
        """What :meth:`Brain.save` keeps of it (JSON)."""
        return {
            "level": self.level,
            "name": self.name,
            "pop": asdict(self.pop),
            "n_neurons": self.n_neurons,
            "tau_r": self.model.tau_r,
            "dt": self.dt,
            "rate": self.model.rate,
        }

    def _steps(self, interval: float) -> int:
        return max(1, int(round(interval / self.dt)))

    def advance(self, interval: float, extra: float) -> float:
        n = self._steps(interval)
        rates = [self.model.step(interval / n, extra) for _ in range(n)]
        return float(np.mean(rates))

    def nbytes(self) -> int:
        return 8 * 2  # the rate and the time constant


class PopulationRegion(MeanFieldRegion):
    """The rate model with the Poisson noise of ``n_neurons`` neurons (see the module)."""

    level = "population"

    def __init__(self, name: str, pop: LIFPopulation, *, n_neurons: int, seed: Any = 0, **kw: Any):
        super().__init__(name, pop, n_neurons=n_neurons, **kw)
        self.rng = make_rng(seed)

    def state(self) -> dict[str, Any]:
        return super().state() | {"rng": self.rng.bit_generator.state}

    def advance(self, interval: float, extra: float) -> float:
        mean = super().advance(interval, extra)
        count = self.rng.poisson(mean * self.n_neurons * interval)
        rate = count / (self.n_neurons * interval)
        self.model.rate = rate  # the realized rate drives the recurrence
        return float(rate)


class WongWangRegion:
    """The reduced Wong-Wang neural mass (Wong & Wang 2006; Deco et al. 2013; The Virtual
    Brain's ``ReducedWongWang``), for regions where one synaptic gating variable is enough:

        x = w J_N S + I_o + gain * extra                          (nA)
        H(x) = (a x - b) / (1 - exp(-d (a x - b)))                (Hz, the region's rate)
        dS/dt = -S / tau_s + (1 - S) gamma H(x) + sigma xi(t)

    in seconds and Hz (a = 270 /nC, b = 108 Hz, d = 0.154 s, gamma = 0.641, tau_s = 0.1 s,
    w = 0.9, J_N = 0.2609 nA, I_o = 0.3 nA: Deco et al. 2013). The brain's coupling arrives
    as ``extra``, the weighted sum of source rates (Hz); ``gain`` turns it into current. Its
    default, ``J_N gamma tau_s`` nA per Hz, is the small-rate slope of S against H, so a
    weight plays the part of G C_ij in Deco's coupling ``G J_N sum_j C_ij S_j``. Euler-Maruyama
    steps of ``dt``; ``sigma`` > 0 adds the noise (seeded). It reports the mean of H over each
    coupling interval; ``n_neurons`` only counts."""

    level = "wong-wang"

    def __init__(
        self,
        name: str,
        *,
        n_neurons: int,
        a: float = 270.0,
        b: float = 108.0,
        d: float = 0.154,
        gamma: float = 0.641,
        tau_s: float = 0.1,
        w: float = 0.9,
        J_N: float = 0.2609,  # noqa: N803 (the model's name)
        I_o: float = 0.3,  # noqa: N803
        gain: float | None = None,
        sigma: float = 0.0,
        dt: float = 5e-4,
        S: float = 0.1,  # noqa: N803
        seed: Any = 0,
    ) -> None:
        self.name = name
        self.n_neurons = check_int("n_neurons", n_neurons, min_value=1)
        for key, value in (("a", a), ("d", d), ("gamma", gamma), ("tau_s", tau_s), ("dt", dt)):
            check_positive(key, value)
        for key, value in (("w", w), ("J_N", J_N), ("sigma", sigma)):
            if not (np.isfinite(value) and value >= 0):
                raise ConfigError(f"`{key}` must be finite and >= 0, got {value!r}")
        if not 0.0 <= S <= 1.0:
            raise ConfigError(f"`S` (the gating variable) must be in [0, 1], got {S!r}")
        self.params = {
            "a": float(a),
            "b": float(b),
            "d": float(d),
            "gamma": float(gamma),
            "tau_s": float(tau_s),
            "w": float(w),
            "J_N": float(J_N),
            "I_o": float(I_o),
        }
        self.gain = float(J_N * gamma * tau_s if gain is None else gain)
        self.sigma, self.dt, self.S = float(sigma), float(dt), float(S)
        self.rng = make_rng(seed)
        self.rate = float(self.H(self.current(self.S, 0.0)))

    def current(self, S: float, extra: float) -> float:  # noqa: N803
        p = self.params
        return p["w"] * p["J_N"] * S + p["I_o"] + self.gain * extra

    def H(self, x: Any) -> Any:  # noqa: N802 (the model's name)
        """The transfer function (Hz); at a x = b its limit 1 / d."""
        p = self.params
        u = np.asarray(p["a"] * x - p["b"], dtype=np.float64)
        small = np.abs(u) < 1e-9
        safe = np.where(small, 1.0, u)
        out = np.where(small, 1.0 / p["d"], safe / -np.expm1(-p["d"] * safe))
        return out if out.ndim else float(out)

    def state(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "name": self.name,
            "n_neurons": self.n_neurons,
            **self.params,
            "gain": self.gain,
            "sigma": self.sigma,
            "dt": self.dt,
            "S": self.S,
            "rng": self.rng.bit_generator.state,
        }

    def advance(self, interval: float, extra: float) -> float:
        p = self.params
        n = max(1, int(round(interval / self.dt)))
        h = interval / n
        S, total = self.S, 0.0
        noise = self.rng.standard_normal(n) * (self.sigma * np.sqrt(h)) if self.sigma else None
        a, b, d = p["a"], p["b"], p["d"]
        for k in range(n):
            u = a * self.current(S, extra) - b  # H(x), scalar (see H)
            rate = u / -math.expm1(-d * u) if abs(u) >= 1e-9 else 1.0 / d
            total += rate
            S += h * (-S / p["tau_s"] + (1.0 - S) * p["gamma"] * rate)
            if noise is not None:
                S += noise[k]
            S = min(1.0, max(0.0, S))
        self.S = S
        self.rate = total / n
        return self.rate

    def nbytes(self) -> int:
        return 8 * 2  # S and the rate


@dataclass
class BrainResult:
    """``rates[k, i]``: region ``i``'s rate (Hz) over interval ``k`` ending at ``times[k]``."""

    names: list[str]
    levels: list[str]
    times: np.ndarray
    rates: np.ndarray
    stopped: bool = False
    #: spiking regions paged under a RAM budget: hits, misses, bytes read and written
    paging: dict[str, int] = field(default_factory=dict)

    def mean_rates(self, after: float = 0.0) -> dict[str, float]:
        keep = self.times > after
        return {n: float(self.rates[keep, i].mean()) for i, n in enumerate(self.names)}


class Brain:
    """Regions coupled by ``weights`` (R x R, >= 0) and ``delays`` (R x R, in intervals).

    With ``ram_budget`` (bytes) and ``page_dir``, spiking regions beyond the budget are paged
    out to disk and back before their step. ``eviction="lru"`` pages out the least recently
    used; ``"schedule"`` the one whose next step is furthest away (Belady's choice, known here
    because regions step in a fixed round), which keeps hits where a round of regions larger
    than the budget gives LRU none."""

    def __init__(
        self,
        regions: Sequence[Any],
        weights: Any,
        *,
        delays: Any = None,
        interval: float = 1e-3,
        ram_budget: int | None = None,
        page_dir: str | Path | None = None,
        eviction: str = "lru",
        prefetch: bool = False,
    ) -> None:
        self.regions = list(regions)
        R = len(self.regions)
        if R == 0:
            raise ConfigError("`regions` must hold at least one region")
        names = [r.name for r in self.regions]
        if len(set(names)) != R:
            raise ConfigError(f"region names must be unique, got {names}")
        self.weights = np.asarray(weights, dtype=np.float64)
        if self.weights.shape != (R, R):
            raise ShapeError(f"`weights` must have shape ({R}, {R}), got {self.weights.shape}")
        if not np.all(np.isfinite(self.weights)) or self.weights.min() < 0:
            raise ConfigError("`weights` must be finite and >= 0 (Hz per Hz)")
        d = np.ones((R, R), np.int64) if delays is None else np.asarray(delays)
        if d.shape != (R, R) or d.dtype.kind not in "iu" or d.min() < 1:
            raise ConfigError(
                f"`delays` must be integers >= 1 (coupling intervals) of shape ({R}, {R}); "
                "a delay shorter than the interval needs a shorter interval"
            )
        self.delays = d.astype(np.int64)
        self.interval = check_positive("interval", interval, "seconds")
        depth = int(self.delays.max()) + 1
        self._history = np.zeros((depth, R))  # ring buffer of past rates
        self._k = 0
        for i, r in enumerate(self.regions):  # start from each region's resting rate
            model = getattr(r, "model", r)
            self._history[:, i] = getattr(model, "rate", 0.0)
        self.ram_budget = None
        self.eviction = check_choice("eviction", eviction, ("lru", "schedule"))
        self._at = 0  # the index of the region about to step
        if ram_budget is not None:
            self.ram_budget = check_int("ram_budget", ram_budget, min_value=1)
            if page_dir is None:
                raise ConfigError("`ram_budget` needs `page_dir`, the folder regions page to")
            self.page_dir = Path(page_dir)
            self.page_dir.mkdir(parents=True, exist_ok=True)
            biggest = max((r.nbytes() for r in self._spiking()), default=0)
            if biggest > self.ram_budget:
                raise ConfigError(
                    f"`ram_budget` must hold the largest spiking region ({biggest:,} bytes), got "
                    f"{self.ram_budget:,}; raise it or split the region"
                )
        self._lru: OrderedDict[str, Any] = OrderedDict(
            (r.name, r) for r in self._spiking() if r.resident
        )
        self.paging = {"hits": 0, "misses": 0, "prefetched": 0, "bytes_read": 0, "bytes_written": 0}
        self._evict_to(self.ram_budget)
        self._pending: tuple[Any, Any] | None = None
        self._pool = None
        if prefetch and self.ram_budget is not None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(1, thread_name_prefix="brain-prefetch")

    def _spiking(self) -> list[Any]:
        return [r for r in self.regions if hasattr(r, "page_in")]

    def _evict_to(self, budget: int | None, keep: Any = None) -> None:
        """Page out regions (never ``keep``) until the resident ones fit ``budget``."""
        if budget is None:
            return
        while sum(r.nbytes() for r in self._lru.values()) > budget:
            candidates = [r for r in self._lru.values() if r is not keep]
            if not candidates:
                return
            if self.eviction == "lru":
                victim = candidates[0]
            else:  # Belady: the region whose next step is furthest away in the round
                order = {id(r): i for i, r in enumerate(self.regions)}
                R = len(self.regions)
                victim = max(candidates, key=lambda r: (order[id(r)] - self._at) % R)
            del self._lru[victim.name]
            self.paging["bytes_written"] += victim.page_out(self.page_dir)

    def _settle(self) -> None:
        """Wait for the region being read ahead and make it resident."""
        if self._pending is not None:
            region, future = self._pending
            self._pending = None
            self.paging["bytes_read"] += future.result()
            self._lru[region.name] = region

    def _read_ahead(self, current: int) -> None:
        """Start loading the next spiking region of the round while ``current`` steps."""
        R = len(self.regions)
        for k in range(1, R):
            nxt = self.regions[(current + k) % R]
            if hasattr(nxt, "page_in"):
                break
        else:
            return
        if nxt.resident or nxt is self.regions[current]:
            return
        self._evict_to(self.ram_budget - nxt.nbytes(), keep=self.regions[current])
        if sum(r.nbytes() for r in self._lru.values()) + nxt.nbytes() > self.ram_budget:
            return  # no room beside the current one: load it when its turn comes
        self._pending = (nxt, self._pool.submit(nxt.page_in))

    def _ready(self, region: Any) -> None:
        """Make ``region`` resident (LRU order), paging others out to stay in budget."""
        if not hasattr(region, "page_in"):
            return
        if self._pending is not None and self._pending[0] is region:
            self._settle()
            self.paging["prefetched"] += 1  # read while the region before it stepped
            self._lru.move_to_end(region.name)
            return
        self._settle()
        if region.resident:
            self.paging["hits"] += 1
            self._lru.move_to_end(region.name)
            return
        self.paging["misses"] += 1
        self._evict_to(self.ram_budget - region.nbytes())
        self.paging["bytes_read"] += region.page_in()
        self._lru[region.name] = region

    def save(self, path: str | Path) -> Path:
        """:func:`save_brain`: a run continued after :meth:`load` equals an uninterrupted one."""
        return save_brain(self, path)

    @staticmethod
    def load(path: str | Path, **kw: Any) -> Brain:
        return load_brain(path, **kw)

    def memory_bytes(self) -> dict[str, int]:
        """Bytes of state per level (spiking networks as they report it)."""
        out: dict[str, int] = {}
        for r in self.regions:
            out[r.level] = out.get(r.level, 0) + r.nbytes()
        out["coupling"] = self.weights.nbytes + self.delays.nbytes + self._history.nbytes
        return out

    def run(self, duration: float, *, callback: ProgressCallback | None = None) -> BrainResult:
        """Advance every region by ``duration`` seconds, one coupling interval at a time."""
        check_positive("duration", duration, "seconds")
        n = max(1, int(round(duration / self.interval)))
        R, depth = len(self.regions), self._history.shape[0]
        rates = np.zeros((n, R))
        report = ProgressReporter("snn.brain.run", n, "interval", callback)
        cols = np.arange(R)
        for k in range(n):
            # slot (j + 1) % depth holds interval j's rates: delay d reads interval k - d
            past = self._history[(self._k - self.delays + 1) % depth, cols[None, :]]
            extra = (self.weights * past).sum(axis=1)
            for i, region in enumerate(self.regions):
                self._at = i
                self._ready(region)
                if self._pool is not None and hasattr(region, "page_in"):
                    self._read_ahead(i)
                rates[k, i] = region.advance(self.interval, float(extra[i]))
            self._k += 1
            self._history[self._k % depth] = rates[k]
            if report.update(k + 1, mean_rate_hz=float(rates[k].mean())):
                rates = rates[: k + 1]
                break
        self._settle()
        t0 = (self._k - len(rates)) * self.interval
        times = t0 + self.interval * np.arange(1, len(rates) + 1)
        return BrainResult(
            [r.name for r in self.regions],
            [r.level for r in self.regions],
            times,
            rates,
            report.stopped,
            dict(self.paging) if self.ram_budget is not None else {},
        )


BRAIN_ENGINE = "snn.Brain"


def save_brain(brain: Brain, path: str | Path) -> Path:
    """Everything a run needs to continue exactly: the coupling (weights, delays, the delay
    line of past rates, the clock), each rate region's rate and random stream, and each spiking
    region's network (its own checkpoint, copied from disk where it is paged out). Written
    atomically; every file checksummed."""
    import shutil

    from neurofabric.core.checkpoint import atomic_directory, save_checkpoint

    brain._settle()
    with atomic_directory(path) as tmp:
        for r in brain.regions:
            if hasattr(r, "page_in"):
                dest = tmp / "regions" / r.name
                if r.resident:
                    r.net.save(dest)
                else:
                    shutil.copytree(r.file, dest)
        save_checkpoint(
            tmp / "brain",
            engine=BRAIN_ENGINE,
            params={"interval": brain.interval},
            arrays={"weights": brain.weights, "delays": brain.delays, "history": brain._history},
            meta={"k": brain._k, "regions": [r.state() for r in brain.regions]},
        )
    return Path(path)


def load_brain(path: str | Path, **kw: Any) -> Brain:
    """A brain saved by :func:`save_brain`, ready to continue (``kw``: ``ram_budget``,
    ``page_dir``, ``eviction`` as for :class:`Brain`)."""
    from neurofabric.core.checkpoint import load_checkpoint
    from neurofabric.snn.network import SpikingNetwork

    path = Path(path)
    ck = load_checkpoint(path / "brain", engine=BRAIN_ENGINE)
    regions: list[Any] = []
    for st in ck.meta["regions"]:
        if st["level"] == "spiking":
            net = SpikingNetwork.load(path / "regions" / st["name"])
            r = SpikingRegion(
                st["name"], net, drive=st["drive"], base_rate=st["base_rate"], c_ext=st["c_ext"]
            )
            r._extra = st["extra"]  # the network's inputs were saved at that rate
        elif st["level"] == WongWangRegion.level:
            keys = ("n_neurons", "a", "b", "d", "gamma", "tau_s", "w", "J_N", "I_o")
            r = WongWangRegion(
                st["name"], **{k: st[k] for k in keys + ("gain", "sigma", "dt", "S")}
            )
            r.rng.bit_generator.state = st["rng"]
        else:
            cls = PopulationRegion if st["level"] == "population" else MeanFieldRegion
            kwargs = {k: st[k] for k in ("n_neurons", "tau_r", "dt", "rate")}
            r = cls(st["name"], LIFPopulation(**st["pop"]), **kwargs)
            if "rng" in st:
                r.rng.bit_generator.state = st["rng"]
        regions.append(r)
    R = len(regions)
    weights = ck.array("weights", kinds="f", shape=(R, R), finite=True)
    delays = ck.array("delays", kinds="iu", shape=(R, R), lo=1)
    history = ck.array("history", kinds="f", shape=(int(delays.max()) + 1, R), finite=True)
    brain = Brain(
        regions, np.array(weights), delays=np.array(delays), interval=ck.params["interval"], **kw
    )
    brain._history = np.array(history)
    brain._k = int(ck.meta["k"])
    return brain
