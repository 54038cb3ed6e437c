"""Text classification: the guard field against fastText, scikit-learn and the PoC's rule.

    python benchmarks/guard_text.py --dataset 20newsgroups --data-dir ../shared/datasets
    python benchmarks/guard_text.py --dataset ag_news --data-dir ../shared/datasets
    (add --threads N for N threads per system; the default is 1)

Side by side, in one run, on the same documents:
  ours          TextGuardClassifier (averaged PA-I, hashed words + idf, n_jobs=1); also
                with C picked from {0.1, 0.3, 1} by an inner 3-fold CV on the training
                documents (the search is part of its training time)
  neuronguard   the same engine with the proof of concept's rule (rule="neuronguard")
  sklearn SGD   HashingVectorizer() + SGDClassifier() with their defaults
  fastText      fasttext-wheel in the peers venv: dim 10, wordNgrams 2 as in its
                classification-example.sh, lr 1.0, 5 and 25 epochs, --threads threads

20 Newsgroups and DBpedia use their canonical splits; AG News uses its canonical split when
train.csv is present, otherwise stratified k-fold cross-validation on the 7,600-row test split
(the same folds for every system).

Threads: every system runs on --threads threads (default 1): numba, OpenBLAS / MKL, OpenMP and
HF tokenizers are pinned before numpy loads (_threads.py), fastText gets thread=--threads, and
our training uses n_jobs=1 (one thread) at any --threads. The pinned counts are printed above
the table and in every JSON line.

What is timed:
  train s       from the raw texts to a fitted model: ours and SGD tokenize, hash and build
                features inside the timed region; fastText reads its training file and hashes
                inside, but normalizing the text (fastText's normalize_text, as its
                classification-example.sh does with sed) and writing the file are outside.
  docs/s, raw text -> label (features_and_predict_docs_per_s): the timed region starts from
                the raw test texts. Ours: clf.predict(texts) (tokenize, hash, idf, field);
                SGD: clf.predict(vec.transform(texts)); fastText: normalize_text (timed here,
                one thread) plus multilinePredict (tokenizes, hashes and predicts inside).
  docs/s, features built -> label (predict_only_docs_per_s): features built before the
                timed region. Ours: guard.predict(events); SGD: clf.predict(X). fastText's
                predict cannot be split (it hashes words and n-grams inside): not reported.
Times are medians (--repeats runs for training, 5 for prediction); numba compiles once before.
Prints a markdown table and one JSON line per system.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _record import record
from _threads import limit_loaded, pin_threads, thread_env, threads_info, threads_line

THREADS = pin_threads()  # before numpy / numba load: their pools size themselves on import

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# classification-example.sh's dim 10 / wordNgrams 2 with lr 1.0 (its lr 0.1 leaves 20 Newsgroups
# near chance in 5 epochs): 5 epochs (fast) and 25 epochs (the accurate setting)
FASTTEXT_BASE = {
    "dim": 10,
    "lr": 1.0,
    "wordNgrams": 2,
    "minCount": 1,
    "bucket": 2_000_000,
}
FASTTEXT_EPOCHS = (5, 25)


def median_time(fn, repeats):
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def rate(fn, n, repeats=5):
    """Documents per second, the median of ``repeats`` timed calls (threads as pinned)."""
    secs, _ = median_time(fn, repeats)
    return n / secs


C_GRID = (0.1, 0.3, 1.0)


def select_c(train, args, inner_folds=3):
    """The PA-I aggressiveness C with the best mean accuracy over an inner stratified k-fold of
    the training documents only (the test documents are never seen)."""
    from sklearn.model_selection import StratifiedKFold

    from neurofabric.guard import TextGuardClassifier

    folds = StratifiedKFold(inner_folds, shuffle=True, random_state=1)
    splits = list(folds.split(np.zeros(len(train)), train.labels))
    scores = {}
    for c in C_GRID:
        accs = []
        for a, b in splits:
            tr, va = train.subset(a), train.subset(b)
            clf = TextGuardClassifier(seed=0, epochs=args.epochs, aggressiveness=c)
            accs.append(clf.fit(tr.texts, tr.labels).score(va.texts, va.labels))
        scores[c] = float(np.mean(accs))
    return max(scores, key=scores.get)


def run_guard(train, test, args, select=False, **params):
    from neurofabric.guard import TextGuardClassifier, saved_bytes

    chosen = []

    def fit():
        extra = {}
        if select:
            chosen.append(select_c(train, args))
            extra["aggressiveness"] = chosen[-1]
        return TextGuardClassifier(seed=0, epochs=args.epochs, **params, **extra).fit(
            train.texts, train.labels
        )

    train_s, clf = median_time(fit, args.repeats)
    events = clf.transform(test.texts)
    acc = float(np.mean(clf.guard.predict(events) == test.labels))
    if not np.array_equal(clf.predict(test.texts), clf.guard.predict(events)):
        raise RuntimeError("predict(texts) and guard.predict(transform(texts)) disagree")
    end_to_end = rate(lambda: clf.predict(test.texts), len(test))
    predict_only = rate(lambda: clf.guard.predict(events), len(test))
    with tempfile.TemporaryDirectory() as tmp:
        size = saved_bytes(clf.save(Path(tmp) / "m"))
        size8 = saved_bytes(clf.save(Path(tmp) / "m8", weights="int8"))
        from neurofabric.guard import TextGuardClassifier as T

        acc8 = float(np.mean(T.load(Path(tmp) / "m8").guard.predict(events) == test.labels))
    out = {
        "accuracy": acc,
        "train_s": train_s,
        "features_and_predict_docs_per_s": end_to_end,
        "predict_only_docs_per_s": predict_only,
        "model_bytes": size,
        "model_bytes_int8": size8,
        "accuracy_int8": acc8,
    }
    if chosen:
        out["chosen_c"] = chosen[-1]
        print(f"#   inner CV chose C = {chosen[-1]}", flush=True)
    return out


def run_sgd(train, test, args):
    from sklearn.feature_extraction.text import HashingVectorizer
    from sklearn.linear_model import SGDClassifier

    vec = HashingVectorizer()

    def fit():
        return SGDClassifier(random_state=0).fit(vec.transform(train.texts), train.labels)

    train_s, clf = median_time(fit, args.repeats)
    Xte = vec.transform(test.texts)
    acc = float(np.mean(clf.predict(Xte) == test.labels))
    end_to_end = rate(lambda: clf.predict(vec.transform(test.texts)), len(test))
    predict_only = rate(lambda: clf.predict(Xte), len(test))
    with tempfile.TemporaryDirectory() as tmp:
        np.savez(Path(tmp) / "sgd.npz", coef=clf.coef_, intercept=clf.intercept_)
        size = (Path(tmp) / "sgd.npz").stat().st_size
    return {
        "accuracy": acc,
        "train_s": train_s,
        "features_and_predict_docs_per_s": end_to_end,
        "predict_only_docs_per_s": predict_only,
        "model_bytes": size,
    }


def normalize_texts(texts) -> list[str]:
    """fastText's normalize_text (classification-example.sh), one line per document."""
    from neurofabric.guard.kernels.reference import tokenize

    return [b" ".join(tokenize(t.encode("utf-8"))).decode("utf-8", "replace") for t in texts]


