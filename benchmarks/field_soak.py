"""Soak a field: a writer learns and flushes until it is SIGKILLed, again and again; after each
kill the field must hold exactly its last flushed state, finite, and answer queries.

    python benchmarks/field_soak.py                    # an hour
    python benchmarks/field_soak.py --minutes 2        # a short run (the slow test runs one)

Each round starts a writer process on the same field. The writer learns seeded batches with
Adam, and every ``--flush-every`` steps logs ``begin N``, calls ``flush()``, computes the SHA-256
of the field's bytes (table, Adam moments, decoder) and logs ``done N <digest> <rss>``.
The digest is of what the field reads (its tiers, layer cache and optimizer state in memory),
not of its files, so a flush that misses anything shows. Its DRAM tier holds the whole field,
so nothing reaches the files between flushes. The parent
kills it with SIGKILL after a random 0.5-3 s, then opens the field read-only and checks:

* the bytes on disk hash to the last ``done`` digest (unless the kill landed inside a flush,
  between ``begin`` and ``done``: then only the next checks apply, and the round is counted);
* every parameter is finite and a batch of queries returns finite values;
* resident memory: the writer's RSS at each flush after its first, and the parent's after each
  verification, must stay within 10 % of their first values.

The writer's next round continues from the field as found (learning from the flushed state).
Prints a table and one JSON line; exits with status 1 if any check failed.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _record import record
from _threads import pin_threads

THREADS = pin_threads(1)

import numpy as np  # noqa: E402

from neurofabric.field import DemandPagedField, HashGridSpec, TierConfig  # noqa: E402
from neurofabric.field.field import decoder_floats  # noqa: E402

SPEC = HashGridSpec(
    n_dims=2, n_levels=8, n_features=2, log2_table=14, base_resolution=8, per_level_scale=1.5
)
TIERS = TierConfig(dram_pages=4096)  # 16 MiB: the whole field (table, moments, decoder)


def rss_bytes() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def field_bytes(field: DemandPagedField) -> int:
    """Bytes of the field's region of the page space: up to the end of the optimizer state."""
    state = field.optim_layout["state"]
    return state + 8 + 2 * decoder_floats(field.layers) * 4


