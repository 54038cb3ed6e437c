"""Gradient-free training on MNIST (784-128-10): Metropolis-Hastings with topology moves
(neurofabric) against plain simulated annealing without topology moves (the same engine, birth
and death off) and backprop (scikit-learn's MLPClassifier, Adam) on the same network, in one
run, each MH run under the same wall-clock budget. Pixels scaled to [0, 1]; the canonical
60,000 / 10,000 split. Prints a markdown table and one JSON line per row.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

from _record import record
from _threads import limit_loaded, pin_threads, threads_info, threads_line

THREADS = pin_threads(1)
# each row's (system, variant)
SYSTEMS = {
    "neurofabric": ("neurofabric", "mh-topology"),
    "neurofabric (plain SA)": ("neurofabric", "plain-sa"),
    "scikit-learn MLP (Adam, 30 epochs)": ("scikit-learn", "mlp-adam"),
}

import numpy as np  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", default=os.environ.get("NEUROFABRIC_DATA", "../shared/datasets"))
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--max-time", type=float, default=1800.0, help="seconds per MH run")
    ap.add_argument("--proposals", type=int, default=2_000_000_000, help="upper bound")
    ap.add_argument("--batch-size", type=int, default=5000)
    ap.add_argument("--generation", type=int, default=20_000)
    ap.add_argument("--lambda-l0", type=float, default=1.0)
    ap.add_argument("--lambda-l1", type=float, default=0.5)
    ap.add_argument("--w-prune", type=float, default=0.05)
    ap.add_argument("--w-max", type=float, default=1.0)
    ap.add_argument("--t-start", type=float, default=1.0)
    ap.add_argument("--t-end", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip", default="", help="comma list of rows to skip: sa,mlp")
    ap.add_argument("--save", default=None, help="save our model here")
    ap.add_argument("--plot", default=None, help="write our training history PNG here")
    ap.add_argument(
        "--threads",
        type=int,
        default=THREADS,
        help="threads for every system (pinned before numpy loads)",
    )
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))

    from neurofabric.data import load_classification
    from neurofabric.thermo import Geometric, Moves, ThermoClassifier, plot_history

    limit_loaded(THREADS)
    Xtr, Xte, ytr, yte = load_classification(args.dataset, data_dir=args.data_dir)
    print(
        f"# {args.dataset} {len(Xtr)} train / {len(Xte)} test, 784-{args.hidden}-10; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
        f"NEUROFABRIC_THREADS={os.environ.get('NEUROFABRIC_THREADS', '')}",
        flush=True,
    )
    print(f"# {threads_line()} (scikit-learn's BLAS included)", flush=True)
    rows = []

    def mh(name, **extra):
        sched = Geometric(args.t_start, args.t_end)

        def cb(p):
            if p["generation"] % 20 == 0:
                r = p.metrics
                print(
                    f"#   {name}: {r['proposals']:,} proposals, {r['seconds']:.0f} s, T={r['temperature']:.3g}, "
                    f"batch acc {r['train_accuracy']:.3f}, sparsity {r['sparsity']:.3f}",
                    flush=True,
                )

        m = ThermoClassifier(
            hidden=(args.hidden,),
            n_proposals=args.proposals,
            generation=args.generation,
            batch_size=args.batch_size,
            schedule=sched,
            max_time=args.max_time,
            seed=args.seed,
            w_max=args.w_max,
            **extra,
        )
        t = time.perf_counter()
        m.fit(Xtr, ytr, callback=cb)
        secs = time.perf_counter() - t
        acc = m.score(Xte, yte)
        rows.append(
            {
                "system": name,
                "accuracy": acc,
                "train_s": secs,
                "sparsity": m.fabric_.sparsity,
                "proposals": m.n_proposals_done_,
                "proposals_per_s": m.n_proposals_done_ / secs,
            }
        )
        print(
            f"#   {name}: accuracy {acc:.4f} in {secs:.0f} s, sparsity {m.fabric_.sparsity:.3f}",
            flush=True,
        )
        return m

    ours = mh(
        "neurofabric", lambda_l0=args.lambda_l0, lambda_l1=args.lambda_l1, w_prune=args.w_prune
    )
    if args.save:
        ours.save(args.save)
    if args.plot:
        plot_history(ours.history_, args.plot, title=f"{args.dataset} 784-{args.hidden}-10, MH")
    if "sa" not in skip:
        mh("neurofabric (plain SA)", moves=Moves(weight=0.95, bias=0.05, birth=0.0, death=0.0))
    if "mlp" not in skip:
        from sklearn.neural_network import MLPClassifier

        m = MLPClassifier(
            hidden_layer_sizes=(args.hidden,), solver="adam", max_iter=30, random_state=args.seed
        )
        t = time.perf_counter()
        m.fit(Xtr, ytr)
        secs = time.perf_counter() - t
        rows.append(
            {
                "system": "scikit-learn MLP (Adam, 30 epochs)",
                "accuracy": float(m.score(Xte, yte)),
                "train_s": secs,
                "sparsity": 0.0,
                "proposals": 0,
                "proposals_per_s": 0.0,
            }
        )
    print("\n| system | test accuracy | train s | connections pruned | proposals (per s) |")
    print("|---|---|---|---|---|")
    for r in rows:
        props = (
            f"{r['proposals']:,} ({r['proposals_per_s']:,.0f})" if r["proposals"] else "(gradients)"
        )
        print(
            f"| {r['system']} | {r['accuracy']:.4f} | {r['train_s']:.0f} | {r['sparsity']:.1%} | {props} |"
        )
    for r in rows:
        system, variant = SYSTEMS[r["system"]]
        mh_run = system == "neurofabric"  # the MLP makes no proposals: not measured there
        workload = {"dataset": args.dataset, "model": f"784-{args.hidden}-10", "seed": args.seed}
        if mh_run:
            workload |= {"max_time": args.max_time, "batch_size": args.batch_size}
        else:
            workload["epochs"] = 30
        record(
            "thermo_mnist",
            system,
            variant=variant,
            workload={**workload, "threads": THREADS, "thread_pools": threads_info()},
            figures={
                "accuracy_frac": round(r["accuracy"], 4),
                "train_s": round(r["train_s"], 4),
                "sparsity_frac": round(r["sparsity"], 4),
                "proposals_count": r["proposals"] if mh_run else None,
                "proposals_per_s": round(r["proposals_per_s"], 4) if mh_run else None,
            },
            headline=("accuracy_frac", "train_s"),
        )


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