def fasttext_lines(data, path, shuffle=False):
    # fastText reads its file in order and does not shuffle: a file sorted by class (as the
    # 20 Newsgroups archive is) leaves it near chance, so the lines are shuffled (seeded)
    order = np.random.default_rng(0).permutation(len(data)) if shuffle else range(len(data))
    lines = normalize_texts(data.texts)
    with open(path, "w", encoding="utf-8") as fh:
        for i in order:
            fh.write(f"__label__{data.labels[i]} {lines[i]}\n")


def fasttext_job(train, test, tmp, peers_python, script, threads, **job):
    """Run a fastText peer script of benchmarks/peers in the peers venv on (train, test),
    written to ``tmp`` in fastText's format; its JSON lines, or None if it failed."""
    fasttext_lines(train, Path(tmp) / "train.txt", shuffle=True)
    fasttext_lines(test, Path(tmp) / "test.txt")
    job = {"train": str(Path(tmp) / "train.txt"), "test": str(Path(tmp) / "test.txt"), **job}
    out = subprocess.run(
        [peers_python, str(ROOT / "benchmarks/peers" / script)],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **thread_env(threads)},
    )
    if out.returncode != 0:
        print(f"# fastText failed: {out.stderr.strip()[-500:]}", file=sys.stderr)
        return None
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def run_fasttext(train, test, args, epoch):
    if not args.peers_python or not Path(args.peers_python).exists():
        return None
    with tempfile.TemporaryDirectory() as tmp:
        lines = fasttext_job(
            train,
            test,
            tmp,
            args.peers_python,
            "fasttext_text.py",
            THREADS,
            params={**FASTTEXT_BASE, "epoch": epoch, "thread": THREADS},
            repeats=args.repeats,
        )
    if not lines:
        return None
    r = lines[-1]
    # multilinePredict tokenizes and hashes inside (the peer's predict_docs_per_s); from raw
    # text it also needs normalize_text, timed here on the same texts
    normalize_s, _ = median_time(lambda: normalize_texts(test.texts), 5)
    predict_s = len(test) / r.pop("predict_docs_per_s")
    r.update(
        features_and_predict_docs_per_s=len(test) / (normalize_s + predict_s),
        predict_only_docs_per_s=float("nan"),
        normalize_docs_per_s=len(test) / normalize_s,
        hash_and_predict_docs_per_s=len(test) / predict_s,
    )
    return r


