"""Data-parallel training on 1 and 2 processes (torchrun, gloo): steps per second and the
losses, on character-level tiny-shakespeare, the same global batch in every row.

    python benchmarks/seq_ddp.py [--data-dir ../shared/datasets] [--steps 60] [--archs rwkv,mamba,gpt]
    python benchmarks/seq_ddp.py --quick

Each row runs ``neurofabric seq train`` in fresh processes with --eval-every equal to the
step count (one evaluation, at the end): one process on one thread, one process on two
threads (torch's intra-op pool: the other way to use a second core), and
``torchrun --nproc-per-node 2`` with one thread per process. Reported: steps per second from
the run's own clock (the second half of the steps, after warm-up, from metrics written by
rank 0 at the end; the model build and torch's start are excluded), and the final training
and validation losses, which must agree between the rows (same global batch, gradients
averaged over the processes).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

from _record import record


def run(args, arch: str, processes: int, threads: int, text: Path) -> dict:
    env = dict(os.environ, NEUROFABRIC_PROGRESS="0", OMP_WAIT_POLICY="PASSIVE")
    for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env[v] = str(threads)
    out = Path(tempfile.mkdtemp(prefix="nf-ddp-")) / "run"
    cmd = [sys.executable]
    if processes > 1:
        cmd += ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
    cmd += ["-m", "neurofabric", "seq", "train", "--data", str(text), "--out", str(out)]
    cmd += ["--arch", arch, "--layers", str(args.layers), "--dim", str(args.dim)]
    cmd += ["--steps", str(args.steps), "--batch-size", str(args.batch_size)]
    cmd += ["--seq-len", str(args.seq_len), "--eval-every", str(args.steps // 2), "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode:
        sys.exit(f"{arch} on {processes} process(es) failed:\n{proc.stderr[-3000:]}")
    summary = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("{")][-1])
    half, end = summary["history"][0], summary["history"][-1]
    return {
        "arch": arch,
        "processes": processes,
        "threads": threads,
        "steps_per_s": (end["step"] - half["step"]) / (end["seconds"] - half["seconds"]),
        "train_loss": end["train_loss"],
        "val_loss": end["val_loss"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", default=os.environ.get("NEUROFABRIC_DATA", "../shared/datasets"))
    ap.add_argument("--quick", action="store_true", help="a small model, a few steps")
    ap.add_argument("--archs", default="rwkv,mamba,gpt")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=128)
    args = ap.parse_args()
    if args.quick:
        args.steps, args.layers, args.dim, args.seq_len = 20, 2, 64, 64
    text = Path(args.data_dir) / "tinyshakespeare" / "input.txt"
    if not text.is_file():
        sys.exit(
            f"{text} not found: pass --data-dir (or NEUROFABRIC_DATA) holding tinyshakespeare/"
        )
    print(
        f"# tiny-shakespeare, {args.layers} x {args.dim}, batch {args.batch_size} x "
        f"{args.seq_len}, {args.steps} steps; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cpus",
        flush=True,
    )
    rows = []
    for arch in args.archs.split(","):
        for processes, threads in ((1, 1), (1, 2), (2, 1)):
            r = run(args, arch, processes, threads, text)
            rows.append(r)
            print(f"#   {r}", flush=True)
    print()
    print("| model | processes x threads | steps/s | vs 1 x 1 | train loss | val loss |")
    print("|---|---|---:|---:|---:|---:|")
    base = {r["arch"]: r for r in rows if r["processes"] == 1 and r["threads"] == 1}
    for r in rows:
        speed = r["steps_per_s"] / base[r["arch"]]["steps_per_s"]
        print(
            f"| {r['arch']} | {r['processes']} x {r['threads']} | {r['steps_per_s']:.2f} | "
            f"{speed:.2f}x | {r['train_loss']:.5f} | {r['val_loss']:.5f} |"
        )
        record(
            "seq_ddp",
            "neurofabric",
            variant=f"{r['processes']}proc-{r['threads']}thread",
            workload={
                "model": r["arch"],
                "layers": args.layers,
                "dim": args.dim,
                "batch": args.batch_size,
                "seq_len": args.seq_len,
                "steps": args.steps,
                "processes": r["processes"],
                "threads": r["threads"],
            },
            figures={
                "steps_per_s": r["steps_per_s"],
                "speedup_x": speed,
                "train_loss_nats": r["train_loss"],
                "val_loss_nats": r["val_loss"],
            },
            headline=("steps_per_s", "speedup_x"),
        )


if __name__ == "__main__":
    main()
