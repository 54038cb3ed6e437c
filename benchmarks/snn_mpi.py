"""The spiking simulator over MPI ranks: rank independence, repeated runs, strong scaling and a
communication model.

    python benchmarks/snn_mpi.py                       # everything below, about 15 minutes
    python benchmarks/snn_mpi.py --neurons 100000 --repeats 5

Each measurement starts ``mpiexec -n K`` (the MPICH wheel's, in this venv) on this script in
worker mode; every rank runs ``neurofabric.snn.distributed.run_distributed`` and rank 0
prints one JSON line. Every rank runs one thread (``NUMBA_NUM_THREADS=1``,
``OMP_WAIT_POLICY=PASSIVE``), and the one-process baselines run with the same one thread and
also with two (the other way to use a second core).

1. **Rank independence**: Brunel's network (model A, 1.5 ms delays, a Poisson input per
   neuron), 1, 2 and 4 ranks: spike trains compared bit for bit.
2. **Repeats**: ``--repeats`` runs on 4 ranks: each must give the 1-rank spikes (none lost or
   duplicated).
3. **Strong scaling**: CUBA (Vogels & Abbott, 80 synapses a neuron) with ``--neurons`` neurons
   on 1 and 2 ranks, for each delay of ``--delays-ms``: 0.1 ms is one step (Brian2's model; a
   window of one step, the hardest case for exchanges), 1.5 ms (Brunel's) a window of 15.
   Wall seconds per biological second, the speed-up over one plain process and over one
   rank, the time in exchanges and the bytes each rank receives per window.
4. **Model**: per window each rank computes its neurons and synapses (time ``c / K`` for the
   1-rank compute time ``c``) and takes part in one all-gather of every spike of the window
   (8 bytes each): ``T(K) = c / K + w (a log2 K + 8 s K_bytes / B)`` over ``w`` windows, with
   latency ``a`` and bandwidth ``B`` fitted from the 2-rank run's exchange time (shared
   memory here) or set with ``--latency-us`` / ``--bandwidth-gbs`` (InfiniBand defaults:
   1.5 us, 12 GB/s) to project 64 nodes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from _record import record

HERE = Path(__file__).resolve()


def worker(args) -> None:
    from mpi4py import MPI

    from neurofabric.snn.distributed import run_distributed
    from neurofabric.snn.models import brunel, cuba

    comm = MPI.COMM_WORLD
    t0 = time.perf_counter()
    if args.model == "brunel":
        net = brunel(args.neurons, seed=args.seed)
    else:
        net = cuba(args.neurons, seed=args.seed, delay=args.delay_ms * 1e-3)
    net.build()
    build_s = time.perf_counter() - t0
    run_distributed(net, 0.002, comm=comm)  # compile (or load) the kernels
    r = run_distributed(net, args.duration, comm=comm)
    comm.Barrier()
    if comm.rank == 0:
        if args.spikes:
            np.savez(args.spikes, t=r.spike_times, i=r.spike_indices)
        print(
            json.dumps(
                {
                    "model": args.model,
                    "ranks": r.ranks,
                    "neurons": r.neurons[1] - r.neurons[0],
                    "n_neurons": r.n_neurons,
                    "synapses": net.n_synapses,
                    "build_s": build_s,
                    "duration_s": r.duration,
                    "spikes": r.n_spikes,
                    "rate_hz": r.mean_rate_hz,
                    "wall_s": r.wall_s,
                    "s_per_bio_s": r.wall_s / r.duration,
                    "exchange_s": r.exchange_s,
                    "window_steps": r.window_steps,
                    "windows": r.windows,
                    "exchanges": r.exchanges,
                    "bytes_per_window": r.bytes_exchanged / max(r.windows, 1),
                }
            ),
            flush=True,
        )


def plain(args, neurons: int, duration: float, threads: int, delay_ms: float) -> dict:
    """One process, no MPI: the baseline (``SpikingNetwork.run``), CUBA."""
    code = (
        "import json, time\n"
        "from neurofabric.snn.models import cuba\n"
        f"net = cuba({neurons}, seed={args.seed}, delay={delay_ms * 1e-3!r}).build()\n"
        "net.run(0.002)\n"
        f"r = net.run({duration})\n"
        "print(json.dumps({'spikes': r.n_spikes, 's_per_bio_s': r.wall_s / r.duration}))\n"
    )
    env = _env(threads)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _env(threads: int = 1) -> dict:
    env = dict(os.environ)
    for v in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "NEUROFABRIC_THREADS"):
        env[v] = str(threads)
    env.update(OMP_WAIT_POLICY="PASSIVE", NEUROFABRIC_PROGRESS="0")
    return env


def ranks_run(
    args, k: int, model: str, neurons: int, duration: float, spikes=None, delay_ms=0.1
) -> dict:
    mpiexec = shutil.which("mpiexec", path=str(Path(sys.executable).parent))
    if mpiexec is None:
        raise SystemExit("mpiexec not found next to this Python: run `make` (the mpi extra)")
    cmd = [mpiexec, "-n", str(k), sys.executable, str(HERE), "--worker", "--model", model]
    cmd += ["--neurons", str(neurons), "--duration", str(duration), "--seed", str(args.seed)]
    cmd += ["--delay-ms", repr(delay_ms)]
    if spikes:
        cmd += ["--spikes", str(spikes)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=_env(1), check=False)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def record_ranks(row: dict, seed: int, **figures) -> None:
    """One schema line (benchmarks/_record.py) for a run over MPI ranks (a worker's row)."""
    record(
        "snn_mpi",
        "neurofabric",
        variant="mpi",
        workload={
            "check": row["check"],
            "model": row["model"],
            "ranks": row["ranks"],
            "neurons": row["n_neurons"],
            "rank0_neurons": row["neurons"],
            "synapses": row["synapses"],
            **({"delay_ms": row["delay_ms"]} if "delay_ms" in row else {}),
            "duration_s": row["duration_s"],
            "window_steps": row["window_steps"],
            "windows": row["windows"],
            "seed": seed,
            "threads": 1,
        },
        figures={
            "s_per_bio_s": row["s_per_bio_s"],
            **figures,
            "wall_s": row["wall_s"],
            "build_s": row["build_s"],
            "exchange_s": row["exchange_s"],
            "exchanges_count": row["exchanges"],
            "per_window_bytes": row["bytes_per_window"],
            "spikes_count": row["spikes"],
            "rate_hz": row["rate_hz"],
        },
        headline=("s_per_bio_s", *figures),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--model", default="cuba", help=argparse.SUPPRESS)
    ap.add_argument("--spikes", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--neurons", type=int, default=400_000, help="CUBA size for the scaling")
    ap.add_argument("--duration", type=float, default=0.5, help="biological seconds (scaling)")
    ap.add_argument(
        "--delays-ms", default="0.1,1.5", help="CUBA delays of the scaling runs, comma-separated"
    )
    ap.add_argument("--delay-ms", type=float, default=0.1, help=argparse.SUPPRESS)
    ap.add_argument("--brunel-neurons", type=int, default=5000)
    ap.add_argument("--repeats", type=int, default=20, help="4-rank repeats of the check")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--latency-us", type=float, default=1.5, help="projection: per hop")
    ap.add_argument("--bandwidth-gbs", type=float, default=12.0, help="projection: per node")
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"nf-snn-mpi-{os.getpid()}"
    tmp.mkdir(parents=True, exist_ok=True)
    rows = []
    # 1-2. rank independence and repeats
    ref = None
    same = {}
    for k in [1, 2, 4] + [4] * (args.repeats - 1):
        path = tmp / f"s{k}.npz"
        row = ranks_run(args, k, "brunel", args.brunel_neurons, 0.5, spikes=path)
        got = np.load(path)
        spikes = np.stack([got["t"], got["i"]])
        if ref is None:
            ref = spikes
        same.setdefault(k, []).append(bool(np.array_equal(spikes, ref)))
        if len(same[k]) == 1:
            rows.append({"check": "brunel", **row, "identical_to_1_rank": same[k][0]})
            record_ranks(rows[-1], args.seed, identical_runs_count=int(same[k][0]))
    repeats_ok = sum(same[4])
    record(
        "snn_mpi",
        "neurofabric",
        variant="mpi",
        workload={
            "check": "repeats",
            "model": "brunel",
            "ranks": 4,
            "neurons": args.brunel_neurons,
            "duration_s": 0.5,
            "runs": len(same[4]),
            "seed": args.seed,
            "threads": 1,
        },
        figures={
            "identical_runs_count": repeats_ok,
            "identical_runs_frac": repeats_ok / len(same[4]),
        },
        headline=("identical_runs_frac",),
    )
    # 3. strong scaling, for each delay
    scaling = []
    for delay_ms in [float(d) for d in args.delays_ms.split(",") if d]:
        base1 = plain(args, args.neurons, args.duration, 1, delay_ms)
        base2 = plain(args, args.neurons, args.duration, 2, delay_ms)
        one = ranks_run(args, 1, "cuba", args.neurons, args.duration, delay_ms=delay_ms)
        two = ranks_run(args, 2, "cuba", args.neurons, args.duration, delay_ms=delay_ms)
        for threads, base in ((1, base1), (2, base2)):  # the plain runs of the table
            record(
                "snn_mpi",
                "neurofabric",
                variant="plain",
                workload={
                    "check": "scaling",
                    "model": "cuba",
                    "ranks": 1,
                    "neurons": args.neurons,
                    "delay_ms": delay_ms,
                    "duration_s": args.duration,
                    "seed": args.seed,
                    "threads": threads,
                },
                figures={
                    "s_per_bio_s": base["s_per_bio_s"],
                    "speedup_x": base1["s_per_bio_s"] / base["s_per_bio_s"],
                    "spikes_count": base["spikes"],
                },
                headline=("s_per_bio_s", "speedup_x"),
            )
        for r in (one, two):
            rows.append({"check": "scaling", **r, "delay_ms": delay_ms})
            record_ranks(
                rows[-1],
                args.seed,
                speedup_x=base1["s_per_bio_s"] / r["s_per_bio_s"],
                over_one_rank_x=one["s_per_bio_s"] / r["s_per_bio_s"],
            )
        scaling.append((delay_ms, base1, base2, one, two))
    # 4. the model, per delay: compute c (1 rank, no exchange cost) and the exchange cost
    print()
    print(
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; one thread per rank"
    )
    print(
        f"Command: python benchmarks/snn_mpi.py --neurons {args.neurons} --duration "
        f"{args.duration} --repeats {args.repeats} --delays-ms {args.delays_ms}"
    )
    print()
    print("| check | ranks | identical to 1 rank | spikes | windows (steps each) | exchanges |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        if r["check"] == "brunel":
            print(
                f"| Brunel {r['n_neurons']:,}, 0.5 s | {r['ranks']} | {r['identical_to_1_rank']} "
                f"| {r['spikes']:,} | {r['windows']} ({r['window_steps']}) | {r['exchanges']} |"
            )
    print(f"\n4-rank repeats giving the 1-rank spikes: {repeats_ok} of {len(same[4])}")
    a, b = args.latency_us * 1e-6, args.bandwidth_gbs * 1e9
    for delay_ms, base1, base2, one, two in scaling:
        w = two["windows"]
        c = one["wall_s"] - one["exchange_s"]
        per_window_bytes = two["bytes_per_window"]
        fitted_s = two["exchange_s"] / w  # per window, 2 ranks (latency + transfer + waiting)
        head = "| s per bio s | speed-up | over 1 rank | in exchanges | bytes per window |"
        print(f"\n| CUBA {args.neurons:,} neurons, delay {delay_ms:g} ms {head}")
        print("|---|---|---|---|---|---|")
        print(
            f"| 1 process, 1 thread (plain run) | {base1['s_per_bio_s']:.2f} | 1.00x | - | - | - |"
        )
        print(
            f"| 1 process, 2 threads (plain run) | {base2['s_per_bio_s']:.2f} | "
            f"{base1['s_per_bio_s'] / base2['s_per_bio_s']:.2f}x | - | - | - |"
        )
        for r in (one, two):
            print(
                f"| {r['ranks']} rank(s), 1 thread each | {r['s_per_bio_s']:.2f} | "
                f"{base1['s_per_bio_s'] / r['s_per_bio_s']:.2f}x | "
                f"{one['s_per_bio_s'] / r['s_per_bio_s']:.2f}x | {r['exchange_s']:.2f} s | "
                f"{r['bytes_per_window']:,.0f} |"
            )
        print(
            f"\nModel: compute {c:.2f} s over {w} windows of {two['window_steps']} steps; measured "
            f"exchange at 2 ranks {fitted_s * 1e6:.1f} us a window (shared memory, waiting for "
            f"the slower rank included). Projected with {args.latency_us} us latency and "
            f"{args.bandwidth_gbs} GB/s:"
        )
        check = c / 2 + w * fitted_s
        print(
            f"  check at 2 ranks here: c / 2 + measured exchanges = {check:.2f} s against "
            f"{two['wall_s']:.2f} s measured"
        )
        for k in (2, 4, 16, 64):
            t = c / k + w * (a * math.log2(max(k, 2)) + per_window_bytes / b)
            print(f"  {k:>3} nodes: {t:.3f} s ({c / t:.1f}x of one)")


if __name__ == "__main__":
    main()
