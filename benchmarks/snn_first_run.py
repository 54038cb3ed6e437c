"""The first run of a fresh process: `neurofabric snn run cuba` for 1 s of CUBA 4,000, the
whole process timed (imports, compiling, building, simulating), with an empty kernel cache.

    python benchmarks/snn_first_run.py                     # 1 and 2 threads, 3 repeats
    python benchmarks/snn_first_run.py --threads 1 --repeats 1 --skip-peers
    python benchmarks/snn_first_run.py --parts compile     # `neurofabric snn compile` only

Rows, per thread count (the median of ``--repeats`` runs, each with a new empty cache):

* ``compile-ahead``: as shipped; the step loop compiles in a forked helper process while the
  network builds (``neurofabric.core.numba_cache.compile_ahead``);
* ``one-process``: the same with ``NEUROFABRIC_COMPILE_AHEAD=0``: everything compiles in the
  run's own process, one kernel after the other (the code before compiling ahead);
* ``cached``: the kernel cache filled (by ``make``'s ``neurofabric snn compile``);
* Brian2 C++ standalone (peers venv), code generation and a full build in a new build folder.

With ``--parts compile`` (recorded as ``snn_compile``): the whole process of ``neurofabric snn
compile`` (what ``make`` runs once: six example networks) with an empty cache, its step loops
compiled ahead and in one process (``NEUROFABRIC_COMPILE_AHEAD=0``).

**Fair:** the same thread settings for every process (benchmarks/_threads.py); the simulation
runs on ``--threads`` threads in every system, while compiling uses the cores it finds in
ours (the helper) and in Brian2 (``make -j``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _record import record
from snn_cuba import ROOT, _env, machine, peer

GOAL_S = 5.0  # issue 17: a first run with an empty kernel cache


def _ours(neurons: int, threads: int, cold: bool, ahead: bool, command=None) -> float:
    """Whole-process seconds of ``neurofabric snn run cuba`` (or of ``command``, arguments
    after ``neurofabric``), with an empty kernel cache if ``cold``."""
    env = _env(threads, NEUROFABRIC_COMPILE_AHEAD="1" if ahead else "0")
    cache = tempfile.mkdtemp(prefix="nf-numba-") if cold else None
    if cache:
        env["NUMBA_CACHE_DIR"] = cache
    cmd = [sys.executable, "-m", "neurofabric"]
    cmd += command or ["snn", "run", "cuba", "--neurons", str(neurons), "--duration", "1.0"]
    cmd += [] if command else ["--json"]
    try:
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
        wall = time.perf_counter() - t0
    finally:
        if cache:
            shutil.rmtree(cache, ignore_errors=True)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr[-500:]}")
    return wall


def _brian2(neurons: int, threads: int, args: argparse.Namespace) -> float | None:
    build = tempfile.mkdtemp(prefix="nf-brian2-")
    try:
        row = peer(
            "brian2_cuba.py",
            args.peers_python,
            neurons,
            argparse.Namespace(duration=1.0, seed=1),
            threads,
            target="cpp_standalone",
            build_dir=build,
        )
    finally:
        shutil.rmtree(build, ignore_errors=True)
    return row.get("process_wall_s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--neurons", type=int, default=4000)
    ap.add_argument("--threads", default="1,2", help="comma list of thread counts")
    ap.add_argument("--repeats", type=int, default=3, help="runs per row (median)")
    ap.add_argument("--peers-python", default=str(ROOT / ".venv-peers" / "bin" / "python"))
    ap.add_argument("--skip-peers", action="store_true")
    ap.add_argument("--parts", default="first-run,compile", help="first-run and/or compile")
    ap.add_argument("--compile-repeats", type=int, default=1, help="runs of each snn compile")
    args = ap.parse_args()
    parts = {p for p in args.parts.split(",") if p}
    if not parts or parts - {"first-run", "compile"}:
        ap.error(f"--parts must name first-run and/or compile, got {args.parts!r}")
    peers_ok = not args.skip_peers and Path(args.peers_python).exists()
    table = []
    if "compile" in parts:
        table += _compile_rows(args.compile_repeats)
    threads_list = [int(t) for t in args.threads.split(",") if t]
    for threads in threads_list if "first-run" in parts else []:
        times: dict[str, list[float]] = {"compile-ahead": [], "one-process": [], "cached": []}
        brian2: list[float] = []
        for _ in range(args.repeats):  # interleaved: the machine's drift hits every row
            times["compile-ahead"].append(_ours(args.neurons, threads, True, True))
            times["one-process"].append(_ours(args.neurons, threads, True, False))
            times["cached"].append(_ours(args.neurons, threads, False, True))
            if peers_ok:
                wall = _brian2(args.neurons, threads, args)
                if wall is not None:
                    brian2.append(wall)
        base = statistics.median(times["one-process"])
        runs = [("neurofabric", v, w) for v, w in times.items()]
        if brian2:
            runs.append(("brian2", "cpp-standalone", brian2))
        for system, variant, walls in runs:
            median = statistics.median(walls)
            table.append(("first run", threads, system, variant, median, min(walls), max(walls)))
            record(
                "snn_first_run",
                system,
                variant=variant,
                workload={"neurons": args.neurons, "threads": threads, "repeats": len(walls)},
                figures={
                    "process_wall_s": median,
                    "process_wall_min_s": min(walls),
                    "process_wall_max_s": max(walls),
                    "vs_one_process_x": base / median,
                },
                headline=["process_wall_s", "vs_one_process_x"],
            )
    print()
    print(f"Machine: {machine()}; cores this process may use: {len(os.sched_getaffinity(0))}")
    print(f"Command: python benchmarks/snn_first_run.py {' '.join(sys.argv[1:])}".rstrip())
    print(f"First 1 s run of CUBA {args.neurons:,} (goal: {GOAL_S} s cold) and snn compile,")
    print("whole process, empty kernel cache but the cached rows")
    print()
    print("| what | threads | system | variant | median s | min s | max s | one-process / this |")
    print("|---|---|---|---|---|---|---|---|")
    for what, threads, system, variant, median, lo, hi in table:
        base = next(
            m for w, t, _, v, m, *_ in table if (w, t) == (what, threads) and v == "one-process"
        )
        print(
            f"| {what} | {threads} | {system} | {variant} | {median:.2f} | {lo:.2f} | {hi:.2f} "
            f"| {base / median:.2f}x |"
        )


def _compile_rows(repeats: int) -> list[tuple]:
    """``neurofabric snn compile`` with an empty cache, ahead and in one process, recorded as
    ``snn_compile``; the table's rows."""
    walls: dict[str, list[float]] = {"compile-ahead": [], "one-process": []}
    for _ in range(repeats):
        for variant in walls:
            walls[variant].append(_ours(0, 1, True, variant == "compile-ahead", ["snn", "compile"]))
    base = statistics.median(walls["one-process"])
    rows = []
    for variant, w in walls.items():
        median = statistics.median(w)
        rows.append(("snn compile", 1, "neurofabric", variant, median, min(w), max(w)))
        record(
            "snn_compile",
            "neurofabric",
            variant=variant,
            workload={"networks": 6, "threads": 1, "repeats": len(w)},
            figures={
                "process_wall_s": median,
                "process_wall_min_s": min(w),
                "process_wall_max_s": max(w),
                "vs_one_process_x": base / median,
            },
            headline=["process_wall_s", "vs_one_process_x"],
        )
    return rows


if __name__ == "__main__":
    main()
