"""fastText peer of benchmarks/guard_text.py, run in the peers venv (fasttext-wheel).

Reads a JSON job on stdin: {"train": path, "test": path, "params": {...}, "repeats": n}.
The files are in fastText's format (one "__label__X text" per line, text normalized as its
classification-example.sh does). Prints one JSON line: accuracy, train seconds (median),
prediction docs/s (median; fastText tokenizes inside predict), model bytes on disk.
Uses the raw binding's multilinePredict: fasttext-wheel's Python predict() needs numpy<2.
"""

import json
import os
import statistics
import sys
import tempfile
import time

import fasttext


def read_labelled(path: str) -> tuple[list[str], list[str]]:
    """(texts, labels) of a file in fastText's format ("__label__X text" per line)."""
    texts, labels = [], []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            label, _, text = line.rstrip("\n").partition(" ")
            labels.append(label)
            texts.append(text)
    return texts, labels


def main() -> None:
    job = json.load(sys.stdin)
    texts, labels = read_labelled(job["test"])
    train_s, pred_s = [], []
    for _ in range(job.get("repeats", 1)):
        t = time.perf_counter()
        model = fasttext.train_supervised(job["train"], verbose=0, **job["params"])
        train_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        predicted, _ = model.f.multilinePredict(texts, 1, 0.0, "strict")
        pred_s.append(time.perf_counter() - t)
    acc = sum(p[0] == y for p, y in zip(predicted, labels, strict=True)) / len(labels)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.bin")
        model.save_model(path)
        size = os.path.getsize(path)
    print(
        json.dumps(
            {
                "accuracy": acc,
                "train_s": statistics.median(train_s),
                "predict_docs_per_s": len(texts) / statistics.median(pred_s),
                "model_bytes": size,
                "version": getattr(fasttext, "__version__", "0.9.2"),
            }
        )
    )


if __name__ == "__main__":
    main()
