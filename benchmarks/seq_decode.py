"""Single-stream and batch decoding of RWKV-4 and Mamba-1 (4 x 384) against their peers.

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
The same for Mamba-1 (4 x 384, d_state 16) against HF transformers' ``MambaForCausalLM``
(its CPU path, with cache), weights passed as a safetensors file in HF's layout.
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

from _threads import limit_loaded, pin_threads, thread_env, threads_info, threads_line

THREADS = pin_threads(1)

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def rate(fn, n, warm=10):
    for i in range(warm):
        fn(i)
    t0 = time.perf_counter()
    for i in range(n):
        fn(i)
    return n / (time.perf_counter() - t0)


def speeds(dec, model, V: int, args) -> dict:
    """Tokens/s of our numba decoder and our torch model, single stream and batch 16."""
    import torch

    st = dec.init_state(1)
    ours = rate(lambda i: dec.step_(np.array([i % V]), st), args.tokens)
    tstate = [model.init_state(1)]

    def torch_step(i):
        with torch.no_grad():
            _, tstate[0] = model.step(torch.tensor([i % V]), tstate[0])

    eager = rate(torch_step, max(args.tokens // 4, 50))
    st16 = dec.init_state(16)
    toks16 = np.arange(16) % V
    ours16 = 16 * rate(lambda i: dec.step_(toks16, st16), max(args.tokens // 4, 50))
    t16 = [model.init_state(16)]

    def torch_step16(i):
        with torch.no_grad():
            _, t16[0] = model.step(torch.tensor(toks16), t16[0])

    eager16 = 16 * rate(torch_step16, max(args.tokens // 8, 30))
    return {
        "ours_numba": ours,
        "ours_torch": eager,
        "ours_numba_batch16": ours16,
        "ours_torch_batch16": eager16,
    }


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
    job = {
        "model": str(pth),
        "tokens": tokens,
        "n_tokens": args.tokens,
        "threads": args.threads,
        "logits_out": str(Path(tmp) / "peer.npy"),
    }
    peer = None
    if Path(args.peers_python).exists():
        res = subprocess.run(
            [args.peers_python, str(ROOT / "benchmarks/peers/rwkv_decode.py")],
            input=json.dumps(job),
            capture_output=True,
            text=True,
            env={**os.environ, **thread_env(args.threads)},
        )
        if res.returncode == 0:
            peer = json.loads(res.stdout.strip().splitlines()[-1])
            peer_logits = np.load(Path(tmp) / "peer.npy")
        else:
            print(f"# rwkv package failed: {res.stderr.strip()[-400:]}")
    st = dec.init_state(1)
    ours_logits = np.stack([dec.step_(np.array([t]), st)[0] for t in tokens])
    parity = float(np.abs(ours_logits - peer_logits).max()) if peer else float("nan")
    sp = speeds(dec, model, V, args)
    row = {
        "model": "rwkv4",
        "vocab": V,
        **sp,
        "peer": peer["tokens_per_s"] if peer else None,
        "peer_name": "rwkv package",
        "parity_max_abs": parity,
        "params": model.n_params(),
    }
    print(
        json.dumps(
            {"benchmark": "seq_decode", **row, "threads": THREADS, "thread_pools": threads_info()}
        ),
        flush=True,
    )
    return row


def run_mamba(V: int, args, tmp: str) -> dict:
    """Mamba-1 (4 x 384, d_state 16): ours numba / torch against HF MambaForCausalLM."""
    from safetensors.torch import save_file

    from neurofabric.seq.decode import MambaDecoder
    from neurofabric.seq.mamba import Mamba, MambaConfig

    model = Mamba(MambaConfig(vocab_size=V, n_layer=4, d_model=384), seed=0).eval()
    dec = MambaDecoder.from_model(model)
    tokens = [int(t) for t in np.random.default_rng(0).integers(0, V, 32)]
    path = Path(tmp) / f"mamba_v{V}.safetensors"
    save_file(
        {k: v.contiguous() for k, v in model.to_hf_state_dict().items() if k != "lm_head.weight"},
        path,
    )
    cfg = {
        "vocab_size": V,
        "hidden_size": 384,
        "state_size": 16,
        "num_hidden_layers": 4,
        "conv_kernel": 4,
        "expand": 2,
        "layer_norm_epsilon": 1e-5,
        "use_conv_bias": True,
        "use_bias": False,
        "tie_word_embeddings": True,
    }
    job = {
        "weights": str(path),
        "config": cfg,
        "tokens": tokens,
        "n_tokens": args.tokens,
        "threads": args.threads,
        "logits_out": str(Path(tmp) / "hf.npy"),
    }
    peer, parity = None, float("nan")
    if Path(args.peers_python).exists():
        res = subprocess.run(
            [args.peers_python, str(ROOT / "benchmarks/peers/hf_mamba_decode.py")],
            input=json.dumps(job),
            capture_output=True,
            text=True,
            env={**os.environ, **thread_env(args.threads)},
        )
        if res.returncode == 0:
            peer = json.loads(res.stdout.strip().splitlines()[-1])
        else:
            print(f"# HF Mamba failed: {res.stderr.strip()[-400:]}")
    st = dec.init_state(1)
    ours_logits = np.stack([dec.step_(np.array([t]), st)[0] for t in tokens])
    if peer:
        parity = float(np.abs(ours_logits - np.load(Path(tmp) / "hf.npy")).max())
    sp = speeds(dec, model, V, args)
    row = {
        "model": "mamba",
        "vocab": V,
        **sp,
        "peer": peer["tokens_per_s"] if peer else None,
        "peer_name": "HF transformers Mamba",
        "parity_max_abs": parity,
        "params": model.n_params(),
    }
    print(
        json.dumps(
            {"benchmark": "seq_decode", **row, "threads": THREADS, "thread_pools": threads_info()}
        ),
        flush=True,
    )
    return row


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--tokens", type=int, default=400)
    ap.add_argument(
        "--threads",
        type=int,
        default=THREADS,
        help="threads for every system (pinned before numpy loads)",
    )
    ap.add_argument("--peers-python", default=str(ROOT / ".venv-peers/bin/python"))
    args = ap.parse_args()

    import numba  # noqa: F401  (loaded before the pools are capped)
    import torch
    from threadpoolctl import threadpool_limits

    limit_loaded(args.threads)
    rows = []
    print(
        f"# {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}, "
        f"torch {torch.__version__}, {args.threads} thread(s)"
    )
    print(f"# {threads_line()}; the peers get the same variables and torch.set_num_threads")
    with threadpool_limits(args.threads), tempfile.TemporaryDirectory() as tmp:
        for V in (256, 50277):
            rows.append(run_vocab(V, args, tmp))
            rows.append(run_mamba(V, args, tmp))
    print(
        "\n| model | vocab | ours, numba | ours, torch eager | peer | peer tok/s | ours vs peer | "
        "batch 16: ours numba | batch 16: ours torch | logits max abs diff |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        pk = r["peer"]
        vs = f"{r['ours_numba'] / pk:.2f}x" if pk else "n/a"
        print(
            f"| {r['model']} | {r['vocab']:,} | {r['ours_numba']:,.0f} | {r['ours_torch']:,.0f} | "
            f"{r['peer_name']} | {pk or float('nan'):,.0f} | {vs} | {r['ours_numba_batch16']:,.0f} | "
            f"{r['ours_torch_batch16']:,.0f} | {r['parity_max_abs']:.2e} |"
        )


if __name__ == "__main__":
    main()
