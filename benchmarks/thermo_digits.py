"""Gradient-free training on scikit-learn's digits: Metropolis-Hastings with topology moves
(neurofabric) against plain simulated annealing without topology moves (the same engine, birth
and death off, no connection cost) and backprop (scikit-learn's MLPClassifier with Adam) on
the same 64-32-10 network and the same stratified 75/25 split, in one run.

Also measures proposal throughput: the compiled incremental-dE kernel against the numpy
reference that recomputes the network for every proposal, on the full training set and on
a 256-sample minibatch.

Prints markdown tables and one JSON line per row.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

from _record import record
from _threads import limit_loaded, pin_threads, threads_info, threads_line

THREADS = pin_threads(1)
# each row's (system, variant)
SYSTEMS = {
    "neurofabric": ("neurofabric", "mh-topology"),
    "neurofabric (plain SA)": ("neurofabric", "plain-sa"),
    "scikit-learn MLP (Adam)": ("scikit-learn", "mlp-adam"),
}

import numpy as np  # noqa: E402


def fit_ours(Xtr, ytr, seed, args, topology=True):
    from neurofabric.thermo import Geometric, Moves, ThermoClassifier

    if topology:
        extra = dict(lambda_l0=args.lambda_l0, lambda_l1=args.lambda_l1, w_prune=args.w_prune)
    else:
        extra = dict(moves=Moves(weight=0.95, bias=0.05, birth=0.0, death=0.0))
    m = ThermoClassifier(
        hidden=(args.hidden,),
        n_proposals=args.proposals,
        generation=20_000,
        schedule=Geometric(args.t_start, args.t_end),
        seed=seed,
        w_max=args.w_max,
        **extra,
    )
    t = time.perf_counter()
    m.fit(Xtr, ytr)
    return m, time.perf_counter() - t


def run_seeds(name, fn, seeds, Xte, yte):
    rows = []
    for seed in seeds:
        model, secs = fn(seed)
        acc = model.score(Xte, yte)
        sparsity = model.fabric_.sparsity if hasattr(model, "fabric_") else 0.0
        rows.append({"seed": seed, "accuracy": acc, "train_s": secs, "sparsity": sparsity})
        print(
            f"#   {name} seed {seed}: accuracy {acc:.4f}, {secs:.1f} s, sparsity {sparsity:.3f}",
            flush=True,
        )
    return rows


def throughput(Xtr, ytr, batch, kernels, n, repeats):
    from neurofabric.thermo.chain import Chain, EnergySpec
    from neurofabric.thermo.fabric import NeuralFabric
    from neurofabric.thermo.params import Moves

    fab = NeuralFabric.layered([64, 32, 10], seed=0)
    ch = Chain(fab, EnergySpec(lambda_l0=2.0, lambda_l1=0.5, w_prune=0.05), kernels)
    idx = np.random.default_rng(0).choice(len(Xtr), batch, replace=False) if batch else slice(None)
    ch.set_batch(Xtr[idx], ytr[idx], 1.0)
    ch.refresh(patience=0, floor=0.1)
    cum = Moves().cumulative()
    sigma = np.array([0.05, 0.05, 0.0, 0.0, 0.002])
    rng = np.random.default_rng(1)
    ch.run(min(n, 2000), temperature=0.05, move_cum=cum, sigma=sigma, rng=rng)  # warm-up / JIT
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        ch.run(n, temperature=0.05, move_cum=cum, sigma=sigma, rng=rng)
        rates.append(n / (time.perf_counter() - t))
    return statistics.median(rates)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--proposals", type=int, default=600_000)
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--lambda-l0", type=float, default=2.0)
    ap.add_argument("--lambda-l1", type=float, default=0.5)
    ap.add_argument("--w-prune", type=float, default=0.05)
    ap.add_argument("--w-max", type=float, default=2.0)
    ap.add_argument("--t-start", type=float, default=1.0)
    ap.add_argument("--t-end", type=float, default=0.005)
    ap.add_argument("--skip", default="", help="comma list of rows to skip: sa,mlp,throughput")
    ap.add_argument(
        "--threads",
        type=int,
        default=THREADS,
        help="threads for every system (pinned before numpy loads)",
    )
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))

    from sklearn.neural_network import MLPClassifier

    from neurofabric.data import load_digits_split
    from neurofabric.thermo.kernels import numba_cpu, reference

    limit_loaded(THREADS)
    Xtr, Xte, ytr, yte = load_digits_split()
    seeds = list(range(args.seeds))
    print(
        f"# digits {len(Xtr)} train / {len(Xte)} test, 64-{args.hidden}-10, {len(seeds)} seeds; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
        f"NEUROFABRIC_THREADS={os.environ.get('NEUROFABRIC_THREADS', '')}"
    )
    print(f"# {threads_line()} (scikit-learn's BLAS included)")
    results = {}
    results["neurofabric"] = run_seeds(
        "MH + topology", lambda s: fit_ours(Xtr, ytr, s, args), seeds, Xte, yte
    )
    if "sa" not in skip:
        results["neurofabric (plain SA)"] = run_seeds(
            "plain SA", lambda s: fit_ours(Xtr, ytr, s, args, topology=False), seeds, Xte, yte
        )
    if "mlp" not in skip:

        def mlp(seed):
            m = MLPClassifier(
                hidden_layer_sizes=(args.hidden,), solver="adam", max_iter=1000, random_state=seed
            )
            t = time.perf_counter()
            m.fit(Xtr, ytr)
            return m, time.perf_counter() - t

        results["scikit-learn MLP (Adam)"] = run_seeds("backprop", mlp, seeds, Xte, yte)
    print(
        "\n| system | test accuracy (median; min-max) | train s (median) | connections pruned | proposals |"
    )
    print("|---|---|---|---|---|")
    for system, rows in results.items():
        acc = [r["accuracy"] for r in rows]
        secs = statistics.median(r["train_s"] for r in rows)
        sp = statistics.median(r["sparsity"] for r in rows)
        props = f"{args.proposals:,}" if system.startswith("neurofabric") else "(gradients)"
        print(
            f"| {system} | {statistics.median(acc):.4f} ({min(acc):.4f}-{max(acc):.4f}) | {secs:.1f} | {sp:.1%} | {props} |"
        )
    for system, rows in results.items():
        name, variant = SYSTEMS[system]
        acc = [r["accuracy"] for r in rows]
        record(
            "thermo_digits",
            name,
            variant=variant,
            workload={
                "part": "training",
                "dataset": "digits",
                "model": f"64-{args.hidden}-10",
                "seeds": len(rows),
                "proposals": args.proposals if name == "neurofabric" else None,
                "accuracy_runs": [round(a, 4) for a in acc],
                "threads": THREADS,
                "thread_pools": threads_info(),
            },
            figures={
                "accuracy_frac": round(statistics.median(acc), 4),
                "accuracy_min_frac": round(min(acc), 4),
                "accuracy_max_frac": round(max(acc), 4),
                "train_s": round(statistics.median(r["train_s"] for r in rows), 2),
                "sparsity_frac": round(statistics.median(r["sparsity"] for r in rows), 4),
            },
            headline=("accuracy_frac", "train_s"),
        )
    if "throughput" in skip:
        return
    print("\n| kernel | samples per energy | proposals/s (median of 5) | vs reference |")
    print("|---|---|---|---|")
    for label, batch in (("full training set", None), ("minibatch", 256)):
        fast = throughput(Xtr, ytr, batch, numba_cpu, 100_000, 5)
        ref = throughput(Xtr, ytr, batch, reference, 100, 3)
        n = batch or len(Xtr)
        print(f"| numba incremental dE | {n} ({label}) | {fast:,.0f} | {fast / ref:,.0f}x |")
        print(f"| numpy full recompute (reference) | {n} ({label}) | {ref:,.1f} | 1x |")
        workload = {
            "part": "throughput",
            "dataset": "digits",
            "model": "64-32-10",
            "size": n,
            "threads": THREADS,
            "thread_pools": threads_info(),
        }
        record(
            "thermo_digits",
            "neurofabric",
            variant="numba",
            workload=workload,
            figures={"proposals_per_s": round(fast), "speedup_x": fast / ref},
            headline=("proposals_per_s", "speedup_x"),
        )
        record(
            "thermo_digits",
            "neurofabric",
            variant="numpy-reference",
            workload=workload,
            figures={"proposals_per_s": round(ref, 1)},
        )


if __name__ == "__main__":
    main()
