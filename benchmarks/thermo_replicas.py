"""Parallel tempering over MPI ranks: proposals per second and swap acceptance against the
number of ranks, and test accuracy at a fixed wall-clock budget with 1 and 2 ranks.

    python benchmarks/thermo_replicas.py                    # MNIST, 5 runs of --max-time s
    python benchmarks/thermo_replicas.py --quick            # digits, seconds

Each row starts ``mpiexec -n K`` (the MPICH wheel's, in this venv) on this script in worker
mode; every rank runs ``ThermoClassifier.fit(..., comm=MPI.COMM_WORLD)`` on the same data with
R replicas (the ranks hold them in blocks) and rank 0 prints one JSON line. Every rank runs one
thread (``NUMBA_NUM_THREADS=1``, ``OMP_WAIT_POLICY=PASSIVE``), so K ranks use K cores. The same
budget, schedule (annealed over the budget) and seed in every row; the rows differ only in R
and K. The 1-rank row with one replica is plain annealing, the baseline tempering must beat
(at equal wall-clock) to be worth its cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

from _record import record

HERE = Path(__file__).resolve()
#: (ranks, replicas) of each row
ROWS = ((1, 1), (1, 2), (2, 2), (1, 4), (2, 4))


def worker(args) -> None:
    from mpi4py import MPI

    from neurofabric.data import load_classification
    from neurofabric.thermo import Geometric, ThermoClassifier

    comm = MPI.COMM_WORLD
    Xtr, Xte, ytr, yte = load_classification(args.dataset, data_dir=args.data_dir)
    m = ThermoClassifier(
        hidden=(args.hidden,),
        n_proposals=args.proposals,
        generation=args.generation,
        batch_size=args.batch_size,
        schedule=Geometric(args.t_start, args.t_end),
        max_time=args.max_time,
        lambda_l0=args.lambda_l0,
        lambda_l1=args.lambda_l1,
        w_prune=args.w_prune,
        w_max=args.w_max,
        replicas=args.replicas,
        replica_ratio=args.ratio,
        seed=args.seed,
    )
    t = time.perf_counter()
    m.fit(Xtr, ytr, comm=comm)
    secs = time.perf_counter() - t
    acc = m.score(Xte, yte) if comm.rank == 0 else None
    if comm.rank == 0:
        rates = m.swap_rate_.tolist()
        print(
            json.dumps(
                {
                    "ranks": m.ranks_,
                    "replicas": args.replicas,
                    "accuracy": acc,
                    "train_s": secs,
                    "sparsity": m.fabric_.sparsity,
                    "proposals_per_replica": m.n_proposals_done_,
                    "proposals_per_s": m.n_proposals_done_ * args.replicas / secs,
                    "swap_acceptance": sum(rates) / len(rates) if rates else None,
                    "swap_rates": rates,
                    "generations": len(m.history_),
                }
            ),
            flush=True,
        )


def _env() -> dict:
    env = dict(os.environ)
    for v in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[v] = "1"
    env.update(OMP_WAIT_POLICY="PASSIVE", NEUROFABRIC_PROGRESS="0")
    return env


def run(ranks: int, replicas: int, argv: list[str]) -> dict:
    mpiexec = shutil.which("mpiexec", path=str(Path(sys.executable).parent))
    if mpiexec is None:
        sys.exit("mpiexec not found: install the `mpi` extra (make does)")
    cmd = [mpiexec, "-n", str(ranks), sys.executable, str(HERE), "--worker"]
    cmd += [*argv, "--replicas", str(replicas)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=_env(), check=False)
    if out.returncode != 0:
        sys.exit(f"worker failed ({ranks} ranks, {replicas} replicas):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true", help="digits, 20 s per row")
    ap.add_argument("--data-dir", default=os.environ.get("NEUROFABRIC_DATA", "../shared/datasets"))
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--max-time", type=float, default=150.0, help="seconds per row")
    ap.add_argument("--proposals", type=int, default=2_000_000_000, help="upper bound")
    ap.add_argument("--batch-size", type=int, default=2000)
    ap.add_argument("--generation", type=int, default=20_000)
    ap.add_argument("--lambda-l0", type=float, default=1.0)
    ap.add_argument("--lambda-l1", type=float, default=0.5)
    ap.add_argument("--w-prune", type=float, default=0.05)
    ap.add_argument("--w-max", type=float, default=1.0)
    ap.add_argument("--t-start", type=float, default=1.0)
    ap.add_argument("--t-end", type=float, default=0.01)
    ap.add_argument("--ratio", type=float, default=1.02, help="replica temperature ratio")
    ap.add_argument("--replicas", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.quick and not args.worker:
        args.dataset, args.max_time, args.hidden, args.batch_size = "digits", 20.0, 32, 500
        args.generation = 10_000
    if args.worker:
        return worker(args)
    argv = [
        f"--{k.replace('_', '-')}={v}"
        for k, v in vars(args).items()
        if k not in ("worker", "quick", "replicas")
    ]
    print(
        f"# {args.dataset}, 1 hidden layer of {args.hidden}, {args.max_time:.0f} s per row, "
        f"ratio {args.ratio}, one thread per rank; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus",
        flush=True,
    )
    rows = []
    for ranks, replicas in ROWS:
        r = run(ranks, replicas, argv)
        rows.append(r)
        print(f"#   {ranks} rank(s), {replicas} replica(s): {r}", flush=True)
    base = {r["replicas"]: r for r in rows if r["ranks"] == 1}
    print()
    print(
        "| ranks | replicas | test accuracy | proposals/s (all replicas) | vs 1 rank "
        "| swap acceptance | proposals per replica |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        speed = r["proposals_per_s"] / base[r["replicas"]]["proposals_per_s"]
        swap = "-" if r["swap_acceptance"] is None else f"{r['swap_acceptance']:.2f}"
        print(
            f"| {r['ranks']} | {r['replicas']} | {r['accuracy']:.4f} | "
            f"{r['proposals_per_s']:,.0f} | {speed:.2f}x | {swap} | "
            f"{r['proposals_per_replica']:,} |"
        )
        record(
            "thermo_replicas",
            "neurofabric",
            variant=f"{r['ranks']}rank-{r['replicas']}replica",
            workload={
                "dataset": args.dataset,
                "hidden": args.hidden,
                "budget_s": args.max_time,
                "ranks": r["ranks"],
                "replicas": r["replicas"],
                "ratio": args.ratio,
                "threads": 1,
            },
            figures={
                "accuracy_pct": 100 * r["accuracy"],
                "proposals_per_s": r["proposals_per_s"],
                "speedup_x": speed,
                "swap_acceptance_pct": (
                    None if r["swap_acceptance"] is None else 100 * r["swap_acceptance"]
                ),
            },
            headline=("accuracy_pct", "proposals_per_s", "speedup_x"),
        )


if __name__ == "__main__":
    main()
