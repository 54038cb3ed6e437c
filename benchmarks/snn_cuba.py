"""CUBA benchmark: neurofabric beside Brian2 (C++ standalone, Cython) and NEST.

    python benchmarks/snn_cuba.py                   # the headline comparison, 1 and 2 threads
    python benchmarks/snn_cuba.py --suite all       # + small-world memory, 1M procedural
    python benchmarks/snn_cuba.py --sizes 4000 --threads 1 --skip-peers

Every system runs in its own fresh process (peers from the ``.venv-peers`` interpreter that
``make peers`` builds) on the same machine in the same invocation. For each it reports build
time, JIT/compile time, wall seconds per biological second (median of ``--repeats`` runs
after a warm-up for neurofabric; one timed run for the peers, whose own timers exclude
compilation), spikes, mean rate, peak resident memory and bytes per synapse. It prints a
markdown table with the ratio (peer time / neurofabric time) and one JSON line per row.

Threads: every system runs once per entry of ``--threads`` (default ``1,2``) with the same
thread count: neurofabric through ``NEUROFABRIC_THREADS`` / ``NUMBA_NUM_THREADS`` (its neuron
update uses more than one thread only from 100,000 neurons), Brian2 C++ standalone through
``openmp_threads`` (OpenMP compiled out at 1 thread; the Cython runtime target has no
threads and runs only in the 1-thread pass), NEST through ``local_num_threads``; BLAS and
OpenMP variables (``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS``) are
set to the same count for every process (``benchmarks/_threads.py``). Each row carries the
count in ``threads`` and neurofabric's rows the pools in force in ``thread_pools``.

Memory, the same measure for every system: ``bytes_per_synapse`` is the growth of the
process's resident memory per synapse, from just before the synapses are created to the peak
at the end of the run (the kernel's peak counter is reset first through
``/proc/self/clear_refs``); the peers' scripts measure it the same way. neurofabric's kernels
are compiled (or loaded from the disk cache) before that window, as Brian2's are compiled in
another process. neurofabric's rows add ``array_bytes_per_synapse``, the size of its synapse
arrays per synapse, and ``rss_build_bytes_per_synapse``, the resident growth across
``build()`` alone.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _record import has_unit, record
from _threads import thread_env, threads_info

ROOT = Path(__file__).resolve().parent.parent
PEERS_DIR = Path(__file__).resolve().parent / "peers"


def _status_mb(field: str = "VmRSS") -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _rss_mb() -> float:
    return _status_mb("VmRSS")


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) of this process; False if not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def worker(args: argparse.Namespace) -> None:
    """Run one neurofabric configuration in this process; print one JSON line."""
    t0 = time.perf_counter()
    from neurofabric.snn import SmallWorld, SpikingNetwork
    from neurofabric.snn.models import cuba

    import_s = time.perf_counter() - t0
    # load the compiled kernels first, so the memory baseline excludes machine code
    SpikingNetwork(10, storage=args.storage, dtype=args.dtype, seed=0).connect(
        SmallWorld(k=2), weight=1e-4
    ).run(1e-3)
    if args.model == "cuba" and args.duration > 0:
        from neurofabric.snn.kernels.numba_cpu import PARALLEL_MIN_NEURONS

        if args.neurons >= PARALLEL_MIN_NEURONS:
            # the multi-threaded neuron update is compiled in memory (numba cannot cache
            # parallel kernels): compile it here, outside the memory window and the timings
            warm = cuba(
                PARALLEL_MIN_NEURONS,
                synapses_per_neuron=1,
                storage=args.storage,
                dtype=args.dtype,
                propagation=args.propagation,
                seed=0,
            )
            warm.run(1e-3)
            del warm
    import gc

    gc.collect()
    rss0 = _rss_mb()
    peak_reset = _reset_peak_rss()
    t0 = time.perf_counter()
    if args.model == "smallworld":
        net = SpikingNetwork(args.neurons, propagation="event", seed=args.seed)
        net.connect(SmallWorld(k=args.k, beta=0.1), weight=0.1e-3, inh_weight=0.4e-3)
    else:
        net = cuba(
            args.neurons,
            synapses_per_neuron=args.k,
            storage=args.storage,
            dtype=args.dtype,
            propagation=args.propagation,
            backend=args.backend,
            device=args.device,
            seed=args.seed,
        )
    net.build()
    build_s = time.perf_counter() - t0
    rss_built = _rss_mb()
    n_syn = net.n_synapses
    row = {
        "system": "neurofabric",
        "target": f"{args.storage}/{args.dtype}"
        + ("" if args.backend == "numba" else f"/{args.backend} {args.device}"),
        "model": args.model,
        "neurons": args.neurons,
        "synapses": n_syn,
        "threads": args.threads,
        "build_s": build_s,
        "import_s": import_s,
        "array_bytes_per_synapse": net.synapse_memory_bytes() / n_syn,
        "rss_build_bytes_per_synapse": (rss_built - rss0) * 2**20 / n_syn,
        "backend": None,
    }
    if args.duration > 0:
        t0 = time.perf_counter()
        net.run(0.002)  # JIT compile (from the on-disk cache when warm)
        row["compile_s"] = time.perf_counter() - t0
        times, res = [], None
        for _ in range(args.repeats):
            res = net.run(args.duration)
            times.append(res.wall_s / res.duration)
        row.update(
            duration_s=args.duration,
            spikes=res.n_spikes,
            rate_hz=res.mean_rate_hz,
            s_per_bio_s=statistics.median(times),
            s_per_bio_s_min=min(times),
            s_per_bio_s_max=max(times),
            repeats=args.repeats,
            backend=res.backend,
            event_steps=res.event_steps,
            dense_steps=res.dense_steps,
        )
    if args.device != "cpu":
        import torch

        row["gpu"] = torch.cuda.get_device_name(torch.device(args.device))
    row["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # peak growth from before build() to the end of the runs: the peers' measure
    peak_mb = _status_mb("VmHWM") if peak_reset else row["peak_rss_mb"]
    row["bytes_per_synapse"] = max(0.0, peak_mb - rss0) * 2**20 / n_syn
    row["peak_reset"] = peak_reset
    row["thread_pools"] = threads_info()
    print(json.dumps(row), flush=True)


def _run_json(cmd: list[str], env: dict[str, str] | None = None, timeout: float = 3600) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT)
    wall = time.perf_counter() - t0
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = proc.stderr.strip().splitlines()[-5:]
        return {"error": f"exit {proc.returncode}: {' | '.join(tail)}", "cmd": " ".join(cmd)}
    row = json.loads(lines[-1])
    row["process_wall_s"] = wall
    return row


def _env(threads: int, **extra: str) -> dict[str, str]:
    """The same thread settings for every system's process (benchmarks/_threads.py)."""
    env = dict(os.environ)
    env["OMP_WAIT_POLICY"] = "PASSIVE"
    env.update(thread_env(threads))
    env.update(extra)
    return env


