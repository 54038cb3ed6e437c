"""Character-level tiny-shakespeare: RWKV-4, RWKV-7, Mamba-1 and Mamba-2 against a small GPT of
RWKV-4's size, same time budget, same data, same trainer.

    python benchmarks/seq_train.py [--data-dir ../shared/datasets] [--minutes 60] [--archs rwkv,rwkv7,mamba,mamba2,gpt]

The text is split as nanoGPT's shakespeare_char does (first 90 % train, last 10 % validation),
characters as tokens. Every model trains with the same ``neurofabric.seq.train.Trainer``
(AdamW, warmup + cosine over the step budget, clipping) until ``--minutes`` of wall time have
passed; validation loss (nats per character) is measured every ``--eval-every`` steps on the
same 20 batches. The GPT baseline is `neurofabric.seq.gpt`, nanoGPT-style (learned positions, pre-LN
blocks of causal self-attention and a 4x GELU MLP, tied head), sized to the RWKV model's
parameter count. Prints a table and JSON lines and writes the curves to a PNG.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

from _record import record
from _threads import limit_loaded, pin_threads, threads_info, threads_line

THREADS = pin_threads(2)

import torch  # noqa: E402

from neurofabric.seq.gpt import GPT, GPTConfig  # noqa: E402


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def gpt_matching(vocab: int, target: int, n_layer: int, seq_len: int) -> GPT:
    """The GPT width (a multiple of its head count) whose parameter count is nearest ``target``."""
    best = None
    for width in range(64, 1025, 16):
        m = GPT(GPTConfig(vocab, n_layer=n_layer, n_embd=width, n_head=4, block_size=seq_len))
        gap = abs(n_params(m) - target)
        if best is None or gap < best[0]:
            best = (gap, m)
    return best[1]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data-dir", default=os.environ.get("NEUROFABRIC_DATA", "../shared/datasets"))
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--archs", default="rwkv,mamba,gpt")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument(
        "--steps", type=int, default=20000, help="schedule length (the time budget stops first)"
    )
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument(
        "--threads",
        type=int,
        default=THREADS,
        help="threads for every system (pinned before numpy loads)",
    )
    ap.add_argument("--plot", default="docs/figures/seq_train_shakespeare.png")
    args = ap.parse_args()
    limit_loaded(args.threads)

    from neurofabric.seq import RWKV4, Mamba, MambaConfig, RWKVConfig
    from neurofabric.seq.mamba2 import Mamba2, Mamba2Config
    from neurofabric.seq.rwkv7 import RWKV7, RWKV7Config
    from neurofabric.seq.train import TextData, TrainConfig, Trainer

    data = TextData.from_file(Path(args.data_dir) / "tinyshakespeare" / "input.txt")
    V = data.vocab_size
    rwkv = RWKV4(RWKVConfig(vocab_size=V, n_layer=args.layers, n_embd=args.dim), seed=0)
    models = {
        "rwkv": lambda: rwkv,
        "mamba": lambda: Mamba(
            MambaConfig(vocab_size=V, n_layer=args.layers, d_model=args.dim, chunk=8), seed=0
        ),
        "rwkv7": lambda: RWKV7(
            RWKV7Config(vocab_size=V, n_layer=args.layers, n_embd=args.dim), seed=0
        ),
        "mamba2": lambda: Mamba2(
            Mamba2Config(vocab_size=V, n_layer=args.layers, d_model=args.dim), seed=0
        ),
        "gpt": lambda: gpt_matching(V, n_params(rwkv), args.layers, args.seq_len),
    }
    print(
        f"# {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {args.threads} threads, "
        f"{args.minutes} min per model, vocab {V}, train {len(data.train):,} / val {len(data.val):,} chars"
    )
    print(f"# {threads_line()}")
    results = {}
    for name in args.archs.split(","):
        model = models[name]()
        cfg = TrainConfig(
            lr=args.lr,
            min_lr=args.lr / 10,
            max_steps=args.steps,
            batch_size=args.batch_size,
            seq_len=args.seq_len,
            eval_every=args.eval_every,
            warmup_steps=200,
            max_time=args.minutes * 60,
        )
        t0 = time.perf_counter()
        res = Trainer(model, data, cfg).fit()
        secs = time.perf_counter() - t0
        curve = [(r["seconds"], r["val_loss"]) for r in res["history"] if "val_loss" in r]
        results[name] = {
            "params": n_params(model),
            "steps": res["step"],
            "seconds": secs,
            "val_loss": res["val_loss"],
            "best_val_loss": res["best_val_loss"],
            "curve": curve,
        }
        r = results[name]
        record(
            "seq_train",
            "neurofabric",  # the GPT baseline is ours too (neurofabric.seq.gpt, on torch)
            variant=name,
            workload={
                "dataset": "tinyshakespeare",
                "arch": name,
                "layers": args.layers,
                "width": model.config.n_embd if name == "gpt" else args.dim,  # GPT: matched
                "vocab": V,
                "params": r["params"],
                "batch": args.batch_size,
                "seq_len": args.seq_len,
                "lr": args.lr,
                "minutes": args.minutes,
                "max_steps": args.steps,
                "eval_every": args.eval_every,
                "curve": r["curve"],  # (seconds, validation loss in nats/char) pairs
                "threads": THREADS,
                "thread_pools": threads_info(),
            },
            figures={
                "trained_steps": r["steps"],
                "wall_s": r["seconds"],
                "val_loss_nats": r["val_loss"],
                "best_val_loss_nats": r["best_val_loss"],
            },
            headline=("val_loss_nats", "best_val_loss_nats"),
        )
    print("\n| model | parameters | steps | minutes | final val loss | best val loss (nats/char) |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        print(
            f"| {name} | {r['params']:,} | {r['steps']:,} | {r['seconds'] / 60:.1f} | {r['val_loss']:.4f} | {r['best_val_loss']:.4f} |"
        )
    if args.plot:
        from neurofabric.core.figures import pyplot, save_figure

        plt = pyplot()
        fig, ax = plt.subplots(figsize=(7, 4))
        for name, r in results.items():
            ax.plot(
                [t / 60 for t, _ in r["curve"]],
                [v for _, v in r["curve"]],
                label=f"{name} ({r['params']:,})",
            )
        ax.axhline(1.55, color="grey", ls="--", lw=0.8, label="1.55 nats/char")
        ax.set_xlabel("minutes")
        ax.set_ylabel("validation loss (nats/char)")
        ax.legend()
        fig.tight_layout()
        save_figure(fig, args.plot)
        print(f"curves: {args.plot}")


if __name__ == "__main__":
    main()
