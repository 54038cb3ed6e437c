"""Single-stream and batch decoding of RWKV-4/7 and Mamba-1/2 (4 x 384) against their peers.

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
(its CPU path, with cache), weights passed as a safetensors file in HF's layout, and for
Mamba-2 (4 x 384, d_state 64, 24 heads of 32, one group) against ``Mamba2ForCausalLM``; first
the Mamba-2 parity table: max abs logit differences from HF over three random shapes (groups,
separate head, expand 3), for a forward pass (our chunked SSD form) and for 20 decode steps
(our torch step and numba decoder). RWKV-7 likewise (4 x 384, heads of 64) against the
``rwkv`` package's ``RWKV_x070`` (RWKV_V7_ON=1, cpu fp32), weights saved as a .pth in RWKV-LM
v7's layout, perturbed by seeded noise off the initialization (whose zeros would hide terms),
with its own parity table over three shapes. ``--only-new``: only the RWKV-7 and Mamba-2 rows.

``--int4`` adds (``--int4-only``: only) the 4-bit rows, on an RWKV-4 of ``--int4-layers`` x
``--int4-width`` (12 x 1,536 by default: 1.5 GB of float32, past the caches), random weights,
vocab 256, quantized RTN w4 g128 (AWQ's packing; the speed does not depend on the search):
  fp32 decode    the fused numba step over float32 weights (BLAS matrix-vector products)
  int4 decode    the same step with ``q4_matvec`` on the packed codes (``rwkv_step_q4``)
  layers only    the model's 84 linear layers, one token: ``q4_matvec`` against torch's int4
                 weight-only CPU op (``torch._weight_int4pack_mm_for_cpu``, the kernel
                 torchao's int4 CPU layout calls), float32 and bfloat16 activations
parity: the int4 step's logits against the float32 step over the dequantized weights
(relative to the largest logit), and the resident memory of a process that loads each saved
model and builds its decoder (peak RSS: VmHWM). Those rows are recorded as ``seq_decode_int4``
(the report shows the last run of each benchmark: the 4-bit runs, one per thread count, share
a run id, e.g. ``NEUROFABRIC_BENCH_RUN=seq-int4-<date>`` for both, and leave the float rows alone).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _record import record
from _threads import limit_loaded, pin_threads, thread_env, threads_info, threads_line

THREADS = pin_threads(1)

import numpy as np  # noqa: E402

INT4_BENCH = "seq_decode_int4"  # the 4-bit rows' benchmark name
ROOT = Path(__file__).resolve().parents[1]
ARGS = None  # the parsed command line (main sets it)


def rate(fn, n, warm=10):
    for i in range(warm):
        fn(i)
    t0 = time.perf_counter()
    for i in range(n):
        fn(i)
    return n / (time.perf_counter() - t0)


def record_speeds(row: dict, peer: dict | None, peer_system: str, peer_variant, args) -> None:
    """One schema line per system of a decode row: ours (numba, torch, single stream and
    batch 16) and the peer, each with the same workload."""

    def workload(batch: int) -> dict:
        return {
            "model": row["model"],
            "vocab": row["vocab"],
            "layers": 4,
            "width": 384,
            "params": row["params"],
            "batch": batch,
            "tokens": args.tokens,
            "threads": THREADS,
            "thread_pools": threads_info(),
        }

    pk = row["peer"]
    record(
        "seq_decode",
        "neurofabric",
        variant="numba",
        workload=workload(1),
        figures={
            "tokens_per_s": row["ours_numba"],
            "speedup_x": row["ours_numba"] / pk if pk else None,
            "parity_max_abs_nats": row["parity_max_abs"],
        },
        headline=("tokens_per_s", "speedup_x"),
    )
    record(
        "seq_decode",
        "neurofabric",
        variant="torch",
        workload=workload(1),
        figures={"tokens_per_s": row["ours_torch"]},
    )
    for variant, key in (
        ("numba-batch16", "ours_numba_batch16"),
        ("torch-batch16", "ours_torch_batch16"),
    ):
        record(
            "seq_decode",
            "neurofabric",
            variant=variant,
            workload=workload(16),
            figures={"tokens_per_s": row[key]},
        )
    if peer:
        record(
            "seq_decode",
            peer_system,
            variant=peer_variant,
            workload={**workload(1), "version": peer.get("version")},
            figures={"tokens_per_s": pk},
        )


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
    record_speeds(row, peer, "rwkv", "cpu-fp32", args)
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
    record_speeds(row, peer, "transformers", "cpu-cache", args)
    return row


#: the Mamba-2 shapes of the parity check: sizes, heads, groups, tied or separate head, expand
MAMBA2_SHAPES = (
    {"vocab_size": 50, "n_layer": 2, "d_model": 32, "head_dim": 16, "d_state": 8, "chunk": 8},
    {
        "vocab_size": 50,
        "n_layer": 3,
        "d_model": 48,
        "head_dim": 8,
        "n_groups": 4,
        "d_state": 16,
        "chunk": 16,
        "tie_embeddings": False,
    },
    {
        "vocab_size": 256,
        "n_layer": 2,
        "d_model": 64,
        "expand": 3,
        "head_dim": 32,
        "n_groups": 2,
        "d_state": 32,
        "chunk": 32,
    },
)

#: the RWKV-7 shapes of the parity check: head sizes, LoRA widths, FFN width, vocab
RWKV7_SHAPES = (
    {"vocab_size": 50, "n_layer": 2, "n_embd": 64, "head_size": 64},
    {"vocab_size": 80, "n_layer": 3, "n_embd": 96, "head_size": 32, "d_decay": 16, "d_gate": 48},
    {"vocab_size": 256, "n_layer": 2, "n_embd": 128, "head_size": 16, "ffn_mult": 3},
)


def _peer_job(script: str, job: dict, threads: int, what: str):
    """Run a peers-venv script on a JSON job; its last stdout line parsed, or None (reported)."""
    res = subprocess.run(
        [ARGS.peers_python, str(ROOT / "benchmarks/peers" / script)],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        env={**os.environ, **thread_env(threads)},
    )
    if res.returncode:
        print(f"# {what} failed: {res.stderr.strip()[-400:]}")
        return None
    return json.loads(res.stdout.strip().splitlines()[-1])


def _hf_mamba2(model, tmp: str, name: str, tokens, n_tokens: int, threads: int, batch=None):
    """HF's Mamba2ForCausalLM on our weights (saved in its layout): its decode logits over
    ``tokens``, its forward logits over ``batch`` (B, T) and tokens/s."""
    from safetensors.torch import save_file

    sd = {k: v.contiguous() for k, v in model.to_hf_state_dict().items()}
    if model.config.tie_embeddings:
        del sd["lm_head.weight"]
    path = Path(tmp) / f"{name}.safetensors"
    save_file(sd, path)
    job = {
        "weights": str(path),
        "config": model.hf_config(),
        "tokens": tokens,
        "n_tokens": n_tokens,
        "threads": threads,
        "logits_out": str(Path(tmp) / f"{name}_decode.npy"),
        "forward": batch,
        "forward_out": str(Path(tmp) / f"{name}_forward.npy"),
    }
    peer = _peer_job("hf_mamba2_decode.py", job, threads, "HF Mamba-2")
    if peer is None:
        return None, None, None
    fwd = np.load(job["forward_out"]) if batch else None
    return peer, np.load(job["logits_out"]), fwd


def _rwkv7_package(model, tmp: str, name: str, tokens, n_tokens: int, threads: int, batch=None):
    """The rwkv package's RWKV_x070 on our weights (a .pth in RWKV-LM v7's layout): its decode
    logits over ``tokens``, its sequence logits over ``batch`` (one sequence: (1, T)), tokens/s."""
    import torch

    path = Path(tmp) / f"{name}.pth"
    torch.save(model.to_rwkv_state_dict(), path)
    job = {
        "model": str(path),
        "tokens": tokens,
        "n_tokens": n_tokens,
        "threads": threads,
        "logits_out": str(Path(tmp) / f"{name}_decode.npy"),
        "sequence": batch[0] if batch else None,
        "sequence_out": str(Path(tmp) / f"{name}_seq.npy"),
    }
    peer = _peer_job("rwkv7_decode.py", job, threads, "rwkv package RWKV-7")
    if peer is None:
        return None, None, None
    fwd = np.load(job["sequence_out"])[None] if batch else None
    return peer, np.load(job["logits_out"]), fwd


def _perturbed_rwkv7(cfg, seed: int = 3, scale: float = 0.1):
    """An RWKV-7 with every parameter moved off its initialization by seeded noise (the
    initialization zeroes the output layers and LoRA inputs, which would hide terms)."""
    import torch

    from neurofabric.seq.rwkv7 import RWKV7

    model = RWKV7(cfg, seed=seed).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen))
    return model


def _mamba2(cfg, seed: int = 3):
    from neurofabric.seq.mamba2 import Mamba2

    return Mamba2(cfg, seed=seed).eval()


def _new_kinds():
    """RWKV-7 and Mamba-2: model builder, config, decoder, peer runner, parity shapes, the
    rows of the forward comparison, and the peer's names."""
    from neurofabric.seq.decode import Mamba2Decoder, RWKV7Decoder
    from neurofabric.seq.mamba2 import Mamba2Config
    from neurofabric.seq.rwkv7 import RWKV7Config

    return {
        "rwkv7": {
            "build": _perturbed_rwkv7,
            "config": RWKV7Config,
            "width": "n_embd",
            "decoder": RWKV7Decoder,
            "peer": _rwkv7_package,
            "shapes": RWKV7_SHAPES,
            "rows": 1,
            "peer_system": "rwkv",
            "peer_variant": "v7-cpu-fp32",
            "peer_name": "rwkv package RWKV-7",
        },
        "mamba2": {
            "build": _mamba2,
            "config": Mamba2Config,
            "width": "d_model",
            "decoder": Mamba2Decoder,
            "peer": _hf_mamba2,
            "shapes": MAMBA2_SHAPES,
            "rows": 2,
            "peer_system": "transformers",
            "peer_variant": "mamba2-cpu-cache",
            "peer_name": "HF transformers Mamba-2",
        },
    }


