"""The multi-scale brain, validated level by level (issue 20).

    python benchmarks/snn_brain.py                       # all parts
    python benchmarks/snn_brain.py --parts sweep --n 12500 --duration 1.0
    python benchmarks/snn_brain.py --parts whole --spiking-neurons 8600000 --whole-duration 0.01

Parts:

- ``sweep``: Brunel (2000) model A (``neurofabric.snn.models.brunel``, N neurons, C_E = 0.1 N_E)
  simulated neuron by neuron over a grid of g and eta (``--duration`` s after 0.2 s of
  transient), against the stationary rate of its Siegert mean field
  (``neurofabric.snn.meanfield``). Also the synchrony of the spiking network: the coefficient of
  variation of its population rate in 1 ms bins (a Poisson population of N neurons at rate nu
  gives 1 / sqrt(N nu 1 ms); an oscillating one much more), and where that variance lies in
  frequency: the share of the population rate's power (1 ms bins, mean removed) below 40 Hz
  and the frequency of its largest peak. A Poisson population spreads its power evenly up to
  500 Hz (a share of 0.08); Brunel's slow synchronous-irregular state (his Fig. 8D, g = 4.5,
  eta = 0.9) puts most of it in slow oscillations, his asynchronous state (g = 5, eta = 2)
  little. The stationary mean field describes the asynchronous state only.
- ``cuba``: the same network with exponential current synapses (tau_s = 2 ms, the same
  integrated PSPs), against the mean field with and without Fourcaud & Brunel's colored-noise
  correction.
- ``swap``: region A drives region B (0.2 Hz per external synapse per Hz of A, 2 ms delay);
  A spiking, then A as its mean field: A's and B's rates.
- ``paging``: 8 spiking regions in a ring under a RAM budget of 3 regions, paged to disk by the
  LRU, against the same brain all in RAM: wall time, hit rate, bytes read per biological
  second, identical rates.
- ``whole``: about 1,000 regions whose neuron counts add up to 86 billion, about 0.01 % of them
  spiking (``--spiking-neurons`` LIF neurons with procedural synapses, in 10 regions), the rest
  population (finite-size) and mean-field regions; memory per level, wall time per
  biological second, and a figure of region rates over time (``--out``).

One thread (numba pinned). Prints a table per part and one JSON line per row.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

from _record import record
from _threads import limit_loaded, pin_threads, threads_line

THREADS = pin_threads(1)

import numpy as np  # noqa: E402

from neurofabric.snn.brain import Brain, MeanFieldRegion, PopulationRegion, SpikingRegion  # noqa: E402
from neurofabric.snn.meanfield import brunel_population, stationary_rate  # noqa: E402
from neurofabric.snn.models import brunel  # noqa: E402
from neurofabric.snn.monitors import SpikeMonitor  # noqa: E402

MACHINE = f"{platform.machine()}, {platform.processor() or 'cpu'}, threads {THREADS}"


def region(name: str, n: int, *, g=5.0, eta=2.0, seed=0, epsilon=0.1, storage="csr"):
    pop = brunel_population(n, g=g, eta=eta, epsilon=epsilon)
    net = brunel(n, g=g, eta=eta, epsilon=epsilon, seed=seed, storage=storage)
    return SpikingRegion(name, net, base_rate=pop.c_ext * pop.rate_ext, c_ext=pop.c_ext)


#: the "slow" band of the population rate's spectrum, Hz
SLOW_HZ = 40.0


def rate_spectrum(counts: np.ndarray, bin_s: float, below_hz: float) -> tuple[float, float]:
    """The share of the power of a binned population rate (mean removed, DC left out) at
    frequencies below ``below_hz``, and the frequency of its largest peak."""
    x = counts.astype(np.float64) - counts.mean()
    power = np.abs(np.fft.rfft(x)) ** 2
    freq = np.fft.rfftfreq(len(x), bin_s)
    power, freq = power[1:], freq[1:]
    total = power.sum()
    if total <= 0:
        return float("nan"), float("nan")
    return float(power[freq < below_hz].sum() / total), float(freq[np.argmax(power)])


def sweep(args) -> None:
    print(f"\n## Brunel model A, N = {args.n}: spiking against the Siegert mean field")
    print(
        "| g | eta | spiking (Hz) | mean field (Hz) | mean field / spiking | synchrony (CV of the population rate) | Poisson CV | power below 40 Hz | peak (Hz) | wall s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    grid = [(g, eta) for g in (4.0, 5.0, 6.0, 8.0) for eta in (1.0, 2.0, 4.0)] + [
        (3.0, 2.0),
        (4.5, 0.9),
    ]
    for g, eta in grid:
        t0 = time.perf_counter()
        net = brunel(args.n, g=g, eta=eta, seed=1)
        net.run(0.2)
        res = net.run(args.duration, monitors=[SpikeMonitor()])
        wall = time.perf_counter() - t0
        sim = res.n_spikes / (args.n * args.duration)
        bins = np.bincount(
            ((res.spike_times - res.spike_times.min()) / 1e-3).astype(np.int64),
            minlength=int(args.duration / 1e-3),
        )
        cv = float(bins.std() / max(bins.mean(), 1e-12))
        poisson_cv = 1 / np.sqrt(max(args.n * sim * 1e-3, 1e-12))
        slow_share, peak_hz = rate_spectrum(bins, 1e-3, below_hz=SLOW_HZ)
        try:
            mf = stationary_rate(brunel_population(args.n, g=g, eta=eta))
        except Exception as exc:  # noqa: BLE001 - a saturating population is a result too
            mf = float("nan")
            print(f"(g={g}, eta={eta}: {exc})")
        ratio = mf / sim if sim > 0 else float("nan")
        print(
            f"| {g} | {eta} | {sim:.2f} | {mf:.2f} | {ratio:.3f} | {cv:.2f} | {poisson_cv:.2f} "
            f"| {slow_share:.2f} | {peak_hz:.0f} | {wall:.1f} |"
        )
        record(
            "snn_brain",
            "neurofabric",
            workload={
                "part": "sweep",
                "neurons": args.n,
                "g": g,
                "eta": eta,
                "transient_s": 0.2,
                "duration_s": args.duration,
                "seed": 1,
                "threads": THREADS,
            },
            figures={
                "spiking_hz": sim,
                "meanfield_hz": mf,
                "meanfield_over_spiking_x": ratio,
                "population_cv_x": cv,
                "poisson_cv_x": poisson_cv,
                "slow_power_frac": slow_share,
                "peak_hz": peak_hz,
                "wall_s": wall,
            },
            headline=("spiking_hz", "meanfield_hz", "meanfield_over_spiking_x"),
        )


def cuba(args) -> None:
    tau_s = 2e-3
    print(
        f"\n## CUBA-like: Brunel model A with exponential current synapses (tau_s = 2 ms), N = {args.n}"
    )
    print(
        "| g | eta | spiking (Hz) | corrected mean field (Hz) | ratio | white-noise mean field (Hz) | ratio | wall s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for g, eta in ((5.0, 2.0), (6.0, 2.0), (8.0, 2.0), (5.0, 4.0), (8.0, 4.0)):
        t0 = time.perf_counter()
        net = brunel(args.n, g=g, eta=eta, seed=1, tau_s=tau_s)
        net.run(0.2)
        sim = net.run(args.duration).n_spikes / (args.n * args.duration)
        wall = time.perf_counter() - t0
        mf = stationary_rate(brunel_population(args.n, g=g, eta=eta, tau_s=tau_s))
        white = stationary_rate(brunel_population(args.n, g=g, eta=eta))
        print(
            f"| {g} | {eta} | {sim:.2f} | {mf:.2f} | {mf / sim:.3f} | {white:.2f} | {white / sim:.3f} | {wall:.1f} |"
        )
        record(
            "snn_brain",
            "neurofabric",
            workload={
                "part": "cuba",
                "neurons": args.n,
                "g": g,
                "eta": eta,
                "tau_syn_s": tau_s,
                "transient_s": 0.2,
                "duration_s": args.duration,
                "seed": 1,
                "threads": THREADS,
            },
            figures={
                "spiking_hz": sim,
                "meanfield_hz": mf,
                "meanfield_over_spiking_x": mf / sim,
                "white_meanfield_hz": white,
                "white_meanfield_over_spiking_x": white / sim,
                "wall_s": wall,
            },
            headline=("spiking_hz", "meanfield_over_spiking_x", "white_meanfield_over_spiking_x"),
        )


def swap(args) -> None:
    n = args.n
    W, D = [[0.0, 0.0], [0.2, 0.0]], [[1, 1], [2, 1]]
    print(f"\n## Swapping region A from spiking to mean field (N = {n} each, {args.duration} s)")
    print("| A's level | A (Hz) | B (Hz) | wall s |")
    print("|---|---|---|---|")
    out = {}
    for level in ("spiking", "mean-field"):
        a = (
            region("A", n, g=6.0, eta=3.0, seed=1)
            if level == "spiking"
            else MeanFieldRegion("A", brunel_population(n, g=6.0, eta=3.0), n_neurons=n)
        )
        brain = Brain([a, region("B", n, seed=2)], W, delays=D, interval=1e-3)
        t0 = time.perf_counter()
        rates = brain.run(args.duration + 0.2).mean_rates(after=0.2)
        wall = time.perf_counter() - t0
        out[level] = rates
        print(f"| {level} | {rates['A']:.2f} | {rates['B']:.2f} | {wall:.1f} |")
        record(
            "snn_brain",
            "neurofabric",
            workload={
                "part": "swap",
                "a_level": level,
                "neurons": n,
                "transient_s": 0.2,
                "duration_s": args.duration,
                "threads": THREADS,
            },
            figures={"a_hz": rates["A"], "b_hz": rates["B"], "wall_s": wall},
            headline=("a_hz", "b_hz"),
        )
    change = out["mean-field"]["B"] / out["spiking"]["B"] - 1
    print(f"B's rate changes by {change:+.1%} when A is swapped to its mean field")


def paging(args) -> None:
    n, R = args.paging_n, 8
    W = np.zeros((R, R))
    for i in range(R):
        W[i, (i - 1) % R] = 0.05
    duration, interval = args.paging_duration, 5e-3
    print(
        f"\n## Paging: {R} spiking regions of {n} neurons, a budget of 3, {duration} s, coupling every {interval * 1e3:g} ms"
    )
    print(
        "| mode | wall s | slowdown | hits | misses | read ahead | MB read per biological s "
        "| rates identical |"
    )
    print("|---|---|---|---|---|---|---|---|")
    t0 = time.perf_counter()
    ref = Brain([region(f"r{i}", n, seed=i) for i in range(R)], W, interval=interval).run(duration)
    t_ram = time.perf_counter() - t0
    print(f"| all in RAM | {t_ram:.1f} | 1.00 | | | | | |")
    for eviction, prefetch in (
        ("lru", False),
        ("schedule", False),
        ("lru", True),
        ("schedule", True),
    ):
        with tempfile.TemporaryDirectory() as tmp:
            regs = [region(f"r{i}", n, seed=i) for i in range(R)]
            budget = 3 * regs[0].nbytes()
            t0 = time.perf_counter()
            brain = Brain(
                regs,
                W,
                interval=interval,
                ram_budget=budget,
                page_dir=tmp,
                eviction=eviction,
                prefetch=prefetch,
            )
            res = brain.run(duration)
            t_disk = time.perf_counter() - t0
        p = res.paging
        same = bool(np.array_equal(res.rates, ref.rates))
        mb = p["bytes_read"] / 1e6 / duration
        print(
            f"| budget 3 of {R}, {eviction}{', read ahead' if prefetch else ''} | {t_disk:.1f} | "
            f"{t_disk / t_ram:.2f} | {p['hits']} | {p['misses']} | {p['prefetched']} | {mb:,.0f} | {same} |"
        )
        record(
            "snn_brain",
            "neurofabric",
            variant=eviction + ("+read-ahead" if prefetch else ""),
            workload={
                "part": "paging",
                "eviction": eviction,
                "prefetch": prefetch,
                "regions": R,
                "neurons": n,
                "budget_regions": 3,
                "region_bytes": regs[0].nbytes(),
                "interval_s": interval,
                "duration_s": duration,
                "threads": THREADS,
            },
            figures={
                "wall_ram_s": t_ram,
                "wall_paged_s": t_disk,
                "slowdown_x": t_disk / t_ram,
                "hits_count": p["hits"],
                "misses_count": p["misses"],
                "prefetched_count": p["prefetched"],
                "read_bytes": p["bytes_read"],
                "written_bytes": p["bytes_written"],
                "read_mb_per_s": mb,  # per biological second
                "identical_runs_count": int(same),  # rates identical to the all-in-RAM run
            },
            headline=("slowdown_x", "read_mb_per_s", "identical_runs_count"),
        )


def whole(args) -> None:
    rng = np.random.default_rng(0)
    R, total = args.regions, 86e9
    sizes = rng.lognormal(0.0, 1.0, R)
    sizes = sizes / sizes.sum() * total
    n_spiking_regions = 10
    per = args.spiking_neurons // n_spiking_regions
    print(
        f"\n## Whole brain: {R} regions, {total:.3g} neurons, {n_spiking_regions} x {per:,} spiking (procedural synapses)"
    )
    t0 = time.perf_counter()
    regions = []
    for i in range(n_spiking_regions):  # C_E = 1000 whatever the size: epsilon = 1000 / N_E
        regions.append(
            region(f"spiking{i}", per, seed=i, epsilon=1000 / (0.8 * per), storage="procedural")
        )
    n_pop = R // 10
    for i in range(n_spiking_regions, R):
        pop = brunel_population(12500, g=5.0 + (i % 4), eta=1.5 + (i % 3) * 0.5)
        cls = PopulationRegion if i < n_spiking_regions + n_pop else MeanFieldRegion
        kw = {"seed": i} if cls is PopulationRegion else {}
        regions.append(cls(f"region{i}", pop, n_neurons=int(sizes[i]), dt=1e-3, **kw))
    W = np.where(rng.random((R, R)) < 10 / R, rng.uniform(0.0, 0.02, (R, R)), 0.0)
    np.fill_diagonal(W, 0.0)
    D = rng.integers(2, 20, (R, R))
    brain = Brain(regions, W, delays=D, interval=args.interval)
    for r in regions[:n_spiking_regions]:
        r.net.build()
    build = time.perf_counter() - t0
    warm = region("warm-up", 2000, epsilon=1000 / 1600, storage="procedural")
    warm.advance(args.interval, 1.0)  # compile (or load) the kernels outside the timing
    mem = brain.memory_bytes()
    t0 = time.perf_counter()
    res = brain.run(args.whole_duration)
    wall = time.perf_counter() - t0
    per_bio = wall / args.whole_duration
    print("| level | regions | neurons | bytes |")
    print("|---|---|---|---|")
    levels = {}
    for r in regions:
        lv = levels.setdefault(r.level, [0, 0])
        lv[0] += 1
        lv[1] += r.n_neurons
    for name, (count, neurons) in levels.items():
        print(f"| {name} | {count} | {neurons:.3g} | {mem.get(name, 0):,} |")
    print(f"| coupling | | | {mem['coupling']:,} |")
    print(
        f"total {sum(mem.values()) / 1e6:,.1f} MB; build {build:.1f} s; {wall:.1f} s for {args.whole_duration} s: {per_bio:,.0f} s per biological second"
    )
    record(
        "snn_brain",
        "neurofabric",
        workload={
            "part": "whole",
            "regions": R,
            "neurons": total,
            "spiking_neurons": per * n_spiking_regions,
            "interval_s": args.interval,
            "duration_s": args.whole_duration,
            "threads": THREADS,
        },
        figures={
            **{f"memory_{k.replace('-', '_')}_bytes": v for k, v in mem.items()},
            "total_mb": sum(mem.values()) / 1e6,
            "build_s": build,
            "wall_s": wall,
            "s_per_bio_s": per_bio,
        },
        headline=("s_per_bio_s", "total_mb"),
    )
    if args.out:
        from neurofabric.core.figures import pyplot, save_figure

        plt = pyplot()
        fig, ax = plt.subplots(figsize=(9, 4))
        shown = list(range(n_spiking_regions)) + list(range(n_spiking_regions, R, max(1, R // 40)))
        for i in shown:
            ax.plot(
                res.times * 1e3,
                res.rates[:, i],
                lw=1.2 if i < n_spiking_regions else 0.6,
                color="C3"
                if i < n_spiking_regions
                else ("C0" if regions[i].level == "population" else "C2"),
            )
        ax.set_xlabel("time (ms)")
        ax.set_ylabel("rate (Hz)")
        ax.set_title("region rates: spiking (red), population (blue), mean field (green)")
        path = save_figure(fig, Path(args.out) / "snn_brain_rates.png")
        print(f"figure: {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", default="sweep,cuba,swap,paging,whole")
    ap.add_argument("--n", type=int, default=12500)
    ap.add_argument("--duration", type=float, default=1.0)
    ap.add_argument("--paging-n", type=int, default=2500)
    ap.add_argument("--paging-duration", type=float, default=0.2)
    ap.add_argument("--regions", type=int, default=1000)
    ap.add_argument("--spiking-neurons", type=int, default=8_600_000)
    ap.add_argument("--whole-duration", type=float, default=0.01)
    ap.add_argument("--interval", type=float, default=1e-3)
    ap.add_argument("--out", default=None, help="folder for the whole-brain figure")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    limit_loaded(THREADS)
    print(f"machine: {MACHINE}; {threads_line()}")
    parts = args.parts.split(",")
    parts_fns = (
        ("sweep", sweep),
        ("cuba", cuba),
        ("swap", swap),
        ("paging", paging),
        ("whole", whole),
    )
    for name, fn in parts_fns:
        if name in parts:
            fn(args)


if __name__ == "__main__":
    main()
