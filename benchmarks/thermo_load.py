"""Cold-start loading of a large network's weights for inference: Arrow IPC by mmap vs peers.

Writes a layered fabric with --weights float32 connections once (source/target uint32 and
weight columns), then times, with the file evicted from the page cache before every run
(posix_fadvise DONTNEED, after an fsync), how long each way of loading takes until the
weights are usable as a numpy array:

- neurofabric: ``NeuralFabric.load(path, mmap=True, verify=False)`` (zero-copy views);
- numpy: ``np.load(..., mmap_mode="r")`` of the same three columns as .npy files;
- numpy (read): ``np.load`` without mmap (reads every byte);
- pyarrow (read): the Arrow file read into memory without a memory map;
- safetensors: ``safetensors.numpy.load_file`` (reads every byte).

It also times the first full pass over the weights after the mmap load (page faults),
reported separately. Prints a markdown table and one JSON line per row.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def evict(paths):
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def timed(fn, files, repeats):
    out = []
    for _ in range(repeats):
        evict(files)
        t = time.perf_counter()
        result = fn()
        out.append(time.perf_counter() - t)
        del result
    return statistics.median(out), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights", type=int, default=100_000_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--dir", default=None, help="scratch folder (default: a temporary one)")
    args = ap.parse_args()

    from safetensors.numpy import load_file, save_file

    from neurofabric.thermo import NeuralFabric

    root = Path(args.dir or tempfile.mkdtemp(prefix="nf-load-"))
    root.mkdir(parents=True, exist_ok=True)
    n = args.weights
    n_in, n_hidden, n_out = 10_000, n // 10_010, 10
    n = n_in * n_hidden + n_hidden * n_out
    rng = np.random.default_rng(0)
    t = time.perf_counter()
    src = np.concatenate([np.repeat(np.arange(n_in, dtype=np.uint32), n_hidden),
                          np.repeat(np.arange(n_in, n_in + n_hidden, dtype=np.uint32), n_out)])  # fmt: skip
    dst = np.concatenate([np.tile(np.arange(n_in, n_in + n_hidden, dtype=np.uint32), n_in),
                          np.tile(np.arange(n_in + n_hidden, n_in + n_hidden + n_out, dtype=np.uint32), n_hidden)])  # fmt: skip
    w = rng.standard_normal(n, dtype=np.float32)
    fab = NeuralFabric(
        n_in=n_in, n_out=n_out, source=src, target=dst, weight=w,
        bias=np.zeros(n_in + n_hidden + n_out, np.float32), check=False,
    )  # fmt: skip
    fab.save(root / "fabric")
    np.save(root / "source.npy", src)
    np.save(root / "target.npy", dst)
    np.save(root / "weight.npy", w)
    save_file({"source": src, "target": dst, "weight": w}, str(root / "w.safetensors"))
    del fab, src, dst, w
    setup_s = time.perf_counter() - t
    arrow_files = [root / "fabric" / f for f in ("edges.arrow", "units.arrow", "manifest.json")]
    npy_files = [root / f"{c}.npy" for c in ("source", "target", "weight")]

    def ours():
        f = NeuralFabric.load(root / "fabric", mmap=True, verify=False)
        return f.weight

    def npy_mmap():
        return [np.load(p, mmap_mode="r") for p in npy_files]

    def npy_read():
        return [np.load(p) for p in npy_files]

    def arrow_read():
        import pyarrow as pa

        with pa.OSFile(str(root / "fabric" / "edges.arrow")) as fh:
            return pa.ipc.open_file(fh).read_all()

    def st_read():
        return load_file(str(root / "w.safetensors"))

    rows = []
    for system, fn, files in (
        ("neurofabric", ours, arrow_files),
        ("numpy", npy_mmap, npy_files),
        ("numpy (read)", npy_read, npy_files),
        ("pyarrow (read)", arrow_read, arrow_files),
        ("safetensors", st_read, [root / "w.safetensors"]),
    ):
        med, all_s = timed(fn, files, args.repeats)
        rows.append({"system": system, "load_ms": med * 1e3, "runs_ms": [x * 1e3 for x in all_s]})
    # first pass over the mapped weights (page faults from a cold cache)
    evict(arrow_files)
    f = NeuralFabric.load(root / "fabric", mmap=True, verify=False)
    t = time.perf_counter()
    total = float(np.sum(f.weight, dtype=np.float64))
    touch_s = time.perf_counter() - t
    size = sum(p.stat().st_size for p in arrow_files)
    print(f"# {n:,} float32 weights (+ uint32 source/target), Arrow files {size / 2**20:,.0f} MiB, "
          f"setup {setup_s:.1f} s, {platform.processor() or platform.machine()}, {os.cpu_count()} cpus")  # fmt: skip
    print("| system | cold load (ms, median) | runs (ms) | vs neurofabric |")
    print("|---|---|---|---|")
    base = rows[0]["load_ms"]
    for r in rows:
        runs = ", ".join(f"{x:.1f}" for x in r["runs_ms"])
        print(f"| {r['system']} | {r['load_ms']:.1f} | {runs} | {r['load_ms'] / base:.1f}x |")
    print(f"\nfirst full pass over the mapped weights after a cold load: {touch_s * 1e3:.0f} ms "
          f"(sum {total:.3f})")  # fmt: skip
    for r in rows:
        print(json.dumps({"system": r["system"], "dataset": "synthetic", "model": "10000-h-10",
                          "size": n, "load_ms": round(r["load_ms"], 3)}))  # fmt: skip
    print(json.dumps({"system": "neurofabric", "dataset": "synthetic", "size": n,
                      "first_pass_ms": round(touch_s * 1e3, 1)}))  # fmt: skip


if __name__ == "__main__":
    main()