def new_parity(kind: str, args, tmp: str) -> list[dict]:
    """Max abs logit differences from the peer of ``kind`` ("rwkv7": the rwkv package's
    RWKV-7; "mamba2": HF Mamba2ForCausalLM), float32, over its parity shapes: a forward pass
    over 37 tokens (ours: the training path; RWKV-7's peer: its sequence path) and 20 decode
    steps (ours: the torch ``step`` and the numba decoder)."""
    import torch

    k = _new_kinds()[kind]
    out = []
    for i, shape in enumerate(k["shapes"]):
        model = k["build"](k["config"](**shape))
        rng = np.random.default_rng(i)
        V = shape["vocab_size"]
        tokens = [int(t) for t in rng.integers(0, V, 20)]
        batch = rng.integers(0, V, (k["rows"], 37)).tolist()
        peer, dec_ref, fwd_ref = k["peer"](model, tmp, f"{kind}p{i}", tokens, 0, 1, batch)
        if peer is None:
            continue
        with torch.no_grad():
            fwd = model(torch.tensor(batch)).logits.numpy()
            st, steps = model.init_state(1), []
            for t in tokens:
                logits, st = model.step(torch.tensor([t]), st)
                steps.append(logits[0].numpy())
        dec = k["decoder"].from_model(model)
        dst = dec.init_state(1)
        fused = np.stack([dec.step_(np.array([t]), dst)[0] for t in tokens])
        row = {
            "shape": shape,
            "params": model.n_params(),
            "forward_max_abs": float(np.abs(fwd - fwd_ref).max()),
            "torch_step_max_abs": float(np.abs(np.stack(steps) - dec_ref).max()),
            "numba_step_max_abs": float(np.abs(fused - dec_ref).max()),
            "logit_scale": float(np.abs(dec_ref).max()),
            "version": peer["version"],
        }
        out.append(row)
        record(
            "seq_decode",
            "neurofabric",
            variant=f"{kind}-parity",
            workload={
                **shape,
                "params": row["params"],
                "peer": k["peer_name"] + " " + row["version"],
            },
            figures={
                key + "_nats": row[key]
                for key in row
                if key.endswith("max_abs") or key == "logit_scale"
            },
            headline=("forward_max_abs_nats", "numba_step_max_abs_nats"),
        )
    return out


