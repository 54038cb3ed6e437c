"""Learning and querying a field whose pages do not fit its DRAM budget.

    python benchmarks/field_budget.py                         # budgets 100, 50, 25, 12.5 %
    python benchmarks/field_budget.py --log2-table 20 --seconds 20 --out docs/figures

One 2-D field (16 levels x 2 features, 2^``--log2-table`` rows per level, one hidden layer of
64) learns a smooth 2-D signal with Adam for ``--seconds`` at each DRAM budget, a fraction of
the pages the field touches (the table and Adam's two moment regions), then answers 2,000
single-point queries. Each budget runs in its own process on a fresh field, one thread. Reported:
learning steps/s, query p50/p99, the process's resident memory split into anonymous (the DRAM
pool, numpy) and file-backed (mapped shard pages) from ``/proc/self/status``, sampled every
step, and the pages moved between the tiers. With ``--out``, a plot of RSS over time per budget.

What this does and does not show: the DRAM pool is held to its budget and pages move through
the tiers; the shard files still sit in the OS page cache of this 24 GiB machine, so the SSD
tier is served from memory here. A field larger than the machine's RAM is measured by
``benchmarks/field_beyond_ram.py``.
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

from _proc import child_command, memory, run_child
from _record import record
from _threads import pin_threads, thread_env

THREADS = pin_threads(1)


def child(args) -> dict:
    import numpy as np

    from neurofabric.field import DemandPagedField, HashGridSpec, TierConfig

    spec = HashGridSpec(
        n_dims=2,
        n_levels=16,
        n_features=2,
        log2_table=args.log2_table,
        base_resolution=16,
        per_level_scale=1.4,
    )
    field_pages = 3 * spec.n_rows * spec.n_features * 4 // 4096 + 16
    dram = max(64, int(field_pages * args.fraction))
    folder = Path(tempfile.mkdtemp(prefix="nf-budget-"))
    try:
        tiers = TierConfig(dram_pages=dram)
        f = DemandPagedField.create(folder / "f", spec=spec, hidden=(64,), seed=0, tiers=tiers)
        rng = np.random.default_rng(0)
        samples, steps, t0 = [], 0, time.perf_counter()
        while time.perf_counter() - t0 < args.seconds:
            x = rng.random((args.batch, 2)).astype(np.float32)
            f.learn(x, np.sin(9 * x[:, :1]) * np.cos(7 * x[:, 1:2]))
            steps += 1
            samples.append((time.perf_counter() - t0, *memory()))
        learn_s = time.perf_counter() - t0
        f.reset_stats()
        for p in rng.random((2000, 2)):
            f.query(p[None])
        lat = f.latency_summary()
        moves = f.pages.stats()
        f.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {
        "fraction": args.fraction,
        "dram_pages": dram,
        "field_pages": field_pages,
        "steps_per_s": steps / learn_s,
        "p50_us": lat["p50_us"],
        "p99_us": lat["p99_us"],
        "rss_anon_max_mib": max(s[1] for s in samples) / 2**20,
        "rss_file_max_mib": max(s[2] for s in samples) / 2**20,
        "dram_evictions": moves["dram_evictions"],
        "bytes_read_ssd": moves["bytes_read_ssd"],
        "rss": [(round(t, 3), a, b) for t, a, b in samples[:: max(1, len(samples) // 200)]],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--log2-table", type=int, default=18)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--fraction", type=float, action="append", help="repeatable")
    ap.add_argument("--threads", type=int, default=THREADS, help="(pinned on import)")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        args.fraction = args.fraction[-1]
        print(json.dumps(child(args)))
        return
    rows = []
    for frac in args.fraction or [1.0, 0.5, 0.25, 0.125]:
        cmd = child_command(__file__, "--fraction", str(frac))
        cmd += ["--log2-table", str(args.log2_table), "--seconds", str(args.seconds)]
        cmd += ["--batch", str(args.batch), "--threads", str(THREADS)]
        env = dict(os.environ, **thread_env(THREADS), OMP_WAIT_POLICY="PASSIVE")
        rows.append(run_child(cmd, env, f"budget {frac}"))
    print(
        f"\nMachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {THREADS} thread(s)"
    )
    print(
        f"Command: python benchmarks/field_budget.py --log2-table {args.log2_table} "
        f"--seconds {args.seconds:g}\n"
    )
    print(
        "| DRAM budget | pages | learn steps/s | query p50 / p99 (us) | RSS anon / file (MiB) |"
        " evictions | read from SSD |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['fraction']:.1%} of {r['field_pages']:,} | {r['dram_pages']:,} | "
            f"{r['steps_per_s']:.1f} | {r['p50_us']:.0f} / {r['p99_us']:.0f} | "
            f"{r['rss_anon_max_mib']:.0f} / {r['rss_file_max_mib']:.0f} | "
            f"{r['dram_evictions']:,} | {r['bytes_read_ssd'] / 2**20:,.0f} MiB |"
        )
    for r in rows:
        record(
            "field_budget",
            "neurofabric",
            workload={
                "fraction": r["fraction"],
                "dram_pages": r["dram_pages"],
                "field_pages": r["field_pages"],
                "log2_table": args.log2_table,
                "seconds": args.seconds,
                "batch": args.batch,
                "threads": THREADS,
            },
            figures={
                "steps_per_s": r["steps_per_s"],
                "p50_us": r["p50_us"],
                "p99_us": r["p99_us"],
                "rss_anon_max_mib": r["rss_anon_max_mib"],
                "rss_file_max_mib": r["rss_file_max_mib"],
                "dram_evictions_count": r["dram_evictions"],
                "ssd_read_bytes": r["bytes_read_ssd"],
            },
            headline=("steps_per_s", "p50_us", "rss_anon_max_mib"),
        )
    if args.out is not None:
        from neurofabric.core.figures import pyplot, save_figure

        plt = pyplot()
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for r in rows:
            t = [s[0] for s in r["rss"]]
            ax.plot(t, [s[1] / 2**20 for s in r["rss"]], label=f"{r['fraction']:.1%} anon")
        ax.set_xlabel("seconds of learning")
        ax.set_ylabel("resident anonymous memory (MiB)")
        ax.legend()
        fig.tight_layout()
        save_figure(fig, args.out / "field_budget_rss.png")


if __name__ == "__main__":
    main()