def ours(neurons: int, args: argparse.Namespace, threads: int, **kw) -> dict:
    opts = {
        "storage": "csr",
        "dtype": "float64",
        "k": 80,
        "model": "cuba",
        "propagation": "auto",
        "duration": args.duration,
        "repeats": args.repeats,
        "backend": "numba",
        "device": "cpu",
    }
    opts.update(kw)
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        "--neurons",
        str(neurons),
        "--seed",
        str(args.seed),
        "--threads",
        str(threads),
    ] + [x for k, v in opts.items() for x in (f"--{k}", str(v))]
    return _run_json(cmd, env=_env(threads))


def first_run(neurons: int, cold: bool, threads: int) -> dict:
    """Whole-process wall time of `neurofabric snn run cuba` for 1 s, JIT included."""
    env = _env(threads)
    if cold:
        env["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="nf-numba-")
    cmd = [
        sys.executable,
        "-m",
        "neurofabric",
        "snn",
        "run",
        "cuba",
        "--neurons",
        str(neurons),
        "--duration",
        "1.0",
        "--json",
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - t0
    if proc.returncode:
        return {"error": proc.stderr[-300:]}
    summary = json.loads(proc.stdout)
    return {
        "system": "neurofabric",
        "target": "first run, " + ("cold JIT" if cold else "cached JIT"),
        "model": "cuba",
        "neurons": neurons,
        "threads": threads,
        "synapses": summary["synapses"],
        "spikes": summary["spikes"],
        "rate_hz": summary["mean_rate_hz"],
        "process_wall_s": wall,
    }


def peer(
    script: str, python: str, neurons: int, args: argparse.Namespace, threads: int, **kw
) -> dict:
    cmd = [
        python,
        str(PEERS_DIR / script),
        "--neurons",
        str(neurons),
        "--duration",
        str(args.duration),
        "--seed",
        str(args.seed),
        "--threads",
        str(threads),
    ]
    for k, v in kw.items():
        cmd += [f"--{k.replace('_', '-')}", str(v)]
    row = _run_json(cmd, env=_env(threads))
    row.setdefault("threads", threads)
    return row


def _fmt(x, spec: str) -> str:
    return "" if x is None else format(x, spec)


def table(rows: list[dict]) -> str:
    head = (
        "| system | target | threads | neurons | synapses | build s | JIT/compile s "
        "| s per bio s | peer / ours | spikes | rate Hz | peak RSS MB | B/synapse (RSS growth) "
        "| B/synapse (arrays) | process wall s |"
    )
    out = [head, "|" + "---|" * 15]
    base = {}
    for r in rows:
        if r.get("system") == "neurofabric" and "s_per_bio_s" in r:
            base.setdefault((r["model"], r["neurons"], r.get("threads")), r["s_per_bio_s"])
    for r in rows:
        if "error" in r:
            out.append(
                f"| {r.get('system', '?')} | error | {r.get('threads', '')} "
                f"| | | | | | | | | | | | {r['error'][:80]} |"
            )
            continue
        ref = base.get((r.get("model"), r.get("neurons"), r.get("threads")))
        ratio = (r["s_per_bio_s"] / ref) if ref and r.get("s_per_bio_s") else None
        bps = r.get("bytes_per_synapse")
        out.append(
            f"| {r['system']} | {r.get('target', '')} | {r.get('threads', '')} | "
            f"{r['neurons']:,} | "
            f"{r.get('synapses', 0):,} | {_fmt(r.get('build_s'), '.2f')} | "
            f"{_fmt(r.get('compile_s'), '.2f')} | {_fmt(r.get('s_per_bio_s'), '.4f')} | "
            f"{_fmt(ratio, '.1f')} | {_fmt(r.get('spikes'), ',')} | "
            f"{_fmt(r.get('rate_hz'), '.2f')} | {_fmt(r.get('peak_rss_mb'), '.0f')} | "
            f"{_fmt(bps, '.2f')} | {_fmt(r.get('array_bytes_per_synapse'), '.2f')} | "
            f"{_fmt(r.get('process_wall_s'), '.1f')} |"
        )
    return "\n".join(out)


#: row keys renamed to figure names that end in their unit
_FIGURES = {
    "spikes": "spikes_count",
    "bytes_per_synapse": "per_synapse_bytes",
    "array_bytes_per_synapse": "array_per_synapse_bytes",
    "rss_build_bytes_per_synapse": "rss_build_per_synapse_bytes",
    "s_per_bio_s_min": "s_per_bio_min_s",
    "s_per_bio_s_max": "s_per_bio_max_s",
    "event_steps": "event_steps",
    "dense_steps": "dense_steps",
}
#: numeric row keys that describe the run rather than measure it
_WORKLOAD = {"duration_s", "neurons", "synapses", "threads", "repeats", "seed"}
#: peer scripts' ``system`` -> the peer's package name
_PEERS = {"brian2": "brian2", "nest": "nest-simulator"}


def _system(row: dict) -> str:
    if "system" in row:
        return _PEERS.get(row["system"], row["system"])
    cmd = row.get("cmd", "")  # an error row: which script failed
    if "brian2_cuba" in cmd:
        return "brian2"
    if "nest_cuba" in cmd:
        return "nest-simulator"
    return "neurofabric"


def record_row(row: dict, ratio: float | None) -> None:
    """One schema line (benchmarks/_record.py) for a row of the table."""
    system = _system(row)
    target = row.get("target")
    variant = None
    if target and target != "nest":
        variant = re.sub(r"[^a-z0-9/._]+", "-", target.lower()).strip("-")
    figures: dict = {}
    workload: dict = {}
    for key, value in row.items():
        if key in ("system", "target"):
            continue
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if key in _FIGURES:
            figures[_FIGURES[key]] = value
        elif number and has_unit(key) and key not in _WORKLOAD:
            figures[key] = value
        else:
            workload[key] = value
    if "error" in row:
        figures.setdefault("s_per_bio_s", None)
    elif "s_per_bio_s" in row:
        figures["time_vs_neurofabric_x"] = ratio  # the table's "peer / ours"
    heads = [
        h for h in ("s_per_bio_s", "time_vs_neurofabric_x", "per_synapse_bytes") if h in figures
    ]
    if not heads and "process_wall_s" in figures:  # the first-run rows
        heads = ["process_wall_s"]
    record(
        "snn_cuba",
        system,
        variant=variant,
        workload=workload,
        figures=figures,
        headline=heads or None,
    )


def machine() -> str:
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, Python "
        f"{platform.python_version()}, {platform.system()} {platform.release()}"
    )


def run_size(n: int, t: int, args: argparse.Namespace, peers_ok: bool, add) -> None:
    """Every system at size ``n`` with ``t`` threads."""
    big = n >= 100_000
    add(ours(n, args, t, repeats=1 if big else args.repeats))
    if big:
        add(ours(n, args, t, dtype="float32", repeats=1))
    add(
        ours(
            n,
            args,
            t,
            storage="procedural",
            propagation="event",
            repeats=1 if big else args.repeats,
        )
    )
    for device in args.torch_devices.split(","):  # the torch backend (GPU rows only on a GPU)
        if device:
            add(ours(n, args, t, backend="torch", device=device, repeats=1 if big else 3))
    if n <= 10_000:
        add(ours(n, args, t, dtype="float32"))
        add(first_run(n, cold=True, threads=t))
        add(first_run(n, cold=False, threads=t))
    if not peers_ok:
        return
    add(
        peer(
            "brian2_cuba.py",
            args.peers_python,
            n,
            args,
            t,
            target="cpp_standalone",
            build_dir=f"build/peers/brian2_standalone_{n}",
        )
    )
    if n <= 40_000 and t == 1:  # Brian2's Cython runtime target has no threads
        add(
            peer(
                "brian2_cuba.py",
                args.peers_python,
                n,
                args,
                t,
                target="cython",
                build_dir=f"build/peers/brian2_cython_{n}",
            )
        )
    if n <= args.nest_max:
        add(peer("nest_cuba.py", args.peers_python, n, args, t))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--neurons", type=int, default=4000, help=argparse.SUPPRESS)
    ap.add_argument("--storage", default="csr", help=argparse.SUPPRESS)
    ap.add_argument("--dtype", default="float64", help=argparse.SUPPRESS)
    ap.add_argument("--propagation", default="auto", help=argparse.SUPPRESS)
    ap.add_argument("--model", default="cuba", help=argparse.SUPPRESS)
    ap.add_argument("--k", type=float, default=80, help=argparse.SUPPRESS)
    ap.add_argument("--backend", default="numba", help=argparse.SUPPRESS)
    ap.add_argument("--device", default="cpu", help=argparse.SUPPRESS)
    ap.add_argument(
        "--torch-devices",
        default="cpu",
        help="devices of the torch backend's rows: 'cpu', 'cpu,cuda' on a GPU machine, '' for none",
    )
    ap.add_argument("--sizes", default="4000,400000", help="CUBA sizes (80 synapses each)")
    ap.add_argument("--duration", type=float, default=1.0, help="biological seconds per run")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs of ours (median)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--threads",
        default="1,2",
        help="comma list of thread counts; every system runs once per count, with that count",
    )
    ap.add_argument("--suite", choices=("headline", "all"), default="headline")
    ap.add_argument("--peers-python", default=str(ROOT / ".venv-peers" / "bin" / "python"))
    ap.add_argument("--skip-peers", action="store_true")
    ap.add_argument(
        "--nest-max",
        type=int,
        default=40000,
        help="largest size for NEST (its pairwise_bernoulli connect is O(N^2))",
    )
    args = ap.parse_args()
    if args.worker:
        args.k = int(args.k) if args.model == "smallworld" else args.k
        args.threads = int(args.threads)
        worker(args)
        return
    sizes = [int(s) for s in args.sizes.split(",") if s]
    try:
        thread_counts = [int(t) for t in args.threads.split(",") if t]
    except ValueError:
        ap.error(f"--threads must be a comma list of positive integers, got {args.threads!r}")
    if not thread_counts or min(thread_counts) < 1:
        ap.error(f"--threads must be a comma list of positive integers, got {args.threads!r}")
    peers_ok = not args.skip_peers and Path(args.peers_python).exists()
    if not args.skip_peers and not peers_ok:
        print(
            f"# peers interpreter {args.peers_python} not found: run `make peers` "
            "(or pass --skip-peers)",
            file=sys.stderr,
        )
    rows: list[dict] = []
    base: dict = {}  # neurofabric's s per bio s by (model, neurons, threads), as in table()

    def add(row: dict) -> None:
        # other jobs on the machine skew multi-threaded runs most: keep the load with each row
        row["loadavg_1m_after"] = round(os.getloadavg()[0], 2)
        rows.append(row)
        key = (row.get("model"), row.get("neurons"), row.get("threads"))
        if row.get("system") == "neurofabric" and "s_per_bio_s" in row:
            base.setdefault(key, row["s_per_bio_s"])
        ref = base.get(key)
        record_row(row, (row["s_per_bio_s"] / ref) if ref and row.get("s_per_bio_s") else None)

    for t in thread_counts:
        for n in sizes:
            run_size(n, t, args, peers_ok, add)
    if args.suite == "all":
        t = max(thread_counts)
        add(ours(100_000, args, t, model="smallworld", k=100, duration=0))
        add(ours(1_000_000, args, t, storage="procedural", propagation="event", k=100, repeats=1))
    print()
    print(f"Machine: {machine()}")
    print(f"Threads: {args.threads} (the same count for every system in a pass)")
    loads = [r["loadavg_1m_after"] for r in rows if "loadavg_1m_after" in r]
    if loads:
        print(
            f"Load average (1 min) after each row: {min(loads):.2f} to {max(loads):.2f} "
            f"on {os.cpu_count()} cores (above the run's own threads: other jobs were running)"
        )
    print(f"Command: python benchmarks/snn_cuba.py {' '.join(sys.argv[1:])}".rstrip())
    print()
    print(table(rows))


if __name__ == "__main__":
    main()