def run_new(kind: str, V: int, args, tmp: str) -> dict:
    """RWKV-7 (4 x 384, heads of 64) or Mamba-2 (4 x 384, d_state 64, heads of 32, one group):
    ours numba / torch against the peer, single stream and batch 16."""
    k = _new_kinds()[kind]
    model = k["build"](k["config"](vocab_size=V, n_layer=4, **{k["width"]: 384}), seed=0)
    dec = k["decoder"].from_model(model)
    tokens = [int(t) for t in np.random.default_rng(0).integers(0, V, 32)]
    peer, parity = None, float("nan")
    if Path(args.peers_python).exists():
        peer, ref, _ = k["peer"](model, tmp, f"{kind}_v{V}", tokens, args.tokens, args.threads)
        if peer is not None:
            st = dec.init_state(1)
            ours_logits = np.stack([dec.step_(np.array([t]), st)[0] for t in tokens])
            parity = float(np.abs(ours_logits - ref).max())
    sp = speeds(dec, model, V, args)
    row = {
        "model": kind,
        "vocab": V,
        **sp,
        "peer": peer["tokens_per_s"] if peer else None,
        "peer_name": k["peer_name"],
        "parity_max_abs": parity,
        "params": model.n_params(),
    }
    record_speeds(row, peer, k["peer_system"], k["peer_variant"], args)
    return row


