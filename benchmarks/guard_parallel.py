"""Training the guard classifier on 2 threads: parameter mixing and Hogwild against sequential.

    python benchmarks/guard_parallel.py --data-dir ../shared/datasets [--seeds 6] [--threads 2]

On 20 Newsgroups (features built once, before any timed region) and on scikit-learn's digits
(dense: every pixel an event), each configuration is fitted with several seeds (the seed
shuffles the sample order):
  sequential       GuardClassifier(n_jobs=1): one thread
  mixing           n_jobs=2, parallel="mixing" (the default: mix="sum", mix_rounds=2)
  mixing, 1 round  mix_rounds=1 (less mixing: faster, less accurate)
  mixing, changed  mix="changed", 1 and 2 rounds (each weight moves by the mean change of
                   the threads that moved it: more accurate, more updates)
  mixing, mean     mix="mean", mix_rounds=1 (McDonald et al.'s uniform mixing)
  Hogwild          n_jobs=2, parallel="hogwild" (shared weights, no locks)
Reported: test accuracy (mean and sd over seeds), the gap to sequential in points, fit time
from built features (median) and the time of one epoch (median over epochs 2..E of every
seed), each with its speedup over sequential measured in the same run.
Goal (issue 24): 2 threads within 0.2 points of sequential and >= 1.7x faster.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from _record import record
from _threads import limit_loaded, pin_threads, threads_line

THREADS = pin_threads(2)

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {
    "sequential": {"n_jobs": 1},
    "mixing": {"n_jobs": 2},
    "mixing, 1 round": {"n_jobs": 2, "mix_rounds": 1},
    "mixing, changed": {"n_jobs": 2, "mix": "changed", "mix_rounds": 1},
    "mixing, changed, 2 rounds": {"n_jobs": 2, "mix": "changed", "mix_rounds": 2},
    "mixing, mean": {"n_jobs": 2, "mix": "mean", "mix_rounds": 1},
    "Hogwild": {"n_jobs": 2, "parallel": "hogwild"},
}
VARIANTS = {
    "sequential": "sequential",
    "mixing": "mixing-sum-2",
    "mixing, 1 round": "mixing-sum-1",
    "mixing, changed": "mixing-changed-1",
    "mixing, changed, 2 rounds": "mixing-changed-2",
    "mixing, mean": "mixing-mean-1",
    "Hogwild": "hogwild",
}


def data(args):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from neurofabric.data.text import load_text_dataset
    from neurofabric.guard import TextFeaturizer

    train = load_text_dataset("20newsgroups", "train", data_dir=args.data_dir)
    test = load_text_dataset("20newsgroups", "test", data_dir=args.data_dir)
    feat = TextFeaturizer()  # TextGuardClassifier's default front end
    events = feat.fit_transform(train.texts)
    yield "20newsgroups", events, train.labels, feat.transform(test.texts), test.labels
    x, y = load_digits(return_X_y=True)
    xtr, xte, ytr, yte = train_test_split(x / 16.0, y, test_size=0.3, random_state=0)
    yield "digits (dense)", xtr, ytr, xte, yte


def run(name, params, xtr, ytr, xte, yte, seeds, epochs):
    from neurofabric.guard import GuardClassifier

    acc, fit_s, epoch_s = [], [], []
    for seed in range(seeds):
        clf = GuardClassifier(epochs=epochs, seed=seed, **params)
        t = time.perf_counter()
        clf.fit(xtr, ytr)
        fit_s.append(time.perf_counter() - t)
        epoch_s += [h["seconds"] for h in clf.history_[1:]]
        acc.append(clf.score(xte, yte))
    return {
        "accuracy": float(np.mean(acc)),
        "accuracy_sd": float(np.std(acc)),
        "fit_s": statistics.median(fit_s),
        "epoch_s": statistics.median(epoch_s),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data-dir", default=os.environ.get("NEUROFABRIC_DATA"))
    ap.add_argument("--seeds", type=int, default=6)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2, help="numba threads (pinned at start)")
    ap.add_argument("--quick", action="store_true", help="2 seeds")
    args = ap.parse_args()
    if args.data_dir is None:
        args.data_dir = str(ROOT.parent / "shared" / "datasets")
    seeds = 2 if args.quick else args.seeds

    import numba

    from neurofabric.guard import GuardClassifier

    limit_loaded(THREADS)
    GuardClassifier(epochs=1, n_jobs=2).fit(np.eye(4), [0, 1, 2, 3])  # compile once
    print(f"{threads_line()}; {seeds} seeds, {args.epochs} epochs, numba {numba.__version__}")
    for dataset, xtr, ytr, xte, yte in data(args):
        rows = {}
        for name, params in CONFIGS.items():
            rows[name] = run(name, params, xtr, ytr, xte, yte, seeds, args.epochs)
            print(f"# {dataset} {name}: {rows[name]}", flush=True)
        seq = rows["sequential"]
        print(f"\n{dataset}: {len(ytr):,} train / {len(yte):,} test")
        print(
            "| training | accuracy (mean +- sd) | vs sequential (points) | fit s | fit speedup "
            "| epoch ms | epoch speedup |"
        )
        print("|---|---|---|---|---|---|---|")
        for name, r in rows.items():
            gap = 100 * (r["accuracy"] - seq["accuracy"])
            print(
                f"| {name} | {r['accuracy']:.4f} +- {r['accuracy_sd']:.4f} | {gap:+.2f} | "
                f"{r['fit_s']:.3f} | {seq['fit_s'] / r['fit_s']:.2f}x | "
                f"{1e3 * r['epoch_s']:.1f} | {seq['epoch_s'] / r['epoch_s']:.2f}x |"
            )
            record(
                "guard_parallel",
                "neurofabric",
                variant=VARIANTS[name],
                workload={
                    "dataset": dataset,
                    "seeds": seeds,
                    "epochs": args.epochs,
                    "threads": THREADS,
                    **{k: v for k, v in CONFIGS[name].items() if k == "n_jobs"},
                },
                figures={
                    "accuracy_frac": r["accuracy"],
                    "accuracy_sd_frac": r["accuracy_sd"],
                    "vs_sequential_pct": gap,
                    "fit_s": r["fit_s"],
                    "fit_speedup_x": seq["fit_s"] / r["fit_s"],
                    "epoch_ms": 1e3 * r["epoch_s"],
                    "epoch_speedup_x": seq["epoch_s"] / r["epoch_s"],
                },
                headline=("accuracy_frac", "vs_sequential_pct", "epoch_speedup_x"),
            )


if __name__ == "__main__":
    main()
