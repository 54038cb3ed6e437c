"""Small text models: accuracy against size on disk, ours compressed against fastText.zip.

    python benchmarks/guard_size.py --dataset 20newsgroups --data-dir ../shared/datasets
    python benchmarks/guard_size.py --dataset ag_news --data-dir ../shared/datasets
    (--quick: fewer budgets and cutoffs; --out DIR: where the plot goes)

Side by side, in one run, on the same documents (one thread each):
  ours full     TextGuardClassifier(epochs=5, seed=0) saved as float32 and as int8
  ours NB       neurofabric.guard.compress(..., max_bytes=NB, bits=4 or 2, retrained on the
                training texts): pruned inputs, 4/2-bit rows; its size is the saved folder's
  fastText.zip  fastText supervised (dim 10, wordNgrams 2, lr 1.0, 25 epochs, the accurate
                setting of guard_text.py) then `quantize` (cutoff K words and n-grams of largest
                norm, retrain, qnorm, dsub 2), the .ftz file's size; and ours compressed to the
                same size as each .ftz (max_bytes = its size: "equal size")

20 Newsgroups uses its canonical split; AG News (only its 7,600-row test split is here) uses
stratified 5-fold cross-validation, the same folds for every system; figures are means.

Also measured: the load time of the smallest model (TextGuardClassifier.load with checksums
verified), in a fresh process with the library imported and one other model already loaded:
cold = its files evicted from the page cache first (posix_fadvise DONTNEED), warm = the median
of 50 loads after. Prints a markdown table and one JSON line per model, and saves the
accuracy-against-size plot.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _record import record
from _threads import pin_threads, thread_env

THREADS = pin_threads(1)

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
FASTTEXT = {"dim": 10, "lr": 1.0, "wordNgrams": 2, "minCount": 1, "bucket": 2_000_000, "epoch": 25}
BUDGETS = (1_000_000, 300_000, 100_000, 30_000, 10_000)
CUTOFFS = (1_000, 5_000, 20_000, 100_000)

LOAD_PROBE = r"""
import json, os, sys, time
import numpy as np
from neurofabric.guard import TextGuardClassifier
path, other = sys.argv[1], sys.argv[2]
TextGuardClassifier.load(other)  # imports, first-call costs: paid on another model
for name in os.listdir(path):
    fd = os.open(os.path.join(path, name), os.O_RDONLY)
    os.fsync(fd)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)
t = time.perf_counter()
TextGuardClassifier.load(path)
cold = time.perf_counter() - t
warm = []
for _ in range(50):
    t = time.perf_counter()
    TextGuardClassifier.load(path)
    warm.append(time.perf_counter() - t)
