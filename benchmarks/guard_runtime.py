"""Streaming the guard classifier: GuardRuntime beside the batch API, on 20 Newsgroups.

    python benchmarks/guard_runtime.py --data-dir ../shared/datasets
    python benchmarks/guard_runtime.py --quick        (2,000 train / 1,000 test documents)
    (--threads N: the most workers / batch-API threads compared; default 2)

TextGuardClassifier(epochs=5, seed=0) is fitted on the training split (numba compiles before
anything is timed). Then, in one run:
  run mode      the test documents are streamed one by one (``submit`` per document, at most
                ``max(256, 4 * workers * batch_size)`` in flight) through GuardRuntime with
                1 and N workers and batch sizes 1 and 32; the labels are checked equal to
                ``clf.predict``. Beside it, the batch API ``clf.predict(all_texts)`` with 1
                and N numba threads (the same cores).
  one at a time a lone document's latency: submit, wait for its label, submit the next
                (1 worker, batch size 1; the closed loop has nothing queued).
  trainer mode  the training documents, in one seeded random order (the split is sorted by
                class), are streamed with their labels through GuardRuntime(mode="train")
                into the saved-and-loaded model (so every row starts from the same state);
                beside it the batch API ``partial_fit`` on the same documents in the same
                order (shuffle=False) with n_jobs = 1 and N. The test accuracy after the pass
                is reported; one worker equals partial_fit with n_jobs=1 exactly.
What is timed: from the first submit to the last result (raw text in, labels out; trainer:
until publish, which computes the averaged field, is done). Latency per document: from
``submit`` to the result being set (``time.perf_counter_ns``). Medians of --repeats runs.
Prints a markdown table and one JSON line per row.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from _record import record
from _threads import limit_loaded, pin_threads, threads_info, threads_line

THREADS = pin_threads(default=2)  # before numpy / numba load: their pools size themselves

import numpy as np  # noqa: E402

BATCHES = (1, 32)


def median_row(runs: list[dict]) -> dict:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def stream_run(clf, texts, expected, workers, batch_size, repeats):
    from neurofabric.guard import GuardRuntime

    runs = []
    for _ in range(repeats):
        with GuardRuntime(clf, workers=workers, batch_size=batch_size) as rt:
            t = time.perf_counter()
            labels = rt.predict_stream(texts)
            secs = time.perf_counter() - t
        if not np.array_equal(np.asarray(labels), expected):
            raise RuntimeError(f"runtime labels differ from clf.predict ({workers} workers)")
        runs.append(stream_row(rt.stats(), len(texts), secs))
    return median_row(runs)


def stream_row(s, n_docs: int, secs: float) -> dict:
    """Rates over the wall time of a streamed run, and its latency percentiles."""
    return {
        "docs_per_s": n_docs / secs,
        "events_per_s": s.events / secs,
        "p50_us": s.p50_us,
        "p99_us": s.p99_us,
    }


def one_at_a_time(clf, texts, repeats):
    from neurofabric.guard import GuardRuntime

    runs = []
    for _ in range(repeats):
        with GuardRuntime(clf, workers=1, batch_size=1) as rt:
            t = time.perf_counter()
            for doc in texts:
                rt.submit(doc).result()
            secs = time.perf_counter() - t
        runs.append(stream_row(rt.stats(), len(texts), secs))
    return median_row(runs)


def batch_predict(clf, texts, threads, repeats):
    import numba

    numba.set_num_threads(threads)
    n_events = len(clf.transform(texts).indices)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        clf.predict(texts)
        times.append(time.perf_counter() - t)
    numba.set_num_threads(THREADS)
    secs = statistics.median(times)
    nan = float("nan")
    return {
        "docs_per_s": len(texts) / secs,
        "events_per_s": n_events / secs,
        "p50_us": nan,
        "p99_us": nan,
    }


def train_stream(saved, texts, labels, n_events, test, workers, batch_size, repeats):
    """Trainer mode (``batch_size`` > 0) or, with ``batch_size=None``, partial_fit with
    n_jobs=workers, on the loaded model; returns the median figures and the accuracy."""
    import numba

    from neurofabric.guard import GuardRuntime, TextGuardClassifier

    runs, acc = [], None
    for _ in range(repeats):
        clf = TextGuardClassifier.load(saved)
        clf.guard.set_params(shuffle=False, n_jobs=workers)  # the inner one keeps the field
        p50 = p99 = float("nan")
        if batch_size is None:
            numba.set_num_threads(workers)
            t = time.perf_counter()
            clf.partial_fit(texts, labels)
            secs = time.perf_counter() - t
            numba.set_num_threads(THREADS)
        else:
            rt = GuardRuntime(clf, workers=workers, mode="train", batch_size=batch_size)
            t = time.perf_counter()
            rt.train_stream(texts, labels)
            rt.close()  # publishes the averaged field
            secs = time.perf_counter() - t
            p50, p99 = rt.stats().p50_us, rt.stats().p99_us
        runs.append(
            {
                "docs_per_s": len(texts) / secs,
                "events_per_s": n_events / secs,
                "p50_us": p50,
                "p99_us": p99,
            }
        )
        acc = clf.score(test.texts, test.labels)  # the same every repeat for one worker
    return {**median_row(runs), "accuracy_frac": acc}


def load(args):
    from neurofabric.data.text import load_text_dataset

    train = load_text_dataset("20newsgroups", "train", data_dir=args.data_dir)
    test = load_text_dataset("20newsgroups", "test", data_dir=args.data_dir)
    if args.quick:
        rng = np.random.default_rng(1)
        train = train.subset(np.sort(rng.permutation(len(train))[:2000]))
        test = test.subset(np.sort(rng.permutation(len(test))[:1000]))
    return train, test


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--data-dir",
        default=os.environ.get("NEUROFABRIC_DATA")
        or str(Path(__file__).resolve().parents[1].parent / "shared" / "datasets"),
    )
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="2,000 train / 1,000 test documents")
    ap.add_argument("--threads", type=int, default=2, help="most workers / threads compared")
    args = ap.parse_args()
    if args.quick:
        args.repeats = min(args.repeats, 2)

    import numba  # noqa: F401  (loaded now so that its pool is capped with the others)

    from neurofabric.guard import GuardRuntime, TextGuardClassifier

    limit_loaded(THREADS)
    threads = threads_info()
    train, test = load(args)
    print(f"# 20newsgroups: {len(train):,} train / {len(test):,} test documents", flush=True)

    t = time.perf_counter()
    clf = TextGuardClassifier(epochs=5, seed=0).fit(train.texts, train.labels)
    print(f"# fit: {time.perf_counter() - t:.1f} s", flush=True)
    expected = clf.predict(test.texts)
    accuracy = float(np.mean(expected == test.labels))
    t = time.perf_counter()  # compile the stream kernels once (cached on disk after)
    with GuardRuntime(clf) as rt:
        rt.predict_stream(test.texts[:8])
    print(f"# runtime warm-up (JIT compile or cache load): {time.perf_counter() - t:.1f} s")

    order = np.random.default_rng(0).permutation(len(train))
    stream_texts = [train.texts[i] for i in order]
    stream_labels = train.labels[order]
    counts = sorted({1, THREADS})
    rows: list[tuple[str, str, int, int | None, dict]] = []
    for n in counts:
        rows.append(
            ("run", "batch API predict", n, None, batch_predict(clf, test.texts, n, args.repeats))
        )
    for n in counts:
        for b in BATCHES:
            r = stream_run(clf, test.texts, expected, n, b, args.repeats)
            rows.append(("run", "GuardRuntime", n, b, r))
    lone = one_at_a_time(clf, test.texts[: min(len(test), 2000)], args.repeats)
    rows.append(("run, one at a time", "GuardRuntime", 1, 1, lone))
    for row in rows:
        row[4]["accuracy_frac"] = accuracy
    with tempfile.TemporaryDirectory() as tmp:
        saved = clf.save(Path(tmp) / "model")
        with GuardRuntime(TextGuardClassifier.load(saved), mode="train") as rt:  # compile
            rt.train_stream(stream_texts[:8], stream_labels[:8])
        n_events = len(clf.transform(stream_texts).indices)
        train_args = (saved, stream_texts, stream_labels, n_events, test)
        for n in counts:
            r = train_stream(*train_args, n, None, args.repeats)
            rows.append(("train", "batch API partial_fit", n, None, r))
        for n in counts:
            for b in BATCHES:
                r = train_stream(*train_args, n, b, args.repeats)
                rows.append(("train", "GuardRuntime", n, b, r))

    batch = {(m, n): r for m, s, n, _, r in rows if s.startswith("batch API")}
    print(
        f"\n20newsgroups: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"python {platform.python_version()}, medians of {args.repeats} runs"
    )
    print(f"{threads_line()} (runtime workers run serial kernels, one core each)")
    print(
        "| mode | system | workers / threads | batch size | docs/s | events/s | p50 us "
        "| p99 us | vs batch API, same threads | test accuracy |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")

    def us(v):
        return "" if np.isnan(v) else f"{v:,.0f}"

    for mode, system, n, b, r in rows:
        ref = batch.get((mode.split(",")[0], n))
        ratio = r["docs_per_s"] / ref["docs_per_s"] if ref else float("nan")
        r["speedup_x"] = ratio
        print(
            f"| {mode} | {system} | {n} | {b if b else 'all'} | {r['docs_per_s']:,.0f} | "
            f"{r['events_per_s']:,.0f} | {us(r['p50_us'])} | {us(r['p99_us'])} | "
            f"{ratio:.2f}x | {r['accuracy_frac']:.4f} |"
        )
    n_docs = {"run": len(test), "run, one at a time": min(len(test), 2000), "train": len(train)}
    for mode, system, n, b, r in rows:
        variant = ("runtime-" if system == "GuardRuntime" else "batch-") + (
            "train" if mode == "train" else "one-at-a-time" if "one" in mode else "run"
        )
        record(
            "guard_runtime",
            "neurofabric",
            variant=variant,
            workload={
                "dataset": "20newsgroups",
                "documents": n_docs[mode],
                "workers": n,
                "batch_size": b,
                "epochs": 5,
                "repeats": args.repeats,
                "threads": THREADS,
                "thread_pools": threads,
            },
            figures={
                "docs_per_s": r["docs_per_s"],
                "events_per_s": r["events_per_s"],
                "p50_us": r["p50_us"],
                "p99_us": r["p99_us"],
                "speedup_x": r["speedup_x"],
                "accuracy_frac": r["accuracy_frac"],
            },
            headline=("docs_per_s", "p50_us", "p99_us"),
        )


if __name__ == "__main__":
    main()
