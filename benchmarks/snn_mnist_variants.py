"""Diehl & Cook on MNIST: short runs comparing learning variants by how many neurons learn.

    python benchmarks/snn_mnist_variants.py --data-dir ../shared/datasets --train 4000

Trains 100 neurons on the first ``--train`` training images for each variant (the published
code's rule; with a 50 ms firing lockout; with pair potentiation A2+ = 0.002; the paper's
x_tar rule) and prints the running accuracy estimate at the end (each image classified from
its training response with labels from the 1,000 before it) and the number of "dead"
neurons: receptive fields that are noise, not a digit (correlation < 0.8 between the 28 x 28
weight image and its 3 x 3 box-blurred copy). One table, one JSON line.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

from _record import record
from _threads import limit_loaded, pin_threads, threads_info, threads_line

THREADS = pin_threads(1)

import numpy as np  # noqa: E402

VARIANTS = {
    "code rule": {"rule": "code"},
    "code rule + 50 ms lockout": {"rule": "code", "t_lock_exc": 0.05},
    "code rule + A2+ = 0.002": {"rule": "code+pair"},
    "paper rule (x_tar)": {"rule": "paper"},
}
#: each variant's name in the JSON lines (benchmarks/_record.py)
SLUGS = {
    "code rule": "code-rule",
    "code rule + 50 ms lockout": "code-rule+lockout-50ms",
    "code rule + A2+ = 0.002": "code-rule+a2-plus-0.002",
    "paper rule (x_tar)": "paper-rule",
}


def dead_neurons(weights: np.ndarray, shape: tuple[int, int] = (28, 28)) -> int:
    from scipy.ndimage import uniform_filter

    dead = 0
    for w in weights.astype(np.float64):
        img = w.reshape(shape)
        if np.corrcoef(img.ravel(), uniform_filter(img, 3).ravel())[0, 1] < 0.8:
            dead += 1
    return dead


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default=os.environ.get("NEUROFABRIC_DATA", "../shared/datasets"))
    ap.add_argument("--train", type=int, default=4000)
    ap.add_argument("--neurons", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--threads",
        type=int,
        default=THREADS,
        help="threads for every system (pinned before numpy loads)",
    )
    args = ap.parse_args()

    from neurofabric.data import load_mnist
    from neurofabric.snn.diehl_cook import DiehlCookClassifier

    limit_loaded(THREADS)
    print(f"# {threads_line()}")

    x, y = load_mnist("train", data_dir=args.data_dir)
    x, y = x[: args.train], y[: args.train]
    rows = []
    for name, kw in VARIANTS.items():
        kw = dict(kw)
        rule = kw.pop("rule")
        if rule == "code+pair":
            rule = DiehlCookClassifier.code_rule(0.002)
        clf = DiehlCookClassifier(n_neurons=args.neurons, seed=args.seed, rule=rule, **kw)
        acc: list = []
        t0 = time.perf_counter()
        clf.fit(x, y, label_images=0, callback=lambda p, acc=acc: acc.append(p["accuracy"]))
        rows.append(
            {
                "variant": name,
                "running_accuracy": acc[-1],
                "dead_neurons": dead_neurons(clf.input_weights_),
                "images_per_s": args.train / (time.perf_counter() - t0),
            }
        )
        print(f"# {rows[-1]}", flush=True)
    print(
        f"\nMachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}"
    )
    print(f"Command: python benchmarks/snn_mnist_variants.py --train {args.train}\n")
    print(f"| variant | running accuracy | dead neurons (of {args.neurons}) | images/s |")
    print("|---|---|---|---|")
    for r in rows:
        # the running accuracy is None until the classifier has seen enough labelled images
        acc = "-" if r["running_accuracy"] is None else f"{r['running_accuracy']:.3f}"
        print(f"| {r['variant']} | {acc} | {r['dead_neurons']} | {r['images_per_s']:.1f} |")
    for r in rows:
        record(
            "snn_mnist_variants",
            "neurofabric",
            variant=SLUGS[r["variant"]],
            workload={
                "dataset": "mnist",
                "description": r["variant"],
                "neurons": args.neurons,
                "train_images": args.train,
                "seed": args.seed,
                "threads": THREADS,
                "thread_pools": threads_info(),
            },
            figures={
                "running_accuracy_frac": r["running_accuracy"],
                "dead_neurons_count": r["dead_neurons"],
                "images_per_s": r["images_per_s"],
            },
            headline=("running_accuracy_frac", "dead_neurons_count"),
        )


if __name__ == "__main__":
    main()