def splits(args):
    from neurofabric.data.text import load_text_dataset

    if args.dataset == "ag_news":
        folder = Path(args.data_dir or os.environ.get("NEUROFABRIC_DATA", "")) / "ag_news"
        if not (folder / "train.csv").is_file():
            from sklearn.model_selection import StratifiedKFold

            data = load_text_dataset("ag_news", "test", data_dir=args.data_dir)
            folds = StratifiedKFold(args.folds, shuffle=True, random_state=0)
            for k, (a, b) in enumerate(folds.split(np.zeros(len(data)), data.labels)):
                yield f"fold {k + 1}/{args.folds}", data.subset(a), data.subset(b)
            return
    yield (
        "canonical split",
        load_text_dataset(args.dataset, "train", data_dir=args.data_dir),
        load_text_dataset(args.dataset, "test", data_dir=args.data_dir),
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--dataset", default="20newsgroups", choices=["20newsgroups", "ag_news", "dbpedia"]
    )
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--aggressiveness", type=float, default=1.0, help="C of our PA-I rule")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--peers-python", default=str(ROOT / ".venv-peers/bin/python"))
    ap.add_argument("--no-fasttext", action="store_true")
    ap.add_argument(
        "--threads", type=int, default=1, help="threads for every system (pinned at start)"
    )
    args = ap.parse_args()

    import numba  # noqa: F401  (loaded now so that its pool is capped with the others)
    import sklearn.linear_model  # noqa: F401

    from neurofabric.guard import TextGuardClassifier

    limit_loaded(THREADS)
    threads = threads_info()

    TextGuardClassifier(n_features=64, epochs=1).fit(["a b", "c d"], [0, 1])  # compile once
    TextGuardClassifier(rule="neuronguard", n_features=64).fit(["a b", "c d"], [0, 1])
    systems = {
        "ours (averaged PA-I)": lambda tr, te: run_guard(
            tr, te, args, aggressiveness=args.aggressiveness
        ),
        "ours, C by inner 3-fold CV": lambda tr, te: run_guard(tr, te, args, select=True),
        "neuronguard rule": lambda tr, te: run_guard(tr, te, args, rule="neuronguard"),
        "sklearn Hashing+SGD": lambda tr, te: run_sgd(tr, te, args),
    }
    # each table row's system (package name), variant and epochs in the JSON lines
    identity = {
        "ours (averaged PA-I)": ("neurofabric", "averaged-pa-i", args.epochs),
        "ours, C by inner 3-fold CV": ("neurofabric", "averaged-pa-i-cv", args.epochs),
        "neuronguard rule": ("neurofabric", "neuronguard", args.epochs),
        "sklearn Hashing+SGD": ("scikit-learn", "hashing-sgd", None),  # SGDClassifier's default
    }
    if not args.no_fasttext:
        for ep in FASTTEXT_EPOCHS:
            systems[f"fastText {ep} epochs"] = lambda tr, te, ep=ep: run_fasttext(tr, te, args, ep)
            identity[f"fastText {ep} epochs"] = ("fasttext", f"{ep}-epochs", ep)
    results: dict[str, list[dict]] = {name: [] for name in systems}
    for label, train, test in splits(args):
        print(f"# {args.dataset} {label}: {len(train):,} train / {len(test):,} test", flush=True)
        for name, fn in systems.items():
            r = fn(train, test)
            if r is not None:
                results[name].append(r)
                print(
                    f"#   {name}: accuracy {r['accuracy']:.4f}, train {r['train_s']:.2f} s",
                    flush=True,
                )
    rows = {
        n: {k: float(np.mean([r[k] for r in rs])) for k in rs[0] if k != "version"}
        for n, rs in results.items()
        if rs
    }
    ref = min(rows[n]["train_s"] for n in rows if n.startswith(("sklearn", "fastText")))
    print(
        f"\n{args.dataset}: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"python {platform.python_version()}, means over {len(results['ours (averaged PA-I)'])} split(s)"
    )
    print(f"{threads_line()} (every system; our training n_jobs=1)")
    print(
        "| system | accuracy | train s | vs faster peer | docs/s, raw text -> label "
        "| docs/s, features built -> label | model bytes |"
    )
    print("|---|---|---|---|---|---|---|")

    def docs(v):
        return "n/a (hashes inside)" if np.isnan(v) else f"{v:,.0f}"

    for name, r in rows.items():
        print(
            f"| {name} | {r['accuracy']:.4f} | {r['train_s']:.2f} | {ref / r['train_s']:.2f}x | "
            f"{docs(r['features_and_predict_docs_per_s'])} | "
            f"{docs(r['predict_only_docs_per_s'])} | {r['model_bytes']:,.0f} |"
        )
    ours = rows["ours (averaged PA-I)"]
    print(
        f"| ours, int8 weights | {ours['accuracy_int8']:.4f} | | | | | {ours['model_bytes_int8']:,.0f} |"
    )
    figure_names = {  # the row's keys, renamed to end with their unit
        "accuracy": "accuracy_frac",
        "train_s": "train_s",
        "features_and_predict_docs_per_s": "features_and_predict_docs_per_s",
        "predict_only_docs_per_s": "predict_only_docs_per_s",
        "normalize_docs_per_s": "normalize_docs_per_s",
        "hash_and_predict_docs_per_s": "hash_and_predict_docs_per_s",
        "model_bytes": "model_bytes",
        "accuracy_int8": "int8_accuracy_frac",
        "model_bytes_int8": "int8_model_bytes",
    }
    for name, r in rows.items():
        system, variant, epochs = identity[name]
        workload = {
            "dataset": args.dataset,
            "splits": len(results[name]),
            "epochs": epochs,
            "threads": THREADS,
            "thread_pools": threads,
        }
        if "chosen_c" in r:
            workload["chosen_c"] = r["chosen_c"]  # mean over the splits
        elif system == "neurofabric" and variant == "averaged-pa-i":
            workload["aggressiveness"] = args.aggressiveness
        record(
            "guard_text",
            system,
            variant=variant,
            workload=workload,
            figures={
                **{figure_names[k]: v for k, v in r.items() if k in figure_names},
                "train_speedup_x": ref / r["train_s"],
            },
            headline=("accuracy_frac", "train_s", "features_and_predict_docs_per_s"),
        )


if __name__ == "__main__":
    main()
