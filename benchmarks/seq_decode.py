"""Single-stream and batch decoding of RWKV-4 (4 x 384) against the official ``rwkv`` package.

    python benchmarks/seq_decode.py [--tokens 400] [--threads 1]

For vocab 256 and 50,277, with the same random weights (our RWKV4, seed 0, saved in RWKV-LM's
checkpoint layout for the peer): tokens/s of
  ours, numba       the fused numba step over float32 numpy weights (neurofabric.seq.decode)
  ours, torch       our torch model's ``step`` (eager)
  rwkv package      rwkv 0.8.32, strategy "cpu fp32", TorchScript on (its default), in the
                    peers venv
one token per call, on ``--threads`` threads (BLAS, numba and torch limited alike), and with
16 sequences in a batch (the package has no batched API). Parity: the max abs difference of
our numba logits from the package's over the same 32 tokens. Prints a table and JSON lines.
HF transformers' Mamba is not in this run: our Mamba does not exist yet.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def rate(fn, n, warm=10):
    for i in range(warm):
        fn(i)
    t0 = time.perf_counter()
    for i in range(n):
        fn(i)
    return n / (time.perf_counter() - t0)


def run_vocab(V: int, args, tmp: str) -> dict:
    """Parity and speeds for one vocabulary size."""
    import torch

    from neurofabric.seq import RWKV4, RWKVConfig
    from neurofabric.seq.decode import RWKVDecoder

    model = RWKV4(RWKVConfig(vocab_size=V, n_layer=4, n_embd=384), seed=0).eval()
    dec = RWKVDecoder.from_model(model)
    tokens = [int(t) for t in np.random.default_rng(0).integers(0, V, 32)]
    # parity and speed of the peer
    pth = Path(tmp) / f"rwkv4_v{V}.pth"
    torch.save(model.to_rwkv_state_dict(), pth)  # the peer's own format (it loads .pth)
    job = {"model": str(pth), "tokens": tokens, "n_tokens": args.tokens,
           "threads": args.threads, "logits_out": str(Path(tmp) / "peer.npy")}  # fmt: skip
    peer = None
    if Path(args.peers_python).exists():
        res = subprocess.run([args.peers_python, str(ROOT / "benchmarks/peers/rwkv_decode.py")],
                             input=json.dumps(job), capture_output=True, text=True,
                             env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})  # fmt: skip
        if res.returncode == 0:
            peer = json.loads(res.stdout.strip().splitlines()[-1])
            peer_logits = np.load(Path(tmp) / "peer.npy")
        else:
            print(f"# rwkv package failed: {res.stderr.strip()[-400:]}")
    st = dec.init_state(1)
    ours_logits = np.stack([dec.step_(np.array([t]), st)[0] for t in tokens])
    parity = float(np.abs(ours_logits - peer_logits).max()) if peer else float("nan")
    # speed, single stream
    st = dec.init_state(1)
    ours = rate(lambda i: dec.step_(np.array([i % V]), st), args.tokens)
    tstate = [model.init_state(1)]

    def torch_step(i):
        with torch.no_grad():
            _, tstate[0] = model.step(torch.tensor([i % V]), tstate[0])

    eager = rate(torch_step, max(args.tokens // 4, 50))
    # batch of 16
    st16 = dec.init_state(16)
    toks16 = np.arange(16) % V
    ours16 = 16 * rate(lambda i: dec.step_(toks16, st16), max(args.tokens // 4, 50))
    t16 = [model.init_state(16)]

    def torch_step16(i):
        with torch.no_grad():
            _, t16[0] = model.step(torch.tensor(toks16), t16[0])

    eager16 = 16 * rate(torch_step16, max(args.tokens // 8, 30))
    row = {"vocab": V, "ours_numba": ours, "ours_torch": eager,
           "rwkv_package": peer["tokens_per_s"] if peer else None,
           "ours_numba_batch16": ours16, "ours_torch_batch16": eager16,
           "parity_max_abs": parity, "params": model.n_params()}  # fmt: skip
    print(json.dumps({"benchmark": "seq_decode", **row}), flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--tokens", type=int, default=400)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--peers-python", default=str(ROOT / ".venv-peers/bin/python"))
    args = ap.parse_args()

    import numba
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(args.threads)
    numba.set_num_threads(args.threads)
    rows = []
    print(f"# {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}, "
          f"torch {torch.__version__}, {args.threads} thread(s)")  # fmt: skip
    with threadpool_limits(args.threads), tempfile.TemporaryDirectory() as tmp:
        for V in (256, 50277):
            rows.append(run_vocab(V, args, tmp))
    print(
        "\n| vocab | ours, numba | ours, torch eager | rwkv package | ours vs package | "
        "batch 16: ours numba | batch 16: ours torch | logits max abs diff |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        pk = r["rwkv_package"]
        print(f"| {r['vocab']:,} | {r['ours_numba']:,.0f} | {r['ours_torch']:,.0f} | "
              f"{pk:,.0f} | {r['ours_numba'] / pk:.2f}x | {r['ours_numba_batch16']:,.0f} | "
              f"{r['ours_torch_batch16']:,.0f} | {r['parity_max_abs']:.2e} |" if pk else
              f"| {r['vocab']:,} | {r['ours_numba']:,.0f} | {r['ours_torch']:,.0f} | n/a | | "
              f"{r['ours_numba_batch16']:,.0f} | {r['ours_torch_batch16']:,.0f} | n/a |")  # fmt: skip


if __name__ == "__main__":
    main()
