"""Run every headline benchmark (the ones the README quotes) and collect their JSON lines.

    python benchmarks/run_all.py                       # all of them, default arguments
    python benchmarks/run_all.py --only snn_nir,seq_decode
    python benchmarks/run_all.py --quick               # smoke-test sizes, minutes not hours
    python benchmarks/run_all.py --list

Each benchmark runs in its own process, one after the other (never two at once: they time
themselves), with ``NEUROFABRIC_BENCH_RESULTS`` set, so every row it records
(``_record.record``) is appended to ``benchmarks/results/<date>-<machine>.jsonl`` (or
``--results``). Scripts that compare with peers get ``--peers-python`` (``.venv-peers``,
``make peers``), those that read datasets ``--data-dir`` (``--data-dir`` here, else
``NEUROFABRIC_DATA``, else ``../shared/datasets``). A benchmark that fails is reported and the
others still run; the exit status is 1 if any failed. ``make bench`` runs this, then
``report.py --write`` on the file.

The full set takes many hours on a small machine (the full-scale microcircuit, MNIST training,
a 40 GiB field beyond RAM); ``--only`` picks a few.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path

from _record import RESULTS_ENV, RUN_ENV, machine, machine_slug

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent

# name: (default arguments, quick arguments or None when there is no short form)
HEADLINE: dict[str, tuple[list[str], list[str] | None]] = {
    "snn_cuba": ([], ["--sizes", "4000", "--duration", "0.2", "--repeats", "1"]),
    "snn_first_run": (
        [],
        ["--parts", "first-run", "--threads", "1", "--repeats", "1", "--skip-peers"],
    ),
    "snn_microcircuit": (
        ["--scale", "1", "--k-scale", "1", "--duration", "10", "--presim", "0.1"],
        ["--scale", "0.02", "--k-scale", "0.02", "--duration", "0.1", "--presim", "0.05"],
    ),
    "snn_mnist": ([], None),
    "snn_mnist_speed": ([], ["--train", "50"]),
    "snn_brain": (
        [],
        ["--parts", "sweep,swap", "--n", "2000", "--duration", "0.2"],
    ),
    "snn_nir": ([], ["--sizes", "200", "400", "20", "--steps", "200", "--repeats", "1"]),
    "snn_mpi": ([], ["--neurons", "20000", "--duration", "0.05", "--repeats", "2"]),
    "guard_text": ([], None),
    "guard_size": ([], ["--quick"]),
    "guard_parallel": ([], ["--quick"]),
    "guard_runtime": ([], ["--quick"]),
    "thermo_digits": ([], ["--seeds", "1", "--proposals", "20000"]),
    # three cold verify=True loads: one alone is at the mercy of this kind of VM's disk
    "thermo_load": (["--verify-repeats", "3"], ["--weights", "1000000", "--repeats", "1"]),
    "thermo_mnist": ([], None),
    "thermo_prune": ([], ["--quick"]),
    "thermo_replicas": ([], ["--quick"]),
    "thermo_torch": ([], ["--quick"]),
    "thermo_lifelong": ([], ["--quick"]),
    # PSNR every 0.5 s of training (evaluation off the clock): the time to 25 dB, a headline
    # figure, is only as fine as this
    "field_fit": (["--eval-every", "0.5"], ["--seconds", "3", "--eval-every", "1"]),
    "field_sdf": (["--eval-every", "0.5"], ["--seconds", "3", "--eval-every", "1"]),
    "field_query": ([], ["--log2-table", "16", "--queries", "300", "--stream", "2000"]),
    "field_throughput": ([], ["--seconds", "0.5", "--threads", "1"]),
    "field_beyond_ram": (["--max-disk-gib", "40"], None),
    "seq_decode": ([], ["--tokens", "16"]),
    "seq_quant": ([], ["--steps", "20"]),
    "seq_train": ([], ["--steps", "20"]),
    "seq_ddp": ([], ["--quick"]),
}


def _takes(script: Path, option: str) -> bool:
    return f'"{option}"' in script.read_text()


def command(name: str, quick: bool, peers_python: Path, data_dir: str) -> list[str] | None:
    default, short = HEADLINE[name]
    args = short if quick else default
    if args is None:
        return None
    script = HERE / f"{name}.py"
    cmd = [sys.executable, str(script), *args]
    if _takes(script, "--peers-python"):
        cmd += ["--peers-python", str(peers_python)]
    if _takes(script, "--data-dir"):
        cmd += ["--data-dir", data_dir]
    return cmd


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", default="", help="comma-separated names (default: all)")
    ap.add_argument("--quick", action="store_true", help="smoke-test sizes where there are")
    ap.add_argument("--list", action="store_true", help="print the commands and stop")
    ap.add_argument("--results", type=Path, default=None, help="the JSON-lines file")
    ap.add_argument("--peers-python", type=Path, default=ROOT / ".venv-peers" / "bin" / "python")
    ap.add_argument(
        "--data-dir",
        default=os.environ.get("NEUROFABRIC_DATA", str(ROOT.parent / "shared/datasets")),
    )
    args = ap.parse_args()
    names = [n for n in args.only.split(",") if n] or list(HEADLINE)
    unknown = sorted(set(names) - set(HEADLINE))
    if unknown:
        ap.error(f"unknown benchmarks {unknown}; known: {', '.join(HEADLINE)}")
    suffix = "-quick" if args.quick else ""
    results = args.results or (
        HERE / "results" / f"{dt.date.today().isoformat()}-{machine_slug()}{suffix}.jsonl"
    )
    plan = [(n, command(n, args.quick, args.peers_python, args.data_dir)) for n in names]
    if args.list:
        for name, cmd in plan:
            shown = "(no quick form: skipped)" if cmd is None else " ".join(cmd[1:])
            print(f"{name}: {shown}")
        return 0
    results.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, RESULTS_ENV: str(results)}
    print(f"machine: {machine()}\nresults: {results}", flush=True)
    failed = []
    for name, cmd in plan:
        if cmd is None:
            print(f"== {name}: no quick form, skipped", flush=True)
            continue
        print(f"== {name}: {' '.join(cmd[1:])}", flush=True)
        t0 = time.perf_counter()
        run_id = f"{dt.datetime.now():%Y-%m-%dT%H:%M:%S}-{name}"
        done = subprocess.run(cmd, env={**env, RUN_ENV: run_id}, cwd=ROOT)
        took = time.perf_counter() - t0
        status = "ok" if done.returncode == 0 else f"FAILED (exit {done.returncode})"
        print(f"== {name}: {status} in {took:.0f} s", flush=True)
        if done.returncode != 0:
            failed.append(name)
    print(f"results: {results}" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