def image(field: DemandPagedField) -> np.ndarray:
    """The bytes the field's files must hold after a flush, from its read path, not from the
    files: table and moment rows through the tiers (DRAM holds the latest), the decoder's layers
    from its layer cache, Adam's decoder moments and step count from memory."""
    n = field_bytes(field)
    rows = np.arange(-(-n // field.row_bytes), dtype=np.uint64)
    img = field.pages.read_rows(rows).reshape(-1)[:n].copy()
    for (off, _, _), (W, b) in zip(field.layers, field.decoder(), strict=True):
        flat = np.concatenate([W.reshape(-1), b]).astype(np.float32).view(np.uint8)
        img[off : off + len(flat)] = flat
    state = field._adam_state()
    parts = [np.array([state["t"]], np.int64).view(np.float32)]
    for mW, vW, mb, vb in state["layers"]:
        parts += [mW.reshape(-1), mb, vW.reshape(-1), vb]
    flat = np.concatenate(parts).astype(np.float32).view(np.uint8)
    off = field.optim_layout["state"]
    img[off : off + len(flat)] = flat
    return img


def digest(path: Path) -> str:
    with DemandPagedField.open(path, readonly=True) as f:
        return hashlib.sha256(f.store.read(0, field_bytes(f)).tobytes()).hexdigest()


def writer(path: Path, log_path: Path, flush_every: int, seed: int) -> None:
    f = DemandPagedField.open(path, tiers=TIERS)
    rng = np.random.default_rng(seed)
    with open(log_path, "a") as log:
        step = 0
        while True:
            x = rng.random((1024, 2)).astype(np.float32)
            f.learn(x, np.sin(8 * x[:, :1]) * np.cos(5 * x[:, 1:2]))
            f.query(rng.random((64, 2)))
            step += 1
            if step % flush_every == 0:
                log.write(f"begin {step}\n")
                log.flush()
                f.flush()
                d = hashlib.sha256(image(f).tobytes()).hexdigest()
                log.write(f"done {step} {d} {rss_bytes()}\n")
                log.flush()
                os.fsync(log.fileno())


def verify(path: Path, rng: np.random.Generator) -> bool:
    with DemandPagedField.open(path, readonly=True) as f:
        raw = f.store.read(0, field_bytes(f)).view(np.float32)
        values = f.query(rng.random((256, 2)))
    return bool(np.all(np.isfinite(raw)) and np.all(np.isfinite(values)))


def soak(args) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="nf-soak-"))
    path = folder / "field"
    DemandPagedField.create(path, spec=SPEC, hidden=(32,), seed=0, tiers=TIERS).close()
    rng = np.random.default_rng(args.seed)
    out = {"rounds": 0, "exact": 0, "in_flush": 0, "no_flush_yet": 0, "failures": []}
    parent_rss, writer_rss = [], []
    end = time.time() + 60 * args.minutes
    try:
        while time.time() < end:
            r = out["rounds"]
            log_path = folder / f"round{r}.log"
            cmd = [sys.executable, __file__, "--writer", str(path), str(log_path)]
            cmd += ["--flush-every", str(args.flush_every), "--seed", str(args.seed + r)]
            proc = subprocess.Popen(cmd)
            time.sleep(float(rng.uniform(0.5, 3.0)) + (4.0 if r == 0 else 0.0))  # r0: compile
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            lines = log_path.read_text().splitlines() if log_path.exists() else []
            # a "done" line counts once whole (4 fields: a kill can cut the last one short)
            done = [ln.split() for ln in lines if ln.startswith("done ")]
            done = [d for d in done if len(d) == 4 and d[3].isdigit()]
            last = lines[-1].split() if lines else []
            open_flush = bool(last) and (
                last[0] == "begin" or (last[0] == "done" and len(last) != 4)
            )
            writer_rss += [int(d[3]) for d in done[1:]]
            if not verify(path, rng):
                out["failures"].append(f"round {r}: non-finite parameters or queries")
            if not done:
                out["no_flush_yet"] += 1
            elif open_flush:
                out["in_flush"] += 1
            elif digest(path) == done[-1][2]:
                out["exact"] += 1
            else:
                out["failures"].append(f"round {r}: the field on disk is not its last flush")
            parent_rss.append(rss_bytes())
            out["rounds"] += 1
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    for name, series in (("writer", writer_rss), ("parent", parent_rss)):
        growth = (max(series) / series[0] - 1.0) if len(series) > 1 else 0.0
        out[f"{name}_rss_first_mib"] = series[0] / 2**20 if series else None
        out[f"{name}_rss_growth"] = growth
        if growth > 0.10:
            out["failures"].append(f"{name} RSS grew {growth:.1%} (limit 10 %)")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--flush-every", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=THREADS, help="(pinned on import)")
    ap.add_argument("--writer", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.writer:
        writer(*args.writer, args.flush_every, args.seed)
        return
    r = soak(args)
    print(f"\nCommand: python benchmarks/field_soak.py --minutes {args.minutes:g}\n")
    print(
        "| rounds (SIGKILLs) | exact last flush | killed inside a flush | before any flush |"
        " writer RSS growth | parent RSS growth | failures |"
    )
    print("|---|---|---|---|---|---|---|")
    print(
        f"| {r['rounds']} | {r['exact']} | {r['in_flush']} | {r['no_flush_yet']} | "
        f"{r['writer_rss_growth']:.1%} | {r['parent_rss_growth']:.1%} | {len(r['failures'])} |"
    )
    for f in r["failures"]:
        print(f"failure: {f}")
    record(
        "field_soak",
        "neurofabric",
        workload={
            "minutes": args.minutes,
            "flush_every": args.flush_every,
            "seed": args.seed,
            "threads": THREADS,
            "failures": r["failures"],
        },
        figures={
            "rounds_count": r["rounds"],
            "exact_count": r["exact"],
            "in_flush_count": r["in_flush"],
            "no_flush_yet_count": r["no_flush_yet"],
            "failures_count": len(r["failures"]),
            "writer_rss_first_mib": r["writer_rss_first_mib"],
            "parent_rss_first_mib": r["parent_rss_first_mib"],
            "writer_rss_growth_frac": r["writer_rss_growth"],
            "parent_rss_growth_frac": r["parent_rss_growth"],
        },
        headline=("rounds_count", "exact_count", "failures_count"),
    )
    sys.exit(1 if r["failures"] else 0)


if __name__ == "__main__":
    main()
