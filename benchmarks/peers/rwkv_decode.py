"""The official ``rwkv`` pip package as the peer of benchmarks/seq_decode.py (peers venv).

Reads a JSON job on stdin: {"model": path to a .pth in RWKV-LM's layout, "tokens": [...],
"n_tokens": int, "threads": int, "logits_out": path}. Runs the package's RWKV-4 on the CPU in
fp32 (RWKV_JIT_ON=1, its default; no CUDA kernel), one token per forward call; writes the
logits of every step of ``tokens`` to ``logits_out`` (.npy) for the parity check and prints
one JSON line with the single-stream tokens/s.
"""

import json
import os
import sys
import time

os.environ.setdefault("RWKV_JIT_ON", "1")
os.environ["RWKV_CUDA_ON"] = "0"

import numpy as np  # noqa: E402
import torch  # noqa: E402
from rwkv.model import RWKV  # noqa: E402


def main() -> None:
    job = json.load(sys.stdin)
    torch.set_num_threads(job.get("threads", 1))
    model = RWKV(model=job["model"][: -len(".pth")], strategy="cpu fp32", verbose=False)
    state = None
    logits = []
    for t in job["tokens"]:
        out, state = model.forward([t], state)
        logits.append(out.float().numpy())
    np.save(job["logits_out"], np.stack(logits))
    state = None
    for t in range(10):
        _, state = model.forward([t], state)
    n = job["n_tokens"]
    vocab = model.w["emb.weight"].shape[0]
    t0 = time.perf_counter()
    for i in range(n):
        _, state = model.forward([i % vocab], state)
    secs = time.perf_counter() - t0
    print(
        json.dumps(
            {"tokens_per_s": n / secs, "version": "0.8.32", "threads": torch.get_num_threads()}
        )
    )


if __name__ == "__main__":
    main()
