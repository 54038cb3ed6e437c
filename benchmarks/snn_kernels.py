"""Step-loop speed of each code path of the spiking simulator, for comparing kernel changes.

    python benchmarks/snn_kernels.py                       # every case, 1 thread
    python benchmarks/snn_kernels.py --case stp --case stdp --repeats 7

One network per case, built with the public API and run ``--repeats`` times for
``--duration`` biological seconds after a warm-up run (JIT compile or disk-cache load, not
timed). Cases: ``event`` (CUBA, event-driven push), ``dense`` (the same network, dense
pull), ``update`` (CUBA with 8 synapses a neuron: the neuron update dominates), ``coba``,
``delta`` (Brunel 2000), ``procedural`` (rows regenerated per spike), ``stp``
(Tsodyks-Markram on recurrent and Poisson input synapses), ``stdp`` (triplet STDP on
recurrent and input synapses, rate homeostasis). Prints a markdown table and one JSON line
per case (``s_per_bio_s``: median wall seconds per biological second; ``steps_per_s``).
Only the public API is used, so the script runs unchanged against an older checkout
(``PYTHONPATH=<old>/src``) for before/after figures.
"""

from __future__ import annotations

import argparse
import statistics
import time

from _record import record
from _threads import pin_threads, threads_info

THREADS = pin_threads(1)

CASES = ("event", "dense", "update", "coba", "delta", "procedural", "stp", "stdp")


def _vogels_abbott(case: str, n: int):
    from neurofabric.snn.models import coba, cuba

    if case == "coba":
        return coba(n, synapses_per_neuron=20, seed=1)
    prop = {"dense": "dense", "event": "event"}.get(case, "auto")
    k = 8 if case == "update" else 80
    storage = "procedural" if case == "procedural" else "csr"
    return cuba(n, synapses_per_neuron=k, propagation=prop, storage=storage, seed=1)


def _stp(n: int):
    from neurofabric.snn import LIFParams, PoissonInput, Random, SpikingNetwork
    from neurofabric.snn.stp import ShortTermPlasticity

    net = SpikingNetwork(
        n, neuron=LIFParams(i_ext=1.49e-9), propagation="event", v_init=(-70e-3, -56e-3), seed=3
    )
    net.add_input("drive", PoissonInput(400, rate=50.0))
    recurrent = ShortTermPlasticity(U=0.5, tau_rec=0.5)
    net.connect(Random(p=0.01), weight=0.3e-3, inh_weight=1.2e-3, stp=recurrent)
    drive = ShortTermPlasticity(U=0.3, tau_rec=0.3, tau_facil=0.1)
    return net.connect(Random(p=0.05), source="drive", weight=0.5e-3, stp=drive)


def _stdp(n: int):
    from neurofabric.snn import LIFParams, PoissonInput, Random, SpikingNetwork
    from neurofabric.snn.homeostasis import RateTargetThreshold
    from neurofabric.snn.plasticity import TripletSTDP

    net = SpikingNetwork(
        n,
        neuron=LIFParams(i_ext=1.45e-9),
        v_init=(-70e-3, -56e-3),
        homeostasis=RateTargetThreshold(target_hz=10.0),
        seed=4,
    )
    net.add_input("drive", PoissonInput(200, rate=20.0))
    rule = TripletSTDP(a2_plus=1e-5, a3_plus=1e-5, a2_minus=2e-5, a3_minus=1e-6, w_max=2e-3)
    n_exc = net.n_excitatory
    net.connect(Random(p=20 / n), weight=0.2e-3, plasticity=rule, source_range=(0, n_exc))
    net.connect(Random(p=20 / n), weight=0.8e-3, source_range=(n_exc, n))
    return net.connect(Random(p=0.05), source="drive", weight=0.5e-3, plasticity=rule)


def make(case: str, n: int):
    from neurofabric.snn.models import brunel

    if case == "delta":
        return brunel(n, seed=1)
    if case == "stp":
        return _stp(n)
    if case == "stdp":
        return _stdp(n)
    return _vogels_abbott(case, n)


SIZES = {"dense": 4_000, "delta": 10_000, "stdp": 10_000}


def run_case(case: str, args: argparse.Namespace) -> dict:
    n = args.neurons or SIZES.get(case, 20_000)
    t0 = time.perf_counter()
    net = make(case, n).build()
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    net.run(0.002)  # compile, or load from the disk cache
    compile_s = time.perf_counter() - t0
    times, res = [], None
    for _ in range(args.repeats):
        res = net.run(args.duration)
        times.append(res.wall_s / res.duration)
    s_per_bio_s = statistics.median(times)
    return {
        "system": "neurofabric",
        "case": case,
        "neurons": n,
        "synapses": net.n_synapses,
        "duration_s": args.duration,
        "repeats": args.repeats,
        "s_per_bio_s": s_per_bio_s,
        "s_per_bio_s_min": min(times),
        "s_per_bio_s_max": max(times),
        "steps_per_s": 1.0 / (net.dt * s_per_bio_s),
        "spikes": res.n_spikes,
        "event_steps": res.event_steps,
        "dense_steps": res.dense_steps,
        "build_s": build_s,
        "compile_s": compile_s,
        "backend": res.backend,
        "threads": THREADS,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--case", action="append", choices=CASES, help="repeatable; default all")
    ap.add_argument("--neurons", type=int, default=0, help="network size (default per case)")
    ap.add_argument("--duration", type=float, default=1.0, help="biological seconds per run")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per case (median)")
    ap.add_argument("--threads", type=int, default=THREADS, help="threads (pinned on import)")
    args = ap.parse_args()
    rows = [run_case(case, args) for case in (args.case or CASES)]
    print(f"Threads: {threads_info()}")
    print("| case | neurons | synapses | s per bio s | steps/s | spikes |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['case']} | {r['neurons']} | {r['synapses']} | {r['s_per_bio_s']:.4f} | "
            f"{r['steps_per_s']:.0f} | {r['spikes']} |"
        )
    for r in rows:
        record(
            "snn_kernels",
            "neurofabric",
            variant=r["backend"],
            workload={
                "case": r["case"],
                "neurons": r["neurons"],
                "synapses": r["synapses"],
                "duration_s": r["duration_s"],
                "repeats": r["repeats"],
                "threads": r["threads"],
            },
            figures={
                "s_per_bio_s": r["s_per_bio_s"],
                "s_per_bio_min_s": r["s_per_bio_s_min"],
                "s_per_bio_max_s": r["s_per_bio_s_max"],
                "steps_per_s": r["steps_per_s"],
                "spikes_count": r["spikes"],
                "event_steps": r["event_steps"],
                "dense_steps": r["dense_steps"],
                "build_s": r["build_s"],
                "compile_s": r["compile_s"],
            },
            headline=("s_per_bio_s", "steps_per_s"),
        )


if __name__ == "__main__":
    main()