def _rss_of_load(folder: Path) -> dict:
    """Peak and final RSS of a fresh process that loads a saved model and decodes a token
    (VmHWM and VmRSS: ``ru_maxrss`` would carry the parent's peak over the fork)."""
    code = (
        "import json, sys, numpy as np\n"
        "from neurofabric.seq.io import load_model\n"
        "from neurofabric.seq.decode import RWKVDecoder\n"
        "def status(key):\n"
        "    for line in open('/proc/self/status'):\n"
        "        if line.startswith(key): return int(line.split()[1]) * 1024\n"
        "def rss(): return status('VmRSS')\n"
        "base = rss()\n"
        "m = load_model(sys.argv[1]); d = RWKVDecoder.from_model(m); del m\n"
        "import gc; gc.collect()\n"
        "d.step_(np.array([1]), d.init_state(1))\n"
        "print(json.dumps({'base': base, 'rss': rss(), 'decoder_bytes': d.nbytes,\n"
        "  'peak': status('VmHWM')}))\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code, str(folder)], capture_output=True, text=True, check=True
    )
    return json.loads(res.stdout.strip().splitlines()[-1])


def _parity(dec4, dec_ref, tokens: int = 16) -> float:
    """Largest gap of the int4 decoder's logits from the float decoder over the dequantized
    weights, relative to the largest logit, over ``tokens`` steps."""
    s4, sr = dec4.init_state(1), dec_ref.init_state(1)
    rel = 0.0
    for t in range(tokens):
        a, b = dec4.step_(np.array([t]), s4), dec_ref.step_(np.array([t]), sr)
        rel = max(rel, float(np.abs(a - b).max() / np.abs(b).max()))
    return rel


def _rate_of(dec, n: int) -> float:
    """Single-stream tokens/s of a decoder."""
    st = dec.init_state(1)
    return rate(lambda i: dec.step_(np.array([i % 256]), st), n, warm=3)


