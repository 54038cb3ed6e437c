"""Validation loss of fp32, RTN and AWQ quantized sequence models (4 and 3 bits, group 128).

    python benchmarks/seq_quant.py [--data-dir ../shared/datasets] [--minutes 5]
        [--corpora shakespeare,wikitext2] [--archs rwkv,mamba,gpt] [--models-dir DIR]

Per corpus and architecture, a model (4 layers x 256, the GPT of benchmarks/seq_train.py at the
same width) is trained for ``--minutes`` (or loaded from ``--models-dir`` when it was trained
there before with the same settings), then quantized with ``neurofabric.quant.awq``:

  rtn   group-wise asymmetric round-to-nearest (no data)
  awq   scale search + clipping search on ``--calib-seqs`` training sequences of 128 tokens

at 4 and 3 bits per weight, group 128 (every linear layer of the blocks; embeddings and the
head stay float32, as AWQ leaves them). The loss is the mean cross-entropy over the same
``--eval-batches`` x 16 validation sequences of 128 tokens for every variant.

Corpora: tiny-shakespeare, characters, nanoGPT's 90/10 split; WikiText-2 with a byte-level
BPE of 2,048 tokens trained on ``valid.txt``, trained on ``valid.txt`` and evaluated on
``test.txt``. Also times quantizing a 512 x 512 matrix (RTN packing, and AWQ's search with
512 calibration rows). Prints a table and one JSON line per row.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from _record import record
from _threads import limit_loaded, pin_threads, threads_line

THREADS = pin_threads(1)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from neurofabric.seq.gpt import GPT, GPTConfig  # noqa: E402
from neurofabric.seq.train import token_loss  # noqa: E402

SEQ = 128


def corpus(name: str, data_dir: Path):
    from neurofabric.seq.tokenizers import train_tokenizer
    from neurofabric.seq.train import TextData

    if name == "shakespeare":
        return TextData.from_file(data_dir / "tinyshakespeare" / "input.txt")
    valid = (data_dir / "wikitext2" / "valid.txt").read_text(encoding="utf-8")
    test = (data_dir / "wikitext2" / "test.txt").read_text(encoding="utf-8")
    tok = train_tokenizer("bpe", valid.splitlines(), vocab_size=2048)
    a, b = tok.encode(valid), tok.encode(test)
    return TextData(np.asarray(a + b), tok, train_frac=len(a) / (len(a) + len(b)))


def build(arch: str, V: int, args):
    from neurofabric.seq import RWKV4, Mamba, MambaConfig, RWKVConfig

    if arch == "rwkv":
        return RWKV4(RWKVConfig(vocab_size=V, n_layer=args.layers, n_embd=args.dim), seed=0)
    if arch == "mamba":
        cfg = MambaConfig(vocab_size=V, n_layer=args.layers, d_model=args.dim, chunk=8)
        return Mamba(cfg, seed=0)
    cfg = GPTConfig(V, n_layer=args.layers, n_embd=args.dim, n_head=4, block_size=SEQ)
    return GPT(cfg, seed=0)


def trained(arch: str, data, args, key: str):
    from safetensors.torch import load_file, save_file

    from neurofabric.seq.train import TrainConfig, Trainer

    model = build(arch, data.vocab_size, args)
    cache = Path(args.models_dir) / f"{key}.safetensors" if args.models_dir else None
    if cache is not None and cache.is_file():
        model.load_state_dict(load_file(cache))
        return model, "loaded"
    cfg = TrainConfig(
        lr=2e-3,
        min_lr=2e-4,
        max_steps=args.steps,
        batch_size=16,
        seq_len=SEQ,
        eval_every=args.steps,
        warmup_steps=100,
        max_time=args.minutes * 60,
    )
    res = Trainer(model, data, cfg).fit()
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, cache)
    return model, f"{res['step']} steps"


def loss(model, data, args) -> float:
    rng = np.random.default_rng(12345)
    total = []
    model.eval()
    for _ in range(args.eval_batches):
        total.append(token_loss(model, *data.batch("val", 16, SEQ, rng)))
    return float(np.mean(total))


def quant_timing() -> dict:
    from neurofabric.quant.awq import AWQConfig, PackedLinear, quantize_model

    w = torch.randn(512, 512)
    t = []
    for _ in range(5):
        t0 = time.perf_counter()
        PackedLinear.from_weight(w, 4, 128)
        t.append(time.perf_counter() - t0)
    rtn = float(np.median(t))
    x = torch.randn(512, 512)
    t0 = time.perf_counter()  # AWQ on a bare linear: one group with an input scale, 512 rows
    quantize_model(_Wrap(512), x[None], AWQConfig(max_rows=512))
    awq = time.perf_counter() - t0
    return {"rtn_pack_512x512_ms": rtn * 1e3, "awq_search_512x512_ms": awq * 1e3}


class _Wrap(torch.nn.Module):
    def __init__(self, n: int) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(n, n, bias=False)

    def forward(self, x):
        return self.lin(x)


def record_row(row: dict, args) -> None:
    """One schema line per variant of a trained model: fp32, then each method and bit width."""
    workload = {
        "corpus": row["corpus"],
        "arch": row["arch"],
        "layers": args.layers,
        "width": args.dim,
        "trained": row["trained"],
        "minutes": args.minutes,
        "seq_len": SEQ,
        "eval_batches": args.eval_batches,
        "threads": args.threads,
    }
    record(
        "seq_quant",
        "neurofabric",
        variant="fp32",
        workload=workload,
        figures={"val_loss_nats": row["fp32"]},
    )
    for bits in (int(b) for b in args.bits.split(",")):
        for method in ("rtn", "awq"):
            key = f"{method}_w{bits}"
            extra = {"bits": bits, "group": args.group, "skipped": row[f"w{bits}_skipped"]}
            if method == "awq":
                extra["calib_seqs"] = args.calib_seqs
                extra["error_vs_rtn"] = row[f"awq_w{bits}_error_vs_rtn"]
            record(
                "seq_quant",
                "neurofabric",
                variant=f"{method}-w{bits}",
                workload={**workload, **extra},
                figures={
                    "val_loss_nats": row[key],
                    "loss_vs_fp32_pct": 100 * (row[key] / row["fp32"] - 1),
                    "quantize_s": row[f"{key}_seconds"],
                    "per_weight_bits": row[f"{key}_bits_per_weight"],
                    "file_per_param_bits": row.get(f"{key}_file_bits_per_param"),
                },
                headline=("val_loss_nats", "loss_vs_fp32_pct"),
            )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data-dir", default=os.environ.get("NEUROFABRIC_DATA", "../shared/datasets"))
    ap.add_argument("--corpora", default="shakespeare,wikitext2")
    ap.add_argument("--archs", default="rwkv,mamba,gpt")
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--bits", default="4,3")
    ap.add_argument("--group", type=int, default=128)
    ap.add_argument("--calib-seqs", type=int, default=256)
    ap.add_argument("--eval-batches", type=int, default=40)
    ap.add_argument("--models-dir", default=None, help="keep / reuse the trained float models")
    ap.add_argument("--threads", type=int, default=THREADS)
    args = ap.parse_args()
    limit_loaded(args.threads)
    from neurofabric.quant.awq import AWQConfig, quantize_model
    from neurofabric.seq.io import save_quantized

    print(
        f"# {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{args.threads} threads; {args.layers} x {args.dim}, group {args.group}"
    )
    print(f"# {threads_line()}")
    timing = quant_timing()
    print(f"# quantizing one 512 x 512 matrix: {json.dumps(timing)}")
    record(
        "seq_quant",
        "neurofabric",
        variant="quantize-matrix",
        workload={
            "matrix": "512x512",
            "bits": 4,
            "group": 128,
            "calib_rows": 512,
            "threads": args.threads,
        },
        figures=timing,
    )
    rows = []
    for cname in args.corpora.split(","):
        data = corpus(cname, Path(args.data_dir))
        rng = np.random.default_rng(7)
        calib = torch.from_numpy(
            np.stack(
                [
                    data.train[s : s + SEQ]
                    for s in rng.integers(0, len(data.train) - SEQ, args.calib_seqs)
                ]
            )
        ).split(16)
        for arch in args.archs.split(","):
            key = f"{cname}-{arch}-{args.layers}x{args.dim}-{args.minutes}min"
            model, how = trained(arch, data, args, key)
            base = loss(model, data, args)
            row = {"corpus": cname, "arch": arch, "trained": how, "fp32": base}
            for bits in (int(b) for b in args.bits.split(",")):
                for method in ("rtn", "awq"):
                    q = copy.deepcopy(model)
                    t0 = time.perf_counter()
                    rep = quantize_model(
                        q, calib, AWQConfig(bits=bits, group_size=args.group, method=method)
                    )
                    secs = time.perf_counter() - t0
                    row[f"{method}_w{bits}"] = loss(q, data, args)
                    row[f"{method}_w{bits}_seconds"] = secs
                    row[f"{method}_w{bits}_bits_per_weight"] = rep.bits_per_weight
                    row[f"w{bits}_skipped"] = sorted(rep.skipped)
                    if method == "awq":  # where AWQ gains: calibration error against RTN's
                        kinds: dict[str, list[float]] = {}
                        for name, v in rep.layers.items():
                            kind = ".".join(p for p in name.split(".") if not p.isdigit())
                            kinds.setdefault(kind, []).append(v["error_vs_rtn"])
                        row[f"awq_w{bits}_error_vs_rtn"] = {
                            k: round(float(np.mean(v)), 3) for k, v in kinds.items()
                        }
                    if arch != "gpt":  # the whole file: float embeddings and norms included
                        with tempfile.TemporaryDirectory() as tmp:
                            save_quantized(q, Path(tmp) / "q")
                            size = (Path(tmp) / "q" / "model.safetensors").stat().st_size
                        n = sum(p.numel() for p in model.parameters())
                        row[f"{method}_w{bits}_file_bits_per_param"] = 8 * size / n
            rows.append(row)
            record_row(row, args)
    print(
        "\n| corpus | model | fp32 | RTN w4 | AWQ w4 | AWQ w4 vs fp32 | RTN w3 | AWQ w3 | "
        "bits/weight (w4, w3) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['corpus']} | {r['arch']} | {r['fp32']:.4f} | {r.get('rtn_w4', float('nan')):.4f} | "
            f"{r.get('awq_w4', float('nan')):.4f} | "
            f"{100 * (r.get('awq_w4', float('nan')) / r['fp32'] - 1):+.2f} % | "
            f"{r.get('rtn_w3', float('nan')):.4f} | {r.get('awq_w3', float('nan')):.4f} | "
            f"{r.get('awq_w4_bits_per_weight', float('nan')):.3f}, "
            f"{r.get('awq_w3_bits_per_weight', float('nan')):.3f} |"
        )


if __name__ == "__main__":
    main()
