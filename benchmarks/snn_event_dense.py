"""Event-driven push against dense pull, on the same network, at a fixed fraction of neurons
spiking every step (the older write-up claimed event-driven was "> 10x faster at biological
sparsity").

    python benchmarks/snn_event_dense.py                    # 20,000 neurons, 200 synapses each
    python benchmarks/snn_event_dense.py --neurons 4000 --activity 0.001,0.01,0.05,0.15

The activity is set, not emergent: a fraction of the neurons gets a drive that makes it fire
every step (t_ref 0), the others none, and the weights are too small (1 uV) to make anyone
else fire, so both modes do exactly the same work per step: ``propagation="event"`` walks the
rows of the spiking sources (CSR push), ``"dense"`` sums every neuron's incoming synapses
(CSC pull). Both on one thread, the same network (same seed) built once per mode, median of
``--repeats`` runs after a warm-up. Prints a table and one JSON line per activity.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

from _record import record
from _threads import pin_threads, threads_info

THREADS = pin_threads(1)


def build(n: int, degree: int, active: int, propagation: str):
    import numpy as np

    from neurofabric.snn import LIFParams, Random, SpikingNetwork, SynapseParams

    drive = np.zeros(n)
    drive[:active] = 1e3  # R x I = 10 V: the driven neurons fire every step
    net = SpikingNetwork(
        n,
        neuron=LIFParams(t_ref=0.0, i_ext=drive),
        synapse=SynapseParams("delta"),
        propagation=propagation,
        seed=1,
    )
    net.connect(Random(out_degree=degree), weight=1e-6)
    return net.build()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--neurons", type=int, default=20_000)
    ap.add_argument("--degree", type=int, default=200)
    ap.add_argument("--activity", default="0.0005,0.01,0.05,0.15")
    ap.add_argument("--duration", type=float, default=0.05)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=THREADS, help="(pinned on import)")
    args = ap.parse_args()
    rows = []
    for frac in (float(a) for a in args.activity.split(",")):
        active = max(1, round(frac * args.neurons))
        row = {"activity": active / args.neurons, "neurons": args.neurons}
        for mode in ("event", "dense"):
            net = build(args.neurons, args.degree, active, mode)
            first = net.run(args.duration)  # warm-up (compile or cache load)
            steps = round(args.duration / net.dt)
            assert first.n_spikes >= active * (steps - 2), "the driven neurons must fire"
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                result = net.run(args.duration)
                times.append(time.perf_counter() - t0)
            row[f"{mode}_s_per_bio_s"] = statistics.median(times) / args.duration
            row[f"{mode}_spikes_per_step"] = result.n_spikes / steps
            row[f"{mode}_steps"] = (result.event_steps, result.dense_steps)
        row["event_speedup"] = row["dense_s_per_bio_s"] / row["event_s_per_bio_s"]
        rows.append(row)
    print(
        f"\nMachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {threads_info()}"
    )
    print(
        f"Command: python benchmarks/snn_event_dense.py --neurons {args.neurons} --degree "
        f"{args.degree} --activity {args.activity} --duration {args.duration:g} "
        f"--repeats {args.repeats}\n"
    )
    print("| neurons spiking per step | event (s / bio s) | dense (s / bio s) | event speed-up |")
    print("|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['activity']:.2%} | {r['event_s_per_bio_s']:.3f} | "
            f"{r['dense_s_per_bio_s']:.3f} | {r['event_speedup']:.1f}x |"
        )
    for r in rows:
        for mode in ("event", "dense"):
            event_steps, dense_steps = r[f"{mode}_steps"]
            figures = {
                "s_per_bio_s": r[f"{mode}_s_per_bio_s"],
                "spikes_per_step_count": r[f"{mode}_spikes_per_step"],
                "event_steps": event_steps,
                "dense_steps": dense_steps,
            }
            if mode == "event":  # dense s per bio s / event s per bio s
                figures["speedup_x"] = r["event_speedup"]
            record(
                "snn_event_dense",
                "neurofabric",
                variant=mode,
                workload={
                    "activity": r["activity"],
                    "neurons": r["neurons"],
                    "degree": args.degree,
                    "duration_s": args.duration,
                    "repeats": args.repeats,
                    "threads": THREADS,
                },
                figures=figures,
                headline=[h for h in ("s_per_bio_s", "speedup_x") if h in figures],
            )


if __name__ == "__main__":
    main()
