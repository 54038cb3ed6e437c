"""fastText.zip peer of benchmarks/guard_size.py, run in the peers venv (fasttext-wheel).

Reads a JSON job on stdin: {"train": path, "test": path, "params": {...}, "cutoffs": [...],
"qnorm": bool, "retrain": bool}. Trains one supervised model, then for each cutoff reloads it
and runs ``quantize`` (product quantization of the input matrix with dsub 2, keeping the
``cutoff`` words and n-grams of largest norm, retraining on the kept ones when ``retrain``),
saves the ``.ftz`` and measures its size on disk and its test accuracy. Prints one JSON line
per model (the unquantized one first, cutoff null).
"""

import json
import os
import sys
import tempfile
import time

import fasttext
from fasttext_text import read_labelled  # beside this script


def accuracy(model, texts, labels):
    predicted, _ = model.f.multilinePredict(texts, 1, 0.0, "strict")
    return sum(p[0] == y for p, y in zip(predicted, labels, strict=True)) / len(labels)


def main() -> None:
    job = json.load(sys.stdin)
    texts, labels = read_labelled(job["test"])
    params = job["params"]
    with tempfile.TemporaryDirectory() as tmp:
        full = os.path.join(tmp, "model.bin")
        t = time.perf_counter()
        model = fasttext.train_supervised(job["train"], verbose=0, **params)
        train_s = time.perf_counter() - t
        model.save_model(full)
        row = {"cutoff": None, "bytes": os.path.getsize(full), "train_s": train_s}
        print(json.dumps({**row, "accuracy": accuracy(model, texts, labels)}), flush=True)
        for cutoff in job["cutoffs"]:
            model = fasttext.load_model(full)
            t = time.perf_counter()
            model.quantize(
                input=job["train"],
                cutoff=cutoff,
                retrain=job.get("retrain", True),
                qnorm=job.get("qnorm", True),
                epoch=params["epoch"],
                lr=params["lr"],
                thread=params.get("thread", 1),
                dsub=2,
            )
            quantize_s = time.perf_counter() - t
            path = os.path.join(tmp, f"model-{cutoff}.ftz")
            model.save_model(path)
            row = {"cutoff": cutoff, "bytes": os.path.getsize(path), "quantize_s": quantize_s}
            print(json.dumps({**row, "accuracy": accuracy(model, texts, labels)}), flush=True)


if __name__ == "__main__":
    main()