print(json.dumps({"cold_ms": cold * 1e3, "warm_ms": float(np.median(warm)) * 1e3}))
"""


def splits(args):
    from neurofabric.data.text import load_text_dataset

    if args.dataset == "20newsgroups":
        yield (
            "canonical split",
            load_text_dataset("20newsgroups", "train", data_dir=args.data_dir),
            load_text_dataset("20newsgroups", "test", data_dir=args.data_dir),
        )
        return
    import guard_text

    yield from guard_text.splits(argparse.Namespace(**{**vars(args), "folds": args.folds}))


def fasttext_models(train, test, args, cutoffs, tmp):
    """fastText full then quantized at each cutoff: [{cutoff, bytes, accuracy}, ...]."""
    import guard_text

    if not Path(args.peers_python).exists():
        print("# fastText skipped: no peers venv (make peers)", file=sys.stderr)
        return []
    lines = guard_text.fasttext_job(
        train,
        test,
        tmp,
        args.peers_python,
        "fasttext_quantize.py",
        THREADS,
        params={**FASTTEXT, "thread": THREADS},
        cutoffs=list(cutoffs),
        qnorm=True,
        retrain=True,
    )
    return lines or []


def ours(train, test, args, budgets, tmp):
    from neurofabric.guard import TextGuardClassifier, compress, saved_bytes

    t = time.perf_counter()
    clf = TextGuardClassifier(epochs=5, seed=0).fit(train.texts, train.labels)
    train_s = time.perf_counter() - t
    rows = {}
    for weights in ("float32", "int8"):
        path = clf.save(Path(tmp) / f"full-{weights}", weights=weights)
        rows[("full", weights)] = {
            "bytes": saved_bytes(path),
            "accuracy": clf.score(test.texts, test.labels),
            "features": clf.featurizer_.n_inputs,
            "seconds": train_s,
            "path": str(path),
        }
        if weights == "int8":
            back = TextGuardClassifier.load(path)
            rows[("full", weights)]["accuracy"] = back.score(test.texts, test.labels)
    for budget, bits in budgets:
        t = time.perf_counter()
        small = compress(
            clf, max_bytes=int(budget), bits=bits, texts=train.texts, labels=train.labels
        )
        seconds = time.perf_counter() - t
        path = small.save(Path(tmp) / f"small-{budget}-{bits}")
        back = TextGuardClassifier.load(path)  # what is measured is what was saved
        rows[(int(budget), bits)] = {
            "bytes": saved_bytes(path),
            "accuracy": back.score(test.texts, test.labels),
            "features": back.featurizer_.n_inputs,
            "seconds": seconds,
            "path": str(path),
        }
        print(
            f"#   ours <= {budget:,} B, {bits}-bit: {rows[(int(budget), bits)]['bytes']:,} B, "
            f"accuracy {rows[(int(budget), bits)]['accuracy']:.4f}",
            flush=True,
        )
    return rows


def load_times(path, other):
    out = subprocess.run(
        [sys.executable, "-c", LOAD_PROBE, path, other],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **thread_env(THREADS)},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def plot(rows_ours, rows_ft, full_acc, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.2))
    for bits, marker in ((4, "o"), (2, "s")):
        pts = sorted((r["bytes"], r["accuracy"]) for k, r in rows_ours.items() if k[1] == bits)
        if pts:
            ax.plot(*zip(*pts, strict=True), marker=marker, label=f"ours, {bits}-bit rows")
    eq = sorted((r["bytes"], r["accuracy"]) for k, r in rows_ours.items() if k[1] == "ftz-size")
    if eq:
        ax.plot(
            *zip(*eq, strict=True), "^", ms=9, mfc="none", color="k", label="ours at each .ftz size"
        )
    ft = sorted((r["bytes"], r["accuracy"]) for r in rows_ft if r["cutoff"] is not None)
    if ft:
        ax.plot(*zip(*ft, strict=True), marker="D", color="C3", label="fastText.zip (.ftz)")
    ax.axhline(full_acc, color="grey", ls="--", lw=1, label="ours, full model")
    ax.axhline(full_acc - 0.01, color="grey", ls=":", lw=1, label="full - 1 point")
    ax.axhline(full_acc - 0.05, color="grey", ls="-.", lw=1, label="full - 5 points")
    ax.set_xscale("log")
    ax.set_xlabel("model size on disk (bytes)")
    ax.set_ylabel("test accuracy")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def mean_rows(per_split):
    """Rows of every split merged by key: the mean of each number."""
    keys = per_split[0].keys()
    return {
        k: {f: float(np.mean([s[k][f] for s in per_split])) for f in ("bytes", "accuracy")}
        | {"features": float(np.mean([s[k]["features"] for s in per_split]))}
        for k in keys
        if all(k in s for s in per_split)
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--dataset", default="20newsgroups", choices=["20newsgroups", "ag_news"])
    ap.add_argument("--data-dir", default=os.environ.get("NEUROFABRIC_DATA"))
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--peers-python", default=str(ROOT / ".venv-peers/bin/python"))
    ap.add_argument("--no-fasttext", action="store_true")
    ap.add_argument("--quick", action="store_true", help="2 budgets, 2 cutoffs, 2 folds")
    ap.add_argument("--out", default="bench-output", help="folder for the plot (git-ignored)")
    args = ap.parse_args()
    if args.data_dir is None:
        args.data_dir = str(ROOT.parent / "shared" / "datasets")
    budgets = BUDGETS[::2] if args.quick else BUDGETS
    cutoffs = CUTOFFS[1:3] if args.quick else CUTOFFS
    if args.quick:
        args.folds = 2
    if args.no_fasttext:
        cutoffs = ()

    from neurofabric.guard import TextGuardClassifier

    TextGuardClassifier(n_features=64, epochs=1).fit(["a b", "c d"], [0, 1])  # compile once
    per_split_ours, per_split_ft, load = [], [], None
    for label, train, test in splits(args):
        print(f"# {args.dataset} {label}: {len(train):,} train / {len(test):,} test", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            ft = fasttext_models(train, test, args, cutoffs, tmp)
            for r in ft:
                print(f"#   fastText cutoff {r['cutoff']}: {r['bytes']:,} B, {r['accuracy']:.4f}")
            wanted = [(b, bits) for b in budgets for bits in (4, 2)]
            rows = ours(train, test, args, wanted, tmp)
            for r in ft:  # ours at exactly each .ftz's size
                if r["cutoff"] is None:
                    continue
                key = (r["bytes"], 4)
                if key not in rows:
                    rows.update(ours_at(train, test, r["bytes"], rows, tmp))
                rows[(r["cutoff"], "ftz-size")] = dict(rows[key], ftz_bytes=r["bytes"])
            if load is None:
                smallest = min((r for k, r in rows.items() if k[0] != "full"), key=_bytes)
                load = load_times(smallest["path"], rows[("full", "float32")]["path"])
                load["bytes"] = smallest["bytes"]
            per_split_ours.append(rows)
            per_split_ft.append({r["cutoff"]: r for r in ft})
    report(args, per_split_ours, per_split_ft, load, budgets, cutoffs)


def _bytes(r):
    return r["bytes"]


def ours_at(train, test, budget, rows, tmp):
    """Ours compressed to ``budget`` bytes (4-bit), from the full model already trained."""
    from neurofabric.guard import TextGuardClassifier, compress, saved_bytes

    clf = TextGuardClassifier.load(rows[("full", "float32")]["path"])
    t = time.perf_counter()
    small = compress(clf, max_bytes=int(budget), bits=4, texts=train.texts, labels=train.labels)
    seconds = time.perf_counter() - t
    path = small.save(Path(tmp) / f"eq-{budget}")
    back = TextGuardClassifier.load(path)
    return {
        (int(budget), 4): {
            "bytes": saved_bytes(path),
            "accuracy": back.score(test.texts, test.labels),
            "features": back.featurizer_.n_inputs,
            "seconds": seconds,
            "path": str(path),
        }
    }


def report(args, per_split_ours, per_split_ft, load, budgets, cutoffs) -> None:
    rows = mean_rows(per_split_ours)
    ft_rows = []
    if per_split_ft and per_split_ft[0]:
        for cutoff in per_split_ft[0]:
            vals = [s[cutoff] for s in per_split_ft if cutoff in s]
            ft_rows.append(
                {
                    "cutoff": cutoff,
                    "bytes": float(np.mean([v["bytes"] for v in vals])),
                    "accuracy": float(np.mean([v["accuracy"] for v in vals])),
                }
            )
    full = rows[("full", "float32")]
    n = len(per_split_ours)
    print(f"\n{args.dataset}: means over {n} split(s), one thread per system")
    print("| system | budget | bytes on disk | inputs kept | accuracy | vs full (points) |")
    print("|---|---|---|---|---|---|")

    def line(system, budget, r):
        print(
            f"| {system} | {budget} | {r['bytes']:,.0f} | {r['features']:,.0f} | "
            f"{r['accuracy']:.4f} | {100 * (r['accuracy'] - full['accuracy']):+.2f} |"
        )

    line("ours, full, float32", "", full)
    line("ours, full, int8", "", rows[("full", "int8")])
    for budget in budgets:
        for bits in (4, 2):
            if (int(budget), bits) in rows:
                line(f"ours, {bits}-bit rows", f"<= {budget:,}", rows[(int(budget), bits)])
    for r in ft_rows:
        name = "fastText, full" if r["cutoff"] is None else f"fastText.zip, cutoff {r['cutoff']:,}"
        print(
            f"| {name} | | {r['bytes']:,.0f} | | {r['accuracy']:.4f} | "
            f"{100 * (r['accuracy'] - full['accuracy']):+.2f} |"
        )
        if r["cutoff"] is not None and (r["cutoff"], "ftz-size") in rows:
            line(
                "ours at that .ftz size, 4-bit",
                f"<= {r['bytes']:,.0f}",
                rows[(r["cutoff"], "ftz-size")],
            )
    print("\nGoals:")
    best = {}
    for budget, points in ((1_000_000, 1), (100_000, 5)):
        cands = [r for k, r in rows.items() if k[0] == budget and k[1] in (4, 2)]
        if cands:
            b = max(cands, key=lambda r: r["accuracy"])
            best[budget] = b
            gap = 100 * (full["accuracy"] - b["accuracy"])
            print(
                f"- <= {budget:,} B within {points} point(s) of the full model: {gap:.2f} points "
                f"({'met' if gap <= points else 'NOT met'})"
            )
    for r in ft_rows:
        if r["cutoff"] is not None and (r["cutoff"], "ftz-size") in rows:
            o = rows[(r["cutoff"], "ftz-size")]
            print(
                f"- at {r['bytes']:,.0f} B (fastText cutoff {r['cutoff']:,}): ours "
                f"{o['accuracy']:.4f} vs fastText.zip {r['accuracy']:.4f} "
                f"({'ahead' if o['accuracy'] > r['accuracy'] else 'NOT ahead'})"
            )
    if load:
        print(
            f"- load time of the smallest model ({load['bytes']:,} B): cold "
            f"{load['cold_ms']:.2f} ms, warm {load['warm_ms']:.3f} ms (goal < 1 ms)"
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    png = out / f"guard_size_{args.dataset}.png"
    plot(rows, ft_rows, full["accuracy"], png, f"{args.dataset}: accuracy against size")
    print(f"\nplot: {png}")
    workload = {"dataset": args.dataset, "splits": n, "threads": THREADS}
    for key, r in rows.items():
        if key[1] == "ftz-size":
            continue
        variant = f"full-{key[1]}" if key[0] == "full" else f"compressed-int{key[1]}"
        figures = {
            "model_bytes": r["bytes"],
            "inputs_count": r["features"],
            "accuracy_frac": r["accuracy"],
            "vs_full_pct": 100 * (r["accuracy"] - full["accuracy"]),
        }
        wl = dict(workload, **({} if key[0] == "full" else {"max_bytes": key[0]}))
        if load and key[0] != "full" and r["bytes"] == load["bytes"]:
            figures.update(load_cold_ms=load["cold_ms"], load_warm_ms=load["warm_ms"])
        record(
            "guard_size",
            "neurofabric",
            variant=variant,
            workload=wl,
            figures=figures,
            headline=("model_bytes", "accuracy_frac"),
        )
    for r in ft_rows:
        figures = {
            "model_bytes": r["bytes"],
            "accuracy_frac": r["accuracy"],
            "vs_full_pct": 100 * (r["accuracy"] - full["accuracy"]),
        }
        ours_eq = rows.get((r["cutoff"], "ftz-size"))
        if ours_eq:
            figures.update(
                ours_model_bytes=ours_eq["bytes"],
                ours_accuracy_frac=ours_eq["accuracy"],
                ours_minus_fasttext_pct=100 * (ours_eq["accuracy"] - r["accuracy"]),
            )
        record(
            "guard_size",
            "fasttext",
            variant="full" if r["cutoff"] is None else "quantize",
            workload=dict(workload, cutoff=r["cutoff"], **{"dim": FASTTEXT["dim"]}),
            figures=figures,
            headline=("model_bytes", "accuracy_frac"),
        )


if __name__ == "__main__":
    main()