def run_int4(args, tmp: str) -> dict:
    """fp32 against int4 decode of a model past the caches; the layers against torch's op."""
    import torch

    from neurofabric.quant.awq import AWQConfig, quantize_model
    from neurofabric.seq import RWKV4, RWKVConfig
    from neurofabric.seq.decode import Q4_LAYERS, RWKVDecoder
    from neurofabric.seq.io import save_model, save_quantized
    from neurofabric.seq.kernels import numba_cpu

    L, C = args.int4_layers, args.int4_width
    model = RWKV4(RWKVConfig(vocab_size=256, n_layer=L, n_embd=C), seed=0).eval()
    fp_dir, q_dir = Path(tmp) / "fp32", Path(tmp) / "int4"
    save_model(model, fp_dir)
    dec32 = RWKVDecoder.from_model(model)
    quantize_model(model, None, AWQConfig(method="rtn", bits=4, group_size=128))
    save_quantized(model, q_dir)
    dec4 = RWKVDecoder.from_model(model)
    # parity: the float step over the dequantized weights
    deq = dict(dec32.w)
    layers = [
        {a: model.blocks[i].get_submodule(n).packed for a, n in Q4_LAYERS.items()} for i in range(L)
    ]
    deq["att_w"] = np.stack(
        [
            np.stack([lay[a].dequantize() for a in ("att_k", "att_v", "att_r", "att_o")])
            for lay in layers
        ]
    )
    for a in ("ffn_k", "ffn_r", "ffn_v"):
        deq[a] = np.stack([lay[a].dequantize() for lay in layers])
    rel = _parity(dec4, RWKVDecoder(deq))
    del deq
    n = max(args.tokens // 8, 20)
    fp32, int4 = _rate_of(dec32, n), _rate_of(dec4, n)
    # the layers alone: ours against torch's int4 op, same codes, scales and zero points
    mats = []
    for lay in layers:
        for p in lay.values():
            codes = torch.from_numpy(p.codes().astype(np.int32))
            packed = torch._convert_weight_to_int4pack_for_cpu(codes, 2)
            scales = torch.from_numpy(p.scales.astype(np.float32)).T.contiguous()
            zeros = torch.from_numpy(p.zeros().astype(np.float32)).T.contiguous()
            sz = torch.stack([scales, scales * (8 - zeros)], -1).contiguous()  # (q - 8) s + zero
            s32 = p.scales.astype(np.float32)
            mats.append((p.qweight, s32, p.zeros().astype(np.float32) * s32, packed, sz, p.shape))
    x = {
        shape: np.random.default_rng(0).standard_normal((1, shape[1])).astype(np.float32)
        for *_, shape in mats
    }
    check = 0.0
    for q, sc, zs, packed, sz, shape in mats[:7]:
        a = numba_cpu.q4_matvec(x[shape], q, sc, zs)
        b = torch._weight_int4pack_mm_for_cpu(torch.from_numpy(x[shape]), packed, 128, sz).numpy()
        check = max(check, float(np.abs(a - b).max() / np.abs(b).max()))

    def ours_layers(_):
        for q, sc, zs, _p, _s, shape in mats:
            numba_cpu.q4_matvec(x[shape], q, sc, zs)

    def peer_layers(dtype):
        xs = {k: torch.from_numpy(v).to(dtype) for k, v in x.items()}
        szs = [m[4].to(dtype) for m in mats]

        def run(_):
            for (_q, _s, _z, packed, _sz, shape), sz in zip(mats, szs, strict=True):
                torch._weight_int4pack_mm_for_cpu(xs[shape], packed, 128, sz)

        return run

    ours_l = rate(ours_layers, n, warm=2)
    peer32 = rate(peer_layers(torch.float32), max(n // 4, 5), warm=1)
    peer16 = rate(peer_layers(torch.bfloat16), n, warm=2)
    rss32, rss4 = _rss_of_load(fp_dir), _rss_of_load(q_dir)
    row = {
        "model": f"rwkv4 {L} x {C}",
        "fp32_tokens_per_s": fp32,
        "int4_tokens_per_s": int4,
        "int4_vs_fp32": int4 / fp32,
        "layers_ours_per_s": ours_l,
        "layers_torch_int4_fp32_per_s": peer32,
        "layers_torch_int4_bf16_per_s": peer16,
        "ours_vs_torch_bf16": ours_l / peer16,
        "parity_rel_vs_dequant": rel,
        "torch_op_agrees_rel": check,
        "fp32_file_bytes": (fp_dir / "model.safetensors").stat().st_size,
        "int4_file_bytes": (q_dir / "model.safetensors").stat().st_size,
        "fp32_decoder_bytes": rss32["decoder_bytes"],
        "int4_decoder_bytes": rss4["decoder_bytes"],
        "fp32_load_peak_rss": rss32["peak"],
        "int4_load_peak_rss": rss4["peak"],
        "fp32_load_rss": rss32["rss"],
        "int4_load_rss": rss4["rss"],
        "process_base_rss": rss4["base"],
    }
    workload = {
        "model": "rwkv4",
        "vocab": 256,
        "layers": L,
        "width": C,
        "quant": "rtn-w4-g128",
        "q4_kernel": numba_cpu.Q4_KERNEL,  # vnni (integer dot products) or fma (float32)
        "tokens": n,
        "threads": THREADS,
        "thread_pools": threads_info(),
    }
    record(
        INT4_BENCH,
        "neurofabric",
        variant="fp32",
        workload=workload,
        figures={
            "tokens_per_s": row["fp32_tokens_per_s"],
            "file_bytes": row["fp32_file_bytes"],
            "decoder_bytes": row["fp32_decoder_bytes"],
            "load_peak_rss_bytes": row["fp32_load_peak_rss"],
            "load_rss_bytes": row["fp32_load_rss"],
            "process_base_rss_bytes": rss32["base"],
        },
        headline=("tokens_per_s", "load_peak_rss_bytes"),
    )
    record(
        INT4_BENCH,
        "neurofabric",
        variant="int4",
        workload=workload,
        figures={
            "tokens_per_s": row["int4_tokens_per_s"],
            "vs_fp32_x": row["int4_vs_fp32"],
            "parity_rel_vs_dequant_frac": row["parity_rel_vs_dequant"],
            "file_bytes": row["int4_file_bytes"],
            "decoder_bytes": row["int4_decoder_bytes"],
            "load_peak_rss_bytes": row["int4_load_peak_rss"],
            "load_rss_bytes": row["int4_load_rss"],
            "process_base_rss_bytes": row["process_base_rss"],
        },
        headline=("tokens_per_s", "vs_fp32_x", "load_peak_rss_bytes"),
    )
    record(
        INT4_BENCH,
        "neurofabric",
        variant="int4-layers",
        workload=workload,
        figures={
            "layers_per_s": row["layers_ours_per_s"],
            "speedup_x": row["ours_vs_torch_bf16"],
            "torch_op_agrees_rel_frac": row["torch_op_agrees_rel"],
        },
        headline=("layers_per_s", "speedup_x"),
    )
    for variant, key in (
        ("int4-layers-fp32", "layers_torch_int4_fp32_per_s"),
        ("int4-layers-bf16", "layers_torch_int4_bf16_per_s"),
    ):
        record(
            INT4_BENCH,
            "torch",
            variant=variant,
            workload={**workload, "version": torch.__version__},
            figures={"layers_per_s": row[key]},
        )
    return row


def run_int4_mamba(args) -> dict:
    """fp32 against int4 decode of a Mamba-1 of the same size (d_inner 2x, d_state 16)."""
    from neurofabric.quant.awq import AWQConfig, quantize_model
    from neurofabric.seq.decode import MambaDecoder
    from neurofabric.seq.kernels import numba_cpu
    from neurofabric.seq.mamba import Mamba, MambaConfig

    L, C = args.int4_layers, args.int4_width
    model = Mamba(MambaConfig(vocab_size=256, n_layer=L, d_model=C), seed=0).eval()
    dec32 = MambaDecoder.from_model(model)
    quantize_model(model, None, AWQConfig(method="rtn", bits=4, group_size=128))
    dec4 = MambaDecoder.from_model(model)
    deq = dict(dec32.w)
    for name in ("in_proj", "x_proj", "out_proj"):
        deq[name] = np.stack([getattr(lay.mixer, name).packed.dequantize() for lay in model.layers])
    rel = _parity(dec4, MambaDecoder(deq, eps=model.config.eps))
    del deq
    n = max(args.tokens // 8, 20)
    fp32, int4 = _rate_of(dec32, n), _rate_of(dec4, n)
    row = {
        "model": f"mamba {L} x {C}",
        "fp32_tokens_per_s": fp32,
        "int4_tokens_per_s": int4,
        "int4_vs_fp32": int4 / fp32,
        "parity_rel_vs_dequant": rel,
        "fp32_decoder_bytes": dec32.nbytes,
        "int4_decoder_bytes": dec4.nbytes,
    }
    workload = {
        "model": "mamba",
        "vocab": 256,
        "layers": L,
        "width": C,
        "quant": "rtn-w4-g128",
        "q4_kernel": numba_cpu.Q4_KERNEL,  # vnni (integer dot products) or fma (float32)
        "tokens": n,
        "threads": THREADS,
        "thread_pools": threads_info(),
    }
    record(
        INT4_BENCH,
        "neurofabric",
        variant="fp32",
        workload=workload,
        figures={
            "tokens_per_s": row["fp32_tokens_per_s"],
            "decoder_bytes": row["fp32_decoder_bytes"],
        },
        headline=("tokens_per_s",),
    )
    record(
        INT4_BENCH,
        "neurofabric",
        variant="int4",
        workload=workload,
        figures={
            "tokens_per_s": row["int4_tokens_per_s"],
            "vs_fp32_x": row["int4_vs_fp32"],
            "parity_rel_vs_dequant_frac": row["parity_rel_vs_dequant"],
            "decoder_bytes": row["int4_decoder_bytes"],
        },
        headline=("tokens_per_s", "vs_fp32_x"),
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
    ap.add_argument("--int4", action="store_true", help="add the 4-bit rows")
    ap.add_argument("--int4-only", action="store_true", help="only the 4-bit rows")
    ap.add_argument("--int4-layers", type=int, default=12)
    ap.add_argument("--int4-width", type=int, default=1536)
    ap.add_argument(
        "--only-new",
        action="store_true",
        help="only the RWKV-7 and Mamba-2 parity and decode rows",
    )
    args = ap.parse_args()
    global ARGS
    ARGS = args

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
        if args.int4 or args.int4_only:
            r = run_int4(args, tmp)
            mb = 1e6
            print(
                "\n| model | fp32 tok/s | int4 tok/s | int4 vs fp32 | layers: ours int4 | "
                "layers: torch int4 (fp32 / bf16 act.) | ours vs torch bf16 | logits vs dequant | "
                "file MB (fp32 / int4) | load peak RSS MB (fp32 / int4) |"
            )
            print("|---|---|---|---|---|---|---|---|---|---|")
            print(
                f"| {r['model']} | {r['fp32_tokens_per_s']:.2f} | {r['int4_tokens_per_s']:.2f} | "
                f"{r['int4_vs_fp32']:.2f}x | {r['layers_ours_per_s']:.2f}/s | "
                f"{r['layers_torch_int4_fp32_per_s']:.2f} / {r['layers_torch_int4_bf16_per_s']:.2f}/s | "
                f"{r['ours_vs_torch_bf16']:.2f}x | {r['parity_rel_vs_dequant']:.1e} | "
                f"{r['fp32_file_bytes'] / mb:,.0f} / {r['int4_file_bytes'] / mb:,.0f} | "
                f"{r['fp32_load_peak_rss'] / mb:,.0f} / {r['int4_load_peak_rss'] / mb:,.0f} |"
            )
            m = run_int4_mamba(args)
            print(
                f"| {m['model']} | {m['fp32_tokens_per_s']:.2f} | {m['int4_tokens_per_s']:.2f} | "
                f"{m['int4_vs_fp32']:.2f}x | | | | {m['parity_rel_vs_dequant']:.1e} | "
                f"decoder {m['fp32_decoder_bytes'] / mb:,.0f} / {m['int4_decoder_bytes'] / mb:,.0f} | |"
            )
        if args.int4_only:
            return
        parity7 = new_parity("rwkv7", args, tmp)
        parity = new_parity("mamba2", args, tmp)
        for V in (256, 50277):
            if not args.only_new:
                rows.append(run_vocab(V, args, tmp))
            rows.append(run_new("rwkv7", V, args, tmp))
            if not args.only_new:
                rows.append(run_mamba(V, args, tmp))
            rows.append(run_new("mamba2", V, args, tmp))
    print(
        "\n| RWKV-7 shape (vocab, layers, width, heads x head_size) | forward | torch step | "
        "numba step | largest logit |"
    )
    print("|---|---|---|---|---|")
    for p in parity7:
        s = p["shape"]
        print(
            f"| {s['vocab_size']}, {s['n_layer']}, {s['n_embd']}, "
            f"{s['n_embd'] // s['head_size']} x {s['head_size']} | {p['forward_max_abs']:.1e} | "
            f"{p['torch_step_max_abs']:.1e} | {p['numba_step_max_abs']:.1e} | "
            f"{p['logit_scale']:.1f} |"
        )
    print(
        "\n| Mamba-2 shape (vocab, layers, width, heads x head_dim, groups, d_state) | forward | "
        "torch step | numba step |"
    )
    print("|---|---|---|---|")
    for p in parity:
        s = {"expand": 2, "n_groups": 1, **p["shape"]}
        heads = s["expand"] * s["d_model"] // s["head_dim"]
        print(
            f"| {s['vocab_size']}, {s['n_layer']}, {s['d_model']}, {heads} x {s['head_dim']}, "
            f"{s['n_groups']}, {s['d_state']} | {p['forward_max_abs']:.1e} | "
            f"{p['torch_step_max_abs']:.1e} | {p['numba_step_max_abs']:.1e} |"
        )
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
