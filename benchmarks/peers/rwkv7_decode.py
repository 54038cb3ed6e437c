"""The official ``rwkv`` pip package's RWKV-7 as the peer of benchmarks/seq_decode.py (peers venv).

Reads a JSON job on stdin: {"model": path to a .pth in RWKV-LM v7's layout, "tokens": [...],
"n_tokens": int (0: no timing), "threads": int, "logits_out": path, "sequence": [...] (optional),
"sequence_out": path}. Runs the package's ``RWKV_x070`` (RWKV_V7_ON=1) on the CPU in fp32
(TorchScript, no CUDA kernel), one token per forward call, and writes the logits of every step
of ``tokens``; with "sequence", also the logits of every position of one ``forward`` call over
it (its sequence path, ``full_output=True``). Prints one JSON line with tokens/s.
"""

import json
import os
import sys
import time

os.environ["RWKV_V7_ON"] = "1"
os.environ.setdefault("RWKV_JIT_ON", "1")
os.environ["RWKV_CUDA_ON"] = "0"

import contextlib  # noqa: E402
import io  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

with contextlib.redirect_stdout(io.StringIO()):  # the package prints a banner on import
    from rwkv.model import RWKV  # noqa: E402


def main() -> None:
    job = json.load(sys.stdin)
    torch.set_num_threads(job.get("threads", 1))
    with contextlib.redirect_stdout(io.StringIO()):
        model = RWKV(model=job["model"][: -len(".pth")], strategy="cpu fp32")
    state = None
    logits = []
    for t in job["tokens"]:
        out, state = model.forward([t], state)
        logits.append(out.float().numpy())
    np.save(job["logits_out"], np.stack(logits))
    if job.get("sequence"):
        out, _ = model.forward(job["sequence"], None, full_output=True)
        np.save(job["sequence_out"], out.float().numpy())
    n = job["n_tokens"]
    secs = float("nan")
    if n:
        state = None
        for t in range(10):
            _, state = model.forward([t], state)
        vocab = model.z["emb.weight"].shape[0]
        t0 = time.perf_counter()
        for i in range(n):
            _, state = model.forward([i % vocab], state)
        secs = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "tokens_per_s": n / secs if n else None,
                "version": "0.8.32",
                "threads": torch.get_num_threads(),
            }
        )
    )


if __name__ == "__main__":
    main()
