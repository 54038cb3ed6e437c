"""Query throughput of a hot field: one point per call and batched, on 1 and 2 threads.

    python benchmarks/field_throughput.py
    python benchmarks/field_throughput.py --seconds 5 --threads 1 --threads 2

The field is 2-D, 16 levels x 2 features, 2^18 rows per level, base resolution 16, scale 1.4,
one hidden layer of 64 (the ``field_fit.py`` field), trained for a few steps so that its table
is not zero, with a DRAM tier that holds every page (hot: the first full pass brings them in,
untimed). Each thread count runs in its own process (numba, BLAS and OpenMP pinned before
numpy loads). Measured over ``--seconds`` each, on the same random points:

* single-point QPS: ``field.query(x[i:i+1])`` in a loop, the whole public call (validation,
  the fused encode, the decoder, the latency record);
* batched points/s: ``field.query`` on batches of 1,024 and of 65,536 points.

The older write-up behind the field claimed 2,000 single-point QPS per core and 123,000
batched; the goal here is >= 20,000 per core and >= 2 million batched points/s on 2 cores.
Prints a table and one JSON line per thread count.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

from _proc import child_command, run_child
from _record import record
from _threads import pin_threads, thread_env, threads_info

THREADS = pin_threads(1)


def measure(args) -> dict:
    import numpy as np

    from neurofabric.field import DemandPagedField, HashGridSpec, TierConfig

    spec = HashGridSpec(
        n_dims=2, n_levels=16, n_features=2, log2_table=18, base_resolution=16, per_level_scale=1.4
    )
    folder = Path(tempfile.mkdtemp(prefix="nf-field-qps-"))
    try:
        tiers = TierConfig(dram_pages=3 * spec.n_rows * 8 // 4096 + 1024)
        f = DemandPagedField.create(folder / "f", spec=spec, hidden=(64,), seed=0, tiers=tiers)
        rng = np.random.default_rng(0)
        for _ in range(5):
            x = rng.random((4096, 2)).astype(np.float32)
            f.learn(x, np.sin(6 * x[:, :1]))
        x = rng.random((1 << 20, 2)).astype(np.float32)
        for j in range(0, len(x), 65536):  # hot: every page the points touch is in DRAM
            f.query(x[j : j + 65536])
        out = {"threads": THREADS, "thread_pools": threads_info()}
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < args.seconds:
            for i in range(n % len(x), n % len(x) + 1000):
                f.query(x[i : i + 1])
            n += 1000
        out["single_qps"] = n / (time.perf_counter() - t0)
        for batch in (1024, 65536):
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < args.seconds:
                for j in range(0, len(x), batch):
                    f.query(x[j : j + batch])
                n += len(x)
            out[f"batched_{batch}_points_per_s"] = n / (time.perf_counter() - t0)
        f.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--threads", type=int, action="append", help="repeatable; default 1 and 2")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(args)))
        return
    rows = []
    for t in args.threads or [1, 2]:
        cmd = child_command(__file__, "--seconds", str(args.seconds), "--threads", str(t))
        env = dict(os.environ, **thread_env(t), OMP_WAIT_POLICY="PASSIVE")
        rows.append(run_child(cmd, env, f"{t} thread(s)"))
    print(
        f"\nMachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}"
    )
    print(f"Command: python benchmarks/field_throughput.py --seconds {args.seconds:g}\n")
    print("| threads | single-point QPS | per thread | batched 1,024 (points/s) | batched 65,536 |")
    print("|---|---|---|---|---|")
    for r in rows:
        t = r["threads"]
        print(
            f"| {t} | {r['single_qps']:,.0f} | {r['single_qps'] / t:,.0f} | "
            f"{r['batched_1024_points_per_s']:,.0f} | {r['batched_65536_points_per_s']:,.0f} |"
        )
    for r in rows:
        record(
            "field_throughput",
            "neurofabric",
            workload={
                "threads": r["threads"],
                "thread_pools": r["thread_pools"],
                "seconds": args.seconds,
            },
            figures={
                "single_queries_per_s": r["single_qps"],
                "single_per_thread_queries_per_s": r["single_qps"] / r["threads"],
                "batched_1024_points_per_s": r["batched_1024_points_per_s"],
                "batched_65536_points_per_s": r["batched_65536_points_per_s"],
            },
            headline=("single_queries_per_s", "batched_65536_points_per_s"),
        )


if __name__ == "__main__":
    main()
