"""Cold-start loading of a large network's weights for inference: Arrow IPC by mmap vs peers.

    python benchmarks/thermo_load.py                     # 100 million weights, 5 repeats
    python benchmarks/thermo_load.py --weights 1000000 --repeats 2   # a quick check

Writes a layered fabric with --weights float32 connections once (source/target uint32 and
weight columns) in every system's format, then times each way of loading with the files
evicted from the page cache before every run (fsync, then posix_fadvise DONTNEED), median of
--repeats. Two measures, both cold:

- **load**: until the weights are a usable numpy array. A memory map (ours, numpy.memmap)
  reads no weight page here, a reader (np.load, pyarrow, safetensors) reads every byte.
- **first full pass**: open + read every byte of the three columns (a sum over each), the
  like-for-like figure: lazy maps pay their page faults here.

Both are measured with checksums off and on. ``NeuralFabric.load`` verifies checksums by
default (``verify=True``: SHA-256 of every file, then the topology checks); the peers'
formats carry no checksum, so their "on" rows hash the same files with ``hashlib.sha256``
before loading. Threads are pinned for every system (``--threads``, default 1,
``benchmarks/_threads.py``). Prints a markdown table and one JSON line per row.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from _record import record
from _threads import limit_loaded, pin_threads, threads_info, threads_line

THREADS = pin_threads()
# each system's way of loading, when its name does not say it
VARIANTS = {
    "neurofabric": "mmap",
    "numpy": "load",
    "pyarrow": "ipc-read",
    "safetensors": "load-file",
}

import numpy as np  # noqa: E402


def evict(paths):
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def timed(fn, files, repeats):
    """Cold runs of ``fn``: seconds to the loaded arrays and to the end of a full pass over
    them (the pass starts the moment the load returns, so it includes the load)."""
    loads, passes, total = [], [], None
    for _ in range(repeats):
        evict(files)
        t = time.perf_counter()
        arrays = fn()
        loads.append(time.perf_counter() - t)
        total = full_pass(arrays)
        passes.append(time.perf_counter() - t)
        del arrays
    return loads, passes, total


def sha256_files(files) -> None:
    """What a checksum check costs a format without one: hash every byte of its files."""
    for p in files:
        h = hashlib.sha256()
        with open(p, "rb") as fh:
            while chunk := fh.read(1 << 22):
                h.update(chunk)


def full_pass(arrays) -> float:
    """Read every byte of the columns (a sum over each); returns a checksum of the values."""
    return float(sum(np.sum(np.asarray(a), dtype=np.float64) for a in arrays))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights", type=int, default=100_000_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument(
        "--verify-repeats",
        type=int,
        default=1,
        help="runs of the default verify=True load (SHA-256 plus topology checks: seconds at 1e8)",
    )
    ap.add_argument("--threads", type=int, default=THREADS, help="threads for every system")
    ap.add_argument("--dir", default=None, help="scratch folder (default: a temporary one)")
    args = ap.parse_args()
    if args.weights < 20_020:
        ap.error(f"--weights must be >= 20020 (two hidden units), got {args.weights}")

    from safetensors.numpy import load_file, save_file

    from neurofabric.thermo import NeuralFabric

    limit_loaded(THREADS)
    root = Path(args.dir or tempfile.mkdtemp(prefix="nf-load-"))
    root.mkdir(parents=True, exist_ok=True)
    n = args.weights
    n_in, n_hidden, n_out = 10_000, n // 10_010, 10
    n = n_in * n_hidden + n_hidden * n_out
    rng = np.random.default_rng(0)
    t = time.perf_counter()
    src = np.concatenate(
        [
            np.repeat(np.arange(n_in, dtype=np.uint32), n_hidden),
            np.repeat(np.arange(n_in, n_in + n_hidden, dtype=np.uint32), n_out),
        ]
    )
    dst = np.concatenate(
        [
            np.tile(np.arange(n_in, n_in + n_hidden, dtype=np.uint32), n_in),
            np.tile(np.arange(n_in + n_hidden, n_in + n_hidden + n_out, dtype=np.uint32), n_hidden),
        ]
    )
    w = rng.standard_normal(n, dtype=np.float32)
    fab = NeuralFabric(
        n_in=n_in,
        n_out=n_out,
        source=src,
        target=dst,
        weight=w,
        bias=np.zeros(n_in + n_hidden + n_out, np.float32),
        check=False,
    )
    fab.save(root / "fabric")
    np.save(root / "source.npy", src)
    np.save(root / "target.npy", dst)
    np.save(root / "weight.npy", w)
    save_file({"source": src, "target": dst, "weight": w}, str(root / "w.safetensors"))
    expected = full_pass((src, dst, w))
    del fab, src, dst, w
    setup_s = time.perf_counter() - t
    arrow_files = [root / "fabric" / f for f in ("edges.arrow", "units.arrow", "manifest.json")]
    npy_files = [root / f"{c}.npy" for c in ("source", "target", "weight")]
    st_files = [root / "w.safetensors"]

    def ours(verify):
        f = NeuralFabric.load(root / "fabric", mmap=True, verify=verify)
        return f.source, f.target, f.weight

    def npy_mmap():
        return [np.load(p, mmap_mode="r") for p in npy_files]

    def npy_read():
        return [np.load(p) for p in npy_files]

    def arrow_read():
        import pyarrow as pa

        with pa.OSFile(str(root / "fabric" / "edges.arrow")) as fh:
            table = pa.ipc.open_file(fh).read_all()
        return [table.column(c).to_numpy() for c in ("source", "target", "weight")]

    def st_read():
        d = load_file(str(root / "w.safetensors"))
        return d["source"], d["target"], d["weight"]

    # (system, how, loader, its files, checksums: "off" / "on (default)" / "on (sha256)")
    systems = [
        (
            "neurofabric",
            "NeuralFabric.load(mmap=True, verify=False)",
            lambda: ours(False),
            arrow_files,
            "off",
        ),
        (
            "neurofabric",
            "NeuralFabric.load(mmap=True), the default verify=True",
            lambda: ours(True),
            arrow_files,
            "on (default)",
        ),
        (
            "neurofabric",
            "verify=False + sha256 of the files (checksums without topology checks)",
            _hashed(lambda: ours(False), arrow_files),
            arrow_files,
            "on (sha256)",
        ),
        ("numpy.memmap", "np.load(mmap_mode='r'), three .npy files", npy_mmap, npy_files, "off"),
        ("numpy", "np.load, read into memory", npy_read, npy_files, "off"),
        (
            "pyarrow",
            "the same Arrow file read without a memory map",
            arrow_read,
            arrow_files,
            "off",
        ),
        ("safetensors", "safetensors.numpy.load_file", st_read, st_files, "off"),
    ]
    for system, how, fn, files, _ in list(systems[3:]):  # the peers
        systems.append(
            (system, how + " + sha256 of the files", _hashed(fn, files), files, "on (sha256)")
        )

    rows = []
    for system, how, fn, files, checks in systems:
        repeats = args.verify_repeats if checks == "on (default)" else args.repeats
        load_all, pass_all, got = timed(fn, files, repeats)
        if not np.isclose(got, expected, rtol=1e-9):
            raise SystemExit(f"{system} ({how}) read back a different sum: {got} != {expected}")
        rows.append(
            {
                "system": system,
                "how": how,
                "checksums": checks,
                "repeats": repeats,
                "load_ms": statistics.median(load_all) * 1e3,
                "load_runs_ms": [x * 1e3 for x in load_all],
                "first_pass_ms": statistics.median(pass_all) * 1e3,
                "first_pass_runs_ms": [x * 1e3 for x in pass_all],
            }
        )
        print(f"# progress: {json.dumps(rows[-1])}", flush=True)
    size = sum(p.stat().st_size for p in arrow_files)
    print(
        f"# {n:,} float32 weights (+ uint32 source/target), Arrow files {size / 2**20:,.0f} MiB, "
        f"setup {setup_s:.1f} s, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cpus, cold page cache, median of {args.repeats} "
        f"(the default verify=True load: {args.verify_repeats})"
    )
    print(f"# {threads_line()}")
    print("# first full pass = open + read every byte of the three columns, the load included")
    print(
        "| system | how | checksums | cold load, ms | runs | first full pass, ms | runs "
        "| pass vs ours, verify=False |"
    )
    print("|---|---|---|---|---|---|---|---|")
    base = rows[0]["first_pass_ms"]  # ours, verify=False
    for r in rows:
        lr = ", ".join(f"{x:.1f}" for x in r["load_runs_ms"])
        pr = ", ".join(f"{x:.0f}" for x in r["first_pass_runs_ms"])
        print(
            f"| {r['system']} | {r['how']} | {r['checksums']} | {r['load_ms']:.1f} | {lr} | "
            f"{r['first_pass_ms']:.0f} | {pr} | {r['first_pass_ms'] / base:.1f}x |"
        )
    print(f"\nsum of the three columns, every system: {expected:.6g}")
    info = threads_info()
    for r in rows:
        # "numpy.memmap" -> numpy, variant memmap; the checksums mode ends the variant
        system, _, kind = r["system"].partition(".")
        variant = kind or VARIANTS[system]
        variant += {"off": "", "on (default)": "-verify", "on (sha256)": "-sha256"}[r["checksums"]]
        record(
            "thermo_load",
            system,
            variant=variant,
            workload={
                "how": r["how"],
                "checksums": r["checksums"],
                "dataset": "synthetic",
                "model": "10000-h-10",
                "size": n,
                "repeats": r["repeats"],
                "threads": THREADS,
                "thread_pools": info,
            },
            figures={
                "load_ms": round(r["load_ms"], 3),
                "first_pass_ms": round(r["first_pass_ms"], 1),
                "pass_vs_ours_x": r["first_pass_ms"] / base,
            },
            headline=("load_ms", "first_pass_ms"),
        )


def _hashed(fn, files):
    def run():
        sha256_files(files)
        return fn()

    return run


if __name__ == "__main__":
    main()
