"""The demand-paged field against a plain numpy.memmap of the same table, in one run.

    python benchmarks/field_query.py [--workdir DIR] [--log2-table 22] [--queries 3000] [--threads 1]

Both sides hash the same points with the same kernel, read the same table bytes and decode
with the same MLP; only the storage differs. The baseline is a ``numpy.memmap`` of one flat
file (the OS page cache, default read-around); ours reads through the tiers (a DRAM pool far
smaller than the table, SSD shards advised MADV_RANDOM, WILLNEED prefetch hints). Both run in
this one process on ``--threads`` threads (default 1): numba, BLAS and OpenMP are pinned before
numpy is imported, and the pinned counts are printed in the header and in every JSON line.

Parts:
1. create + open time and disk use of an empty 1 PiB field;
2. query latency (one point per query), hot (the working set resident) and with cold bursts
   (the files dropped from the page cache with POSIX_FADV_DONTNEED before each burst);
3. prefetchers on page streams: precision, coverage, cost per access;
4. a cold sequential page scan through the tiers with prefetch on and off;
5. hit rate per tier for Zipf and uniform random queries (DRAM + emulated CXL + SSD).
Prints markdown tables and one JSON line per part.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

from _record import record

# threads are pinned before numpy / numba load (their pools size themselves on import)
_pre = argparse.ArgumentParser(add_help=False)
_pre.add_argument("--threads", type=int, default=1)
THREADS = max(1, _pre.parse_known_args()[0].threads)
for _var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = str(THREADS)

import numba  # noqa: E402
import numpy as np  # noqa: E402
from threadpoolctl import threadpool_info, threadpool_limits  # noqa: E402

from neurofabric.field import DemandPagedField, HashGridSpec, TierConfig  # noqa: E402
from neurofabric.field.prefetch import PREFETCHERS, PrefetchTracker, make_prefetcher  # noqa: E402
from neurofabric.field.workloads import make_workload  # noqa: E402


def pinned_threads() -> dict:
    """The thread counts in force: numba's, each native pool's (BLAS, OpenMP), the env."""
    pools = {f"{p['user_api']}:{p['internal_api']}": p["num_threads"] for p in threadpool_info()}
    return {
        "numba": numba.get_num_threads(),
        **pools,
        **{v: os.environ.get(v) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")},
    }


def drop_cache(paths) -> None:
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def pct(lat_s) -> dict:
    lat = np.asarray(lat_s) * 1e6
    p50, p95, p99 = np.percentile(lat, [50, 95, 99])
    return {"p50_us": float(p50), "p95_us": float(p95), "p99_us": float(p99)}


def part_petabyte(work: Path) -> dict:
    spec = HashGridSpec(n_dims=3, n_levels=16, n_features=2, log2_table=40, hash_bits=64)
    t0 = time.perf_counter()
    f = DemandPagedField.create(work / "pib", spec=spec, logical_bytes=2**50)
    f.close()
    created = time.perf_counter() - t0
    t0 = time.perf_counter()
    f = DemandPagedField.open(work / "pib")
    opened = time.perf_counter() - t0
    t0 = time.perf_counter()
    f.query([[0.5, 0.5, 0.5]])
    first_query = time.perf_counter() - t0
    disk = f.store.disk_bytes()
    f.close()
    shutil.rmtree(work / "pib")
    return {
        "create_s": created,
        "open_s": opened,
        "first_query_s": first_query,
        "disk_bytes": disk,
        "table_rows": spec.n_rows,
    }


def build(work: Path, args) -> tuple[DemandPagedField, np.memmap, Path]:
    spec = HashGridSpec(
        n_dims=3,
        n_levels=16,
        n_features=2,
        log2_table=args.log2_table,
        base_resolution=16,
        per_level_scale=1.5,
    )
    field = DemandPagedField.create(
        work / "field",
        spec=spec,
        hidden=(64,),
        seed=0,
        logical_bytes=1 << 40,
        shard_bytes=1 << 30,
        tiers=TierConfig(dram_pages=args.dram_pages),
    )
    rng = np.random.default_rng(0)
    table = rng.uniform(-1e-2, 1e-2, size=(spec.n_rows, spec.n_features)).astype(np.float32)
    chunk = 1 << 20
    for start in range(0, spec.n_rows, chunk):  # every table page really on disk
        field.store.write(start * 8, table[start : start + chunk])
    field.store.flush()
    flat = work / "table.bin"
    with open(flat, "wb") as fh:
        table.tofile(fh)
        fh.flush()
        os.fsync(fh.fileno())
    del table
    os.sync()  # no write-back may compete with the cold reads below
    mm = np.memmap(flat, dtype=np.float32, mode="r", shape=(spec.n_rows, spec.n_features))
    return field, mm, flat


def memmap_query(field: DemandPagedField, mm: np.memmap, x: np.ndarray, params) -> np.ndarray:
    rows, weights = field.grid.corners(x)
    vals = np.asarray(mm[rows.astype(np.int64).reshape(-1)]).reshape(*rows.shape, -1)
    feats = field.grid.combine(vals, weights)
    for k, (W, b) in enumerate(params):
        feats = feats @ W + b
        if k < len(params) - 1:
            feats = np.maximum(feats, 0)
    return feats


def part_latency(field, flat, args) -> dict:
    rng = np.random.default_rng(1)
    spec = field.spec
    mm = np.memmap(flat, dtype=np.float32, mode="r", shape=(spec.n_rows, spec.n_features))
    params = field.decoder()
    shards = sorted(field.store.path.glob("shard-*.bin"))
    hot = rng.random((args.hot_points, 3)).astype(np.float32)
    out = {}
    # hot: warm both, then time
    for x in hot:
        field.query(x[None])
        memmap_query(field, mm, x[None], params)
    field.reset_stats()
    lat_mm = []
    for _ in range(args.queries // args.hot_points):
        for x in hot:
            t0 = time.perf_counter()
            memmap_query(field, mm, x[None], params)
            lat_mm.append(time.perf_counter() - t0)
            field.query(x[None])
    s = field.stats()
    resident = s["tiers"]["hit_rate"]["dram"]
    out["hot"] = {
        "ours": pct(field.latencies),
        "memmap": pct(lat_mm),
        "ours_dram_hit_rate": resident,
    }
    # cold bursts: nothing mapped, both files dropped from the page cache, fresh DRAM tier
    lat_ours, lat_mm = [], []
    path = field.store.path
    field.close()
    del mm
    for _ in range(args.bursts):
        burst = rng.random((args.burst_size, 3)).astype(np.float32)
        f = DemandPagedField.open(path, readonly=True, tiers=TierConfig(dram_pages=args.dram_pages))
        f.query(rng.random((1, 3)))  # the decoder pages in (an open field serves the burst)
        drop_cache(shards + [flat])
        for x in burst:
            t0 = time.perf_counter()
            f.query(x[None])
            lat_ours.append(time.perf_counter() - t0)
        f.close()
        drop_cache(shards + [flat])
        m = np.memmap(flat, dtype=np.float32, mode="r", shape=(spec.n_rows, spec.n_features))
        for x in burst:
            t0 = time.perf_counter()
            memmap_query(f, m, x[None], params)
            lat_mm.append(time.perf_counter() - t0)
        del m
    out["cold"] = {"ours": pct(lat_ours), "memmap": pct(lat_mm)}
    return out


def part_prefetchers(args) -> list[dict]:
    rows = []
    for wl in ("sequential", "strided", "interleaved", "zipf", "uniform"):
        pages = make_workload(wl, args.stream, seed=0, n_pages=1 << 24)
        for name in PREFETCHERS:
            t = PrefetchTracker(make_prefetcher(name), k=4)
            for p in pages.tolist():
                t.access(p)
            rows.append({"workload": wl, **t.summary()})
    return rows


def part_scan(field, args) -> dict:
    """Cold sequential page scan through the tiers: prefetch on vs off."""
    out = {}
    shards = sorted(field.store.path.glob("shard-*.bin"))
    pages_per = field.store.page_size // field.row_bytes
    n = args.scan_pages
    start = 1000
    for mode in ("off", "on"):
        field.store.close()  # nothing of the file stays mapped, so the cache can be dropped
        f = DemandPagedField.open(
            field.store.path,
            readonly=True,
            tiers=TierConfig(dram_pages=256),
            prefetcher="stride" if mode == "on" else None,
            prefetch_depth=32,
        )
        drop_cache(shards)
        lat = []
        for page in range(start, start + n):
            t0 = time.perf_counter()
            f.pages.read_rows(np.array([page * pages_per], np.uint64))
            lat.append(time.perf_counter() - t0)
        out[mode] = pct(lat)
        if mode == "on":
            out["prefetch"] = f.tracker.summary()
        f.close()
        start += n  # fresh pages for the second pass
    return out


def part_tiers(field, args) -> dict:
    out = {}
    cfg = TierConfig(dram_pages=args.dram_pages // 2, cxl_pages=args.dram_pages, cxl_delay_s=5e-7)
    rng = np.random.default_rng(2)
    candidates = rng.random((args.tier_points, 3)).astype(np.float32)
    ranks = np.arange(1, len(candidates) + 1, dtype=np.float64) ** -1.1
    ranks /= ranks.sum()
    for name, pick in (
        ("zipf", lambda: candidates[rng.choice(len(candidates), p=ranks)]),
        ("uniform", lambda: rng.random(3).astype(np.float32)),
    ):
        f = DemandPagedField.open(field.store.path, readonly=True, tiers=cfg, prefetcher=None)
        for _ in range(args.queries):
            f.query(pick()[None])
        s = f.stats()
        out[name] = {"hit_rate": s["tiers"]["hit_rate"], **pct(f.latencies)}
        f.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--workdir", default=None, help="where the files go (default: a temp dir)")
    ap.add_argument("--log2-table", type=int, default=22)
    ap.add_argument("--dram-pages", type=int, default=8192)
    ap.add_argument("--queries", type=int, default=3000)
    ap.add_argument("--hot-points", type=int, default=20)
    ap.add_argument("--bursts", type=int, default=10)
    ap.add_argument("--burst-size", type=int, default=50)
    ap.add_argument("--stream", type=int, default=50000)
    ap.add_argument("--scan-pages", type=int, default=3000)
    ap.add_argument("--tier-points", type=int, default=2000)
    ap.add_argument(
        "--threads", type=int, default=1, help="numba, BLAS and OpenMP threads, both systems"
    )
    args = ap.parse_args()
    numba.set_num_threads(THREADS)
    work = Path(tempfile.mkdtemp(dir=args.workdir))
    with threadpool_limits(THREADS):
        try:
            run(work, args)
        finally:
            shutil.rmtree(work, ignore_errors=True)


def run(work: Path, args) -> None:
    threads = pinned_threads()
    tag = {"threads": THREADS, "thread_pools": threads}
    print(
        f"# {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}, work dir on "
        f"{os.statvfs(work).f_bsize}-byte blocks, threads pinned: "
        + ", ".join(f"{k} {v}" for k, v in threads.items())
    )
    pib = part_petabyte(work)
    print("\n## 1 PiB field (empty)\n")
    print("| create s | open s | first query s | disk bytes | table rows |\n|---|---|---|---|---|")
    print(
        f"| {pib['create_s']:.3f} | {pib['open_s']:.4f} | {pib['first_query_s']:.4f} | {pib['disk_bytes']:,} | {pib['table_rows']:,} |"
    )
    record(
        "field_query",
        "neurofabric",
        workload={
            **tag,
            "part": "petabyte",
            "logical_bytes": 2**50,
            "table_rows": pib["table_rows"],
        },
        figures={
            "create_s": pib["create_s"],
            "open_s": pib["open_s"],
            "first_query_s": pib["first_query_s"],
            "disk_bytes": pib["disk_bytes"],
        },
        headline=("create_s", "disk_bytes"),
    )

    field, mm, flat = build(work, args)
    table_mb = field.spec.n_rows * 8 / 2**20
    print(
        f"\n## Query latency: table {table_mb:.0f} MiB, DRAM tier {args.dram_pages * 4 / 1024:.0f} MiB\n"
    )
    del mm  # part_latency maps the file itself, so that it can unmap it
    lat = part_latency(field, flat, args)  # closes the field
    field = DemandPagedField.open(work / "field", readonly=True)
    print("| case | system | p50 us | p95 us | p99 us |\n|---|---|---|---|---|")
    for case in ("hot", "cold"):
        for system in ("ours", "memmap"):
            r = lat[case][system]
            print(
                f"| {case} | {system} | {r['p50_us']:.1f} | {r['p95_us']:.1f} | {r['p99_us']:.1f} |"
            )
    print(f"(hot: {lat['hot']['ours_dram_hit_rate']:.4f} of ours' row reads hit DRAM)")
    sizes = {"log2_table": args.log2_table, "dram_pages": args.dram_pages}
    for case in ("hot", "cold"):  # one line per row
        if case == "hot":
            load = {"queries": args.queries // args.hot_points * args.hot_points}
            load["hot_points"] = args.hot_points
        else:
            load = {"bursts": args.bursts, "burst_size": args.burst_size}
        for system, name, variant in (("ours", "neurofabric", None), ("memmap", "numpy", "memmap")):
            figures = dict(lat[case][system])
            if case == "hot" and system == "ours":
                figures["dram_hit_rate_frac"] = lat["hot"]["ours_dram_hit_rate"]
            record(
                "field_query",
                name,
                variant=variant,
                workload={**tag, "part": "latency", "case": case, **sizes, **load},
                figures=figures,
                headline=("p50_us", "p99_us"),
            )

    print("\n## Prefetchers on page streams (k = 4, horizon 64)\n")
    print("| workload | prefetcher | precision | coverage | us per access |\n|---|---|---|---|---|")
    for r in part_prefetchers(args):
        print(
            f"| {r['workload']} | {r['prefetcher']} | {r['precision']:.4f} | {r['coverage']:.4f} | {r['us_per_access']:.2f} |"
        )
        record(
            "field_query",
            "neurofabric",
            variant=r["prefetcher"],
            workload={
                **tag,
                "part": "prefetch",
                "stream": r["workload"],
                "accesses": r["accesses"],
                "k": 4,
                "horizon": 64,
            },
            figures={
                "precision_frac": r["precision"],
                "coverage_frac": r["coverage"],
                "per_access_us": r["us_per_access"],
            },
            headline=("precision_frac", "coverage_frac"),
        )

    print("\n## Cold sequential scan through the tiers, prefetch off vs on (stride, depth 32)\n")
    scan = part_scan(field, args)
    print("| prefetch | p50 us | p95 us | p99 us |\n|---|---|---|---|")
    for mode in ("off", "on"):
        r = scan[mode]
        print(f"| {mode} | {r['p50_us']:.1f} | {r['p95_us']:.1f} | {r['p99_us']:.1f} |")
    print(f"p99 gain: {scan['off']['p99_us'] / scan['on']['p99_us']:.1f}x")
    for mode in ("off", "on"):
        figures = dict(scan[mode])
        if mode == "on":
            figures["p99_gain_x"] = scan["off"]["p99_us"] / scan["on"]["p99_us"]
            figures["precision_frac"] = scan["prefetch"]["precision"]
            figures["coverage_frac"] = scan["prefetch"]["coverage"]
        record(
            "field_query",
            "neurofabric",
            variant="stride-prefetch" if mode == "on" else "no-prefetch",
            workload={
                **tag,
                "part": "scan",
                "prefetch": mode,
                "pages": args.scan_pages,
                "dram_pages": 256,
                "prefetch_depth": 32,
            },
            figures=figures,
            headline=("p50_us", "p99_us"),
        )

    print("\n## Hit rate per tier (row reads), DRAM + emulated CXL + SSD\n")
    tiers = part_tiers(field, args)
    print("| stream | DRAM | CXL (emulated) | SSD | p50 us | p99 us |\n|---|---|---|---|---|---|")
    for name, r in tiers.items():
        h = r["hit_rate"]
        print(
            f"| {name} | {h['dram']:.4f} | {h['cxl']:.4f} | {h['ssd'] + h['zero']:.4f} | {r['p50_us']:.1f} | {r['p99_us']:.1f} |"
        )
    for name, r in tiers.items():
        record(
            "field_query",
            "neurofabric",
            workload={
                **tag,
                "part": "tiers",
                "stream": name,
                "queries": args.queries,
                "dram_pages": args.dram_pages // 2,
                "cxl_pages": args.dram_pages,
            },
            figures={
                **{f"{tier}_hit_rate_frac": v for tier, v in r["hit_rate"].items()},
                **{k: v for k, v in r.items() if k != "hit_rate"},
            },
            headline=("dram_hit_rate_frac", "p50_us", "p99_us"),
        )
    field.close()


if __name__ == "__main__":
    main()
