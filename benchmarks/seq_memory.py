"""Memory of RWKV-4, RWKV-7, Mamba and Mamba-2: the estimate from the config against what is
measured.

    python benchmarks/seq_memory.py [--batch-size 16] [--seq-len 128]

For each model (4 layers x 384 at vocab 256 and 50,277, as in ``seq_decode.py``, and the
4 x 256 character models of ``seq_train.py``) it prints:

* ``neurofabric.seq.memory.estimate_memory`` (config only) and ``measure_memory`` (a real
  training step on the model, with saved-tensor hooks) for parameters, AdamW state, the
  recurrent state per sequence and the training activations, with the relative error;
* a coarser, independent witness: the growth of the process's peak RSS over one forward and
  backward pass, measured in a fresh subprocess (``/proc/self/clear_refs``), next to the
  estimate of what that pass allocates (activations + gradients). The peak also holds the
  backward pass's temporaries, so it is expected to sit above the estimate.

Prints a table and one JSON line per model.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys

from _record import record
from _threads import limit_loaded, pin_threads, threads_info, threads_line

THREADS = pin_threads(1)

MODELS = {
    "rwkv-4x384-v256": ("rwkv", 384, 256),
    "mamba-4x384-v256": ("mamba", 384, 256),
    "rwkv-4x384-v50277": ("rwkv", 384, 50277),
    "mamba-4x384-v50277": ("mamba", 384, 50277),
    "rwkv-4x256-v66": ("rwkv", 256, 66),
    "rwkv-chunked-4x256-v66": ("rwkv-chunked", 256, 66),
    "mamba-4x256-v66": ("mamba", 256, 66),
    "mamba-chunked-4x256-v66": ("mamba-chunked", 256, 66),
    "rwkv7-4x384-v256": ("rwkv7", 384, 256),
    "mamba2-4x384-v256": ("mamba2", 384, 256),
    "rwkv7-4x256-v66": ("rwkv7", 256, 66),
    "mamba2-4x256-v66": ("mamba2", 256, 66),
}


def build(kind: str, dim: int, vocab: int):
    from neurofabric.seq import RWKV4, Mamba, MambaConfig, RWKVConfig
    from neurofabric.seq.mamba2 import Mamba2, Mamba2Config
    from neurofabric.seq.rwkv7 import RWKV7, RWKV7Config

    if kind == "rwkv7":  # the numba WKV-7, the CPU default, which the estimate counts
        return RWKV7(RWKV7Config(vocab_size=vocab, n_layer=4, n_embd=dim, wkv="numba"), seed=0)
    if kind == "mamba2":
        return Mamba2(Mamba2Config(vocab_size=vocab, n_layer=4, d_model=dim), seed=0)
    if kind.startswith("rwkv"):
        wkv = "chunked" if kind == "rwkv-chunked" else "numba"
        return RWKV4(RWKVConfig(vocab_size=vocab, n_layer=4, n_embd=dim, wkv=wkv), seed=0)
    scan = "chunked" if kind == "mamba-chunked" else "numba"
    return Mamba(MambaConfig(vocab_size=vocab, n_layer=4, d_model=dim, scan=scan), seed=0)


def _status(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def peak_child(name: str, batch: int, seq_len: int) -> None:
    """In a fresh process: peak RSS growth over one forward + backward pass."""
    import torch

    limit_loaded(THREADS)
    model = build(*MODELS[name])
    V = model.config.vocab_size
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, V, (batch, seq_len), generator=gen)
    y = torch.randint(0, V, (batch, seq_len), generator=gen)
    with torch.no_grad():  # load kernels and libraries before the baseline
        model(x[:1, :8])
    base = _status("VmRSS")
    with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
        fh.write("5")  # reset VmHWM to the current RSS
    logits, _ = model(x)
    torch.nn.functional.cross_entropy(logits.reshape(-1, V), y.reshape(-1)).backward()
    print(json.dumps({"peak_growth": _status("VmHWM") - base}))


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument(
        "--threads",
        type=int,
        default=THREADS,
        help="threads for every system (pinned before numpy loads)",
    )
    ap.add_argument("--peak-child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.peak_child:
        peak_child(args.peak_child, args.batch_size, args.seq_len)
        return

    import torch

    from neurofabric.seq.memory import estimate_memory, measure_memory, relative_errors

    limit_loaded(THREADS)
    print(f"# {threads_line()}")
    print(
        f"# {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"batch {args.batch_size} x {args.seq_len} tokens, float32"
    )
    mib = 2**20
    rows = []
    for name in args.models.split(","):
        model = build(*MODELS[name])
        est = estimate_memory(model, batch_size=args.batch_size, seq_len=args.seq_len)
        meas = measure_memory(model, batch_size=args.batch_size, seq_len=args.seq_len)
        err = relative_errors(est, meas)
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--peak-child",
                name,
                "--batch-size",
                str(args.batch_size),
                "--seq-len",
                str(args.seq_len),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        peak = json.loads(out.stdout.strip().splitlines()[-1])["peak_growth"]
        pass_est = est.activations + est.gradients
        row = {
            "benchmark": "seq_memory",
            "model": name,
            "estimate": est.as_dict(),
            "measured": meas.as_dict(),
            "relative_error": err,
            "peak_rss_growth": peak,
            "peak_over_estimate": peak / pass_est,
            "threads": THREADS,
            "thread_pools": threads_info(),
        }
        rows.append(row)
        kind, dim, vocab = MODELS[name]
        sizes = [k for k in row["estimate"] if k not in ("arch", "batch_size", "seq_len")]
        record(
            "seq_memory",
            "neurofabric",
            variant=kind,
            workload={
                "model": name,
                "layers": 4,
                "width": dim,
                "vocab": vocab,
                "batch": args.batch_size,
                "seq_len": args.seq_len,
                "dtype": "float32",
                "threads": THREADS,
                "thread_pools": row["thread_pools"],
            },
            figures={
                **{f"estimate_{k}_bytes": row["estimate"][k] for k in sizes},
                **{f"measured_{k}_bytes": row["measured"][k] for k in sizes},
                **{f"{k}_error_frac": v for k, v in row["relative_error"].items()},
                "peak_rss_growth_bytes": row["peak_rss_growth"],
                "peak_over_estimate_x": row["peak_over_estimate"],
            },
            headline=("estimate_training_bytes", "activations_error_frac", "peak_over_estimate_x"),
        )
    print(
        "\n| model | parameters (MiB) | AdamW state (MiB) | state per sequence (KiB) "
        "| activations, estimate / measured (MiB) | error | training total (MiB) "
        "| peak RSS growth of one pass / estimate (MiB) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        e, m = r["estimate"], r["measured"]
        print(
            f"| {r['model']} | {e['parameters'] / mib:.1f} | {e['optimizer'] / mib:.1f} "
            f"| {e['state_per_sequence'] / 1024:.1f} "
            f"| {e['activations'] / mib:.1f} / {m['activations'] / mib:.1f} "
            f"| {100 * r['relative_error']['activations']:.2f} % | {e['training'] / mib:.1f} "
            f"| {r['peak_rss_growth'] / mib:.1f} / {(e['activations'] + e['gradients']) / mib:.1f} "
            f"({r['peak_over_estimate']:.2f}x) |"
        )
    worst = max(max(r["relative_error"].values()) for r in rows)
    print(f"\nlargest relative error of any estimate: {100 * worst:.2f} %")


if __name__ == "__main__":
    main()
