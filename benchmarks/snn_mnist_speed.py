"""Diehl & Cook training speed on MNIST: neurofabric against BindsNET, same machine, same run.

    make peers                                     # BindsNET 0.3.4 on torch 2.13.0 (CPU)
    python benchmarks/snn_mnist_speed.py --data-dir ../shared/datasets --train 1000

Trains 100 excitatory neurons on the first ``--train`` MNIST training images, one process per
system, ``--threads`` threads each (default 1: ``NEUROFABRIC_THREADS``, numba, BLAS and OpenMP
through benchmarks/_threads.py, and BindsNET's ``torch.set_num_threads``):

* ``neurofabric (paper protocol)``: DiehlCookClassifier (the published code's learning rule,
  ``rule="code"``) as in the paper: dt 0.5 ms, 350 ms
  presentation + 150 ms rest (1,000 steps per image), conductance synapses, adaptive
  thresholds, re-presentation with more input when fewer than 5 spikes;
* ``neurofabric (BindsNET protocol)``: the same network timed like BindsNET's example,
  250 ms presentation and no rest, but still at dt 0.5 ms (500 steps per image, twice
  BindsNET's: our conductance synapses have tau_e = 1 ms, and the simulator refuses a dt
  that is not smaller than the shortest time constant);
* ``bindsnet``: BindsNET's ``DiehlAndCook2015`` run as its ``examples/mnist/eth_mnist.py``
  does (benchmarks/peers/bindsnet_diehl_cook.py: dt 1 ms, 250 ms per image, its monitors).

Prints a table with images/s and the ratio to BindsNET, and one JSON line. Each system's
time covers its training loop only (no data loading, no JIT or warm-up).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from _record import record
from _threads import limit_loaded, pin_threads, thread_env, threads_info, threads_line

THREADS = pin_threads(1)

ROOT = Path(__file__).resolve().parents[1]


def ours(args: argparse.Namespace) -> None:
    """Child mode: train and print one JSON line."""
    from neurofabric.data import load_mnist
    from neurofabric.snn.diehl_cook import DiehlCookClassifier

    limit_loaded(THREADS)
    x, y = load_mnist("train", data_dir=args.data_dir)
    x, y = x[: args.train], y[: args.train]
    proto = (
        {"dt": 0.5e-3, "t_present": 0.35, "t_rest": 0.15}
        if args.protocol == "paper"
        else {"dt": 0.5e-3, "t_present": 0.25, "t_rest": 0.0}
    )
    DiehlCookClassifier(n_neurons=args.neurons, seed=1, rule="code", **proto).fit(
        x[:3], y[:3], label_images=0
    )  # compile / load the kernels outside the timing
    clf = DiehlCookClassifier(n_neurons=args.neurons, seed=args.seed, rule="code", **proto)
    t0 = time.perf_counter()
    clf.fit(x, y, label_images=0)
    train_s = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "system": f"neurofabric ({args.protocol} protocol)",
                "neurons": args.neurons,
                "train_images": args.train,
                "train_s": train_s,
                "images_per_s": args.train / train_s,
                "dt_ms": proto["dt"] * 1e3,
                "t_present_ms": proto["t_present"] * 1e3,
                "t_rest_ms": proto["t_rest"] * 1e3,
                "threads": THREADS,
                "thread_pools": threads_info(),
            }
        )
    )


def run_child(cmd: list[str], name: str) -> dict:
    env = dict(os.environ, **thread_env(THREADS))
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        return {"system": name, "error": f"exit {proc.returncode}: {tail}"}
    return json.loads(lines[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default=os.environ.get("NEUROFABRIC_DATA", "../shared/datasets"))
    ap.add_argument("--train", type=int, default=1000)
    ap.add_argument("--neurons", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--peers-python", default=str(ROOT / ".venv-peers" / "bin" / "python"))
    ap.add_argument(
        "--threads",
        type=int,
        default=THREADS,
        help="threads for every system (pinned before numpy loads)",
    )
    ap.add_argument("--protocol", choices=("paper", "bindsnet"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.protocol:
        ours(args)
        return
    common = ["--data-dir", args.data_dir, "--train", str(args.train)]
    common += ["--neurons", str(args.neurons), "--seed", str(args.seed)]
    common += ["--threads", str(THREADS)]
    rows = [
        run_child([sys.executable, __file__, *common, "--protocol", p], f"neurofabric ({p})")
        for p in ("paper", "bindsnet")
    ]
    peer = [args.peers_python, str(ROOT / "benchmarks/peers/bindsnet_diehl_cook.py")]
    peer += ["--data-dir", args.data_dir, "--train", str(args.train)]
    peer += ["--neurons", str(args.neurons), "--progress-interval", "0"]
    peer += ["--threads", str(THREADS)]
    rows.append(run_child(peer, "bindsnet"))
    base = rows[-1].get("images_per_s")
    print(
        f"\nMachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {THREADS} thread(s) per system"
    )
    print(f"Threads (this process; children get the same): {threads_line()}")
    print(
        f"Command: python benchmarks/snn_mnist_speed.py --train {args.train} --threads {THREADS}\n"
    )
    print("| system | steps per image | train images | images/s | vs BindsNET |")
    print("|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['system']} | - | - | error: {r['error']} | - |")
            continue
        steps = int(round((r["t_present_ms"] + r.get("t_rest_ms", 0.0)) / r["dt_ms"]))
        ratio = f"{r['images_per_s'] / base:.1f}x" if base else "-"
        print(
            f"| {r['system']} | {steps} | {r['train_images']} | {r['images_per_s']:.1f} | {ratio} |"
        )
    measured = ("system", "train_s", "images_per_s", "ms_per_image", "build_s")
    for r in rows:
        system, _, mode = r["system"].partition(" (")  # "neurofabric (paper protocol)"
        variant = mode.rstrip(")").removesuffix(" protocol") + "-protocol" if mode else None
        workload = {"dataset": "mnist", "model": "diehl_cook_2015", "seed": args.seed}
        workload.update({k: v for k, v in r.items() if k not in measured})
        if "error" not in r:
            steps = int(round((r["t_present_ms"] + r.get("t_rest_ms", 0.0)) / r["dt_ms"]))
            workload["steps_per_image"] = steps
        figures = {"train_s": r.get("train_s"), "images_per_s": r.get("images_per_s")}
        if "ms_per_image" in r:
            figures["per_image_ms"] = r["ms_per_image"]
        if "build_s" in r:
            figures["build_s"] = r["build_s"]
        headline = ["images_per_s"]
        if system == "neurofabric":  # the table's "vs BindsNET": our images/s over its
            figures["speedup_x"] = r["images_per_s"] / base if base and "error" not in r else None
            headline.append("speedup_x")
        record(
            "snn_mnist_speed",
            system,
            variant=variant,
            workload=workload,
            figures=figures,
            headline=headline,
        )


if __name__ == "__main__":
    main()
