"""A neural field larger than this machine's memory, learning and answering within a budget.

    python benchmarks/field_beyond_ram.py                       # 2^31 rows per level, 1 GiB
    python benchmarks/field_beyond_ram.py --seconds 900 --max-disk-gib 40 --out docs/figures
    python benchmarks/field_beyond_ram.py --work-dir /mnt/ssd   # put the field on that disk

One 3-D field (16 levels x 2 features, base resolution 16, scale 1.38, one hidden layer of 64)
learns the signed distance function of a torus (``field.signals.torus_sdf``, uniform points,
batches of ``--batch``) with Adam, in two configurations, each in its own process, one thread:

- **fits**: 2^19 rows per hashed level (tiny-cuda-nn's default), every page of the table and
  of Adam's moments in the DRAM pool;
- **beyond RAM**: 2^``--log2-table`` rows per hashed level (2^31: 46 GiB of table, 138 GiB with
  Adam's moments, logical, on sparse shard files), with ``TierConfig.for_memory(--budget-mib)``:
  7/8 of the budget for the DRAM pool, 1/8 for mapped shard pages.

Each learns for ``--fit-seconds`` / ``--seconds`` (the large one stops early when its files reach
``--max-disk-gib`` allocated), flushes, then answers 2,000 single-point queries (p50/p99) and
one batch of 65,536 points. Sampled every step: resident memory (anonymous, i.e. the pool and
the interpreter; and the shard pages mapped, from ``smaps``), disk allocated by the field, and
the bytes this process read from and wrote to the storage device (``/proc/self/io``: reads
served by the page cache are not counted, so once the field's pages outgrow the page cache the
reads are the device's). With ``--out``: a plot of memory and disk over time.
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

from _proc import child_command, device_io, machine_ram, mapped_rss, memory, run_child
from _record import record
from _threads import pin_threads, thread_env

THREADS = pin_threads(1)


def spec_for(log2_table: int):
    from neurofabric.field import HashGridSpec

    return HashGridSpec(
        n_dims=3,
        n_levels=16,
        n_features=2,
        log2_table=log2_table,
        base_resolution=16,
        per_level_scale=1.38,
    )


def disk_bytes(folder: Path) -> int:
    return sum(p.stat().st_blocks * 512 for p in folder.iterdir() if p.is_file())


def child(args) -> dict:
    import numpy as np

    from neurofabric.field import DemandPagedField, TierConfig
    from neurofabric.field.signals import torus_sdf

    spec = spec_for(args.log2_table)
    field_pages = 3 * spec.n_rows * spec.n_features * 4 // 4096 + 64
    if args.budget_mib:
        tiers = TierConfig.for_memory(args.budget_mib << 20)
    else:  # everything fits: the whole table and both moment regions in DRAM
        tiers = TierConfig(dram_pages=field_pages)
    folder = Path(tempfile.mkdtemp(prefix="nf-beyond-ram-", dir=args.work_dir))
    try:
        path = folder / "f"
        f = DemandPagedField.create(path, spec=spec, hidden=(64,), seed=0, tiers=tiers)
        io0 = device_io()
        samples, losses, steps, t0 = [], [], 0, time.perf_counter()
        stopped = "time"
        while time.perf_counter() - t0 < args.seconds:
            x, y = torus_sdf(args.batch, seed=steps)
            losses.append(f.learn(x, y))
            steps += 1
            io = device_io()
            disk = disk_bytes(path)
            samples.append(
                (
                    time.perf_counter() - t0,
                    *memory(),
                    mapped_rss(folder),
                    disk,
                    io[0] - io0[0],
                    io[1] - io0[1],
                )
            )
            if disk >= args.max_disk_gib * 2**30:
                stopped = "disk"
                break
        learn_s = time.perf_counter() - t0
        t = time.perf_counter()
        f.flush()
        flush_s = time.perf_counter() - t
        xt, yt = torus_sdf(20_000, seed=10**6)
        f.reset_stats()
        rng = np.random.default_rng(0)
        for p in rng.random((2000, 3)).astype(np.float32):
            f.query(p[None])
        lat = f.latency_summary()
        t = time.perf_counter()
        pred = f.query(xt)  # 20,000 held-out points: error and one cold-ish batch
        err = float(np.sqrt(np.mean((pred - yt) ** 2)))
        big = rng.random((65_536, 3)).astype(np.float32)
        t = time.perf_counter()
        f.query(big)
        batch_pps = len(big) / (time.perf_counter() - t)
        moves = f.pages.stats()
        io = device_io()
        f.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {
        "config": args.name,
        "log2_table": args.log2_table,
        "table_gib": spec.n_rows * spec.n_features * 4 / 2**30,
        "logical_gib": 3 * spec.n_rows * spec.n_features * 4 / 2**30,
        "budget_mib": args.budget_mib or field_pages * 4096 / 2**20,
        "dram_pages": tiers.dram_pages,
        "mapped_pages": tiers.mapped_pages,
        "steps": steps,
        "stopped_by": stopped,
        "steps_per_s": steps / learn_s,
        "points_per_s": steps * args.batch / learn_s,
        "flush_s": flush_s,
        "loss_first": losses[0],
        "loss_last10": float(np.mean(losses[-10:])),
        "heldout_rmse": err,
        "p50_us": lat["p50_us"],
        "p99_us": lat["p99_us"],
        "batch_points_per_s": batch_pps,
        "rss_anon_max_mib": max(s[1] for s in samples) / 2**20,
        "mapped_max_mib": max(s[3] for s in samples) / 2**20,
        "disk_gib": samples[-1][4] / 2**30,
        "device_read_gib": (io[0] - io0[0]) / 2**30,
        "device_written_gib": (io[1] - io0[1]) / 2**30,
        "promotions": moves["promotions"],
        "writebacks": moves["writebacks"],
        "samples": [[round(s[0], 2), *s[1:]] for s in samples[:: max(1, len(samples) // 300)]],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--log2-table", type=int, default=31, help="rows per level, the large field")
    ap.add_argument("--budget-mib", type=int, default=1024, help="the large field's budget")
    ap.add_argument("--seconds", type=float, default=600.0, help="the large field's learning")
    ap.add_argument("--fit-seconds", type=float, default=60.0, help="the small field's learning")
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--max-disk-gib", type=float, default=40.0, help="stop the large one there")
    ap.add_argument("--work-dir", default=None, help="where the fields are made (default: tmp)")
    ap.add_argument("--threads", type=int, default=THREADS, help="(pinned on import)")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--name", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    if args.work_dir is not None and not Path(args.work_dir).is_dir():
        raise SystemExit(f"--work-dir {args.work_dir!r} is not a folder; make it first")
    env = dict(os.environ, **thread_env(THREADS), OMP_WAIT_POLICY="PASSIVE")
    rows = []
    for name, log2, budget, seconds in (
        ("fits", 19, 0, args.fit_seconds),
        ("beyond RAM", args.log2_table, args.budget_mib, args.seconds),
    ):
        cmd = child_command(__file__, "--name", name, "--log2-table", str(log2))
        cmd += ["--budget-mib", str(budget), "--seconds", str(seconds)]
        cmd += ["--batch", str(args.batch), "--max-disk-gib", str(args.max_disk_gib)]
        cmd += ["--threads", str(THREADS)]
        if args.work_dir is not None:
            cmd += ["--work-dir", args.work_dir]
        rows.append(run_child(cmd, env, name))
    ram = machine_ram()
    print(
        f"\nMachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{ram / 2**30:.1f} GiB RAM, Python {platform.python_version()}, {THREADS} thread(s)"
    )
    print(
        f"Command: python benchmarks/field_beyond_ram.py --log2-table {args.log2_table} "
        f"--budget-mib {args.budget_mib} --seconds {args.seconds:g} "
        f"--fit-seconds {args.fit_seconds:g} --batch {args.batch} "
        f"--max-disk-gib {args.max_disk_gib:g}\n"
    )
    print(
        "| field | table / logical (GiB) | budget (MiB) | steps | learn steps/s (points/s) | "
        "held-out RMSE | query p50 / p99 (us) | batched points/s | max RSS anon / mapped "
        "(MiB) | disk (GiB) | device read / written (GiB) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['config']} (2^{r['log2_table']}) | {r['table_gib']:.2f} / "
            f"{r['logical_gib']:.1f} ({r['logical_gib'] * 2**30 / ram:.1f}x RAM) | "
            f"{r['budget_mib']:,.0f} | {r['steps']} ({r['stopped_by']}) | "
            f"{r['steps_per_s']:.2f} ({r['points_per_s']:,.0f}) | {r['heldout_rmse']:.4f} | "
            f"{r['p50_us']:.0f} / {r['p99_us']:.0f} | {r['batch_points_per_s']:,.0f} | "
            f"{r['rss_anon_max_mib']:,.0f} / {r['mapped_max_mib']:,.0f} | {r['disk_gib']:.1f} | "
            f"{r['device_read_gib']:.1f} / {r['device_written_gib']:.1f} |"
        )
    fit, big = rows
    print(
        f"\nbeyond RAM / fits: learning {big['steps_per_s'] / fit['steps_per_s']:.3f}x, "
        f"query p50 {big['p50_us'] / fit['p50_us']:.1f}x, "
        f"batched queries {big['batch_points_per_s'] / fit['batch_points_per_s']:.3f}x"
    )
    for r, seconds in zip(rows, (args.fit_seconds, args.seconds), strict=True):
        record(
            "field_beyond_ram",
            "neurofabric",
            variant=r["config"].lower().replace(" ", "-"),
            workload={
                "log2_table": r["log2_table"],
                "table_gib": r["table_gib"],
                "logical_gib": r["logical_gib"],
                "budget_mib": r["budget_mib"],
                "dram_pages": r["dram_pages"],
                "mapped_pages": r["mapped_pages"],
                "seconds": seconds,
                "batch": args.batch,
                "max_disk_gib": args.max_disk_gib,
                "stopped_by": r["stopped_by"],
                "threads": THREADS,
                # errors of the signed distance (unitless: not figures)
                "loss_first": r["loss_first"],
                "loss_last10": r["loss_last10"],
                "heldout_rmse": r["heldout_rmse"],
            },
            figures={
                "steps": r["steps"],
                "steps_per_s": r["steps_per_s"],
                "points_per_s": r["points_per_s"],
                "flush_s": r["flush_s"],
                "p50_us": r["p50_us"],
                "p99_us": r["p99_us"],
                "batch_points_per_s": r["batch_points_per_s"],
                "rss_anon_max_mib": r["rss_anon_max_mib"],
                "mapped_max_mib": r["mapped_max_mib"],
                "disk_gib": r["disk_gib"],
                "device_read_gib": r["device_read_gib"],
                "device_written_gib": r["device_written_gib"],
                "promotions_count": r["promotions"],
                "writebacks_count": r["writebacks"],
            },
            headline=("steps_per_s", "p50_us", "rss_anon_max_mib"),
        )
    if args.out is not None:
        from neurofabric.core.figures import pyplot, save_figure

        plt = pyplot()
        fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 3.6))
        for r, c in zip(rows, ("tab:green", "tab:red"), strict=True):
            t = [s[0] for s in r["samples"]]
            mib = 2**20
            ax.plot(t, [s[1] / mib for s in r["samples"]], c=c, label=f"{r['config']}: anon")
            ax.plot(t, [s[3] / mib for s in r["samples"]], c=c, ls="--", label="shard pages mapped")
            bx.plot(t, [s[4] / 2**30 for s in r["samples"]], c=c, label=f"{r['config']}: disk")
            bx.plot(t, [s[5] / 2**30 for s in r["samples"]], c=c, ls=":", label="read from device")
        ax.axhline(big["budget_mib"], c="k", lw=0.8, ls="-.", label="budget (beyond RAM)")
        bx.axhline(ram / 2**30, c="k", lw=0.8, ls="-.", label="machine RAM")
        ax.set(xlabel="seconds of learning", ylabel="resident memory (MiB)")
        bx.set(xlabel="seconds of learning", ylabel="GiB")
        ax.legend(fontsize=7)
        bx.legend(fontsize=7)
        fig.tight_layout()
        save_figure(fig, args.out / "field_beyond_ram.png")


if __name__ == "__main__":
    main()
