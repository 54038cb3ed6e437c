"""``neurofabric field``: create, query, benchmark and inspect demand-paged neural fields."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import typer
from rich.table import Table

from neurofabric.cli.common import BACKEND_OPTION, JSON_OPTION, ProgressView, emit, handles_errors
from neurofabric.cli.render import console
from neurofabric.core.errors import ConfigError

field_app = typer.Typer(
    help="The demand-paged neural field: hash-encoded parameters on sparse sharded files.",
    no_args_is_help=True,
)


def _parse_points(points: list[str], n_dims: int) -> np.ndarray:
    out = []
    for p in points:
        try:
            vals = [float(v) for v in p.split(",")]
        except ValueError:
            raise ConfigError(f"a point is comma-separated numbers, got {p!r}") from None
        if len(vals) != n_dims:
            raise ConfigError(f"the field has {n_dims} dimensions, point {p!r} has {len(vals)}")
        out.append(vals)
    return np.array(out, dtype=np.float32)


@field_app.command("create")
@handles_errors
def field_create(
    path: Path = typer.Argument(..., help="Folder of the new field."),
    dims: int = typer.Option(3, help="Coordinate dimensions (1-4)."),
    levels: int = typer.Option(16, help="Resolution levels L."),
    features: int = typer.Option(2, help="Features per level F."),
    log2_table: int = typer.Option(19, help="log2 of the rows per hashed level T."),
    base_resolution: int = typer.Option(16, help="Coarsest resolution N_min (vertices)."),
    per_level_scale: float = typer.Option(1.5, help="Growth factor b between levels."),
    hash_bits: int = typer.Option(32, help="32: tiny-cuda-nn exact; 64: tables beyond 2^32 rows."),
    hidden: int = typer.Option(64, help="Width of the decoder's hidden layer."),
    out_dim: int = typer.Option(1, help="Decoded values per point."),
    logical_pib: float = typer.Option(1.0, help="Logical size of the page space in PiB."),
    seed: int = typer.Option(0, help="Seed of the decoder's weights."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Create an empty field (sparse files: only the decoder's pages are written)."""
    from neurofabric.field import DemandPagedField, HashGridSpec

    spec = HashGridSpec(
        n_dims=dims,
        n_levels=levels,
        n_features=features,
        log2_table=log2_table,
        base_resolution=base_resolution,
        per_level_scale=per_level_scale,
        hash_bits=hash_bits,
    )
    logical = int(logical_pib * 2**50)
    t0 = time.perf_counter()
    f = DemandPagedField.create(
        path, spec=spec, hidden=(hidden,), out_dim=out_dim, logical_bytes=logical, seed=seed
    )
    secs = time.perf_counter() - t0
    disk = f.store.disk_bytes()
    f.close()
    summary = {
        "field": str(path),
        "table_rows": spec.n_rows,
        "logical_bytes": logical,
        "disk_bytes": disk,
        "create_s": secs,
    }
    emit(summary, json_out, _create_table)


def _create_table(s: dict) -> Table:
    t = Table(title=f"field {s['field']}")
    t.add_column("figure")
    t.add_column("value", justify="right")
    t.add_row("table rows", f"{s['table_rows']:,}")
    t.add_row("logical size", f"{s['logical_bytes']:,} bytes")
    t.add_row("on disk", f"{s['disk_bytes']:,} bytes")
    t.add_row("created in", f"{s['create_s'] * 1e3:.1f} ms")
    return t


@field_app.command("query")
@handles_errors
def field_query(
    path: Path = typer.Argument(..., help="A field folder."),
    points: list[str] = typer.Argument(
        ..., help="Points as comma-separated coordinates in [0, 1]."
    ),
    backend: str = BACKEND_OPTION,
    json_out: bool = JSON_OPTION,
) -> None:
    """Decoded values at points (read-only)."""
    from neurofabric.field import DemandPagedField

    f = DemandPagedField.open(path, readonly=True, backend=backend)
    try:
        x = _parse_points(points, f.spec.n_dims)
        values = f.query(x)
        lat = f.latency_summary()
    finally:
        f.close()
    if json_out:
        emit({"points": x, "values": values, "latency": lat}, True, None)
        return
    t = Table("point", "value")
    for p, v in zip(points, values, strict=True):
        t.add_row(p, ", ".join(f"{x:.6g}" for x in v))
    t.caption = f"query latency {lat['p50_us']:.0f} us"
    console.print(t)


@field_app.command("learn")
@handles_errors
def field_learn(
    path: Path = typer.Argument(..., help="A field folder."),
    function: str = typer.Option("sines", help="Target: sines (a smooth test function) or ring."),
    steps: int = typer.Option(300, help="Learning steps."),
    batch: int = typer.Option(256, help="Points per step."),
    lr: float | None = typer.Option(None, help="Learning rate (default: 1e-2 Adam, 0.05 SGD)."),
    optimizer: str | None = typer.Option(
        None, help="adam (the default where the field has optimizer state) or sgd."
    ),
    lr_decay: str | None = typer.Option(
        None,
        help="START,INTERVAL,BASE: Adam's rate times BASE at step START and every INTERVAL "
        "steps after (tiny-cuda-nn's ExponentialDecay), e.g. 200,100,0.5.",
    ),
    seed: int = typer.Option(0, help="Seed of the sampled points."),
    backend: str = BACKEND_OPTION,
    json_out: bool = JSON_OPTION,
) -> None:
    """Fit a built-in test function (continual learning on touched rows and the decoder)."""
    from neurofabric.field import DemandPagedField, ExponentialDecay

    fns = {
        "sines": lambda x: np.prod(np.sin(3 * np.pi * x), axis=1, keepdims=True),
        "ring": lambda x: (
            (np.abs(np.linalg.norm(x - 0.5, axis=1, keepdims=True) - 0.3) < 0.05) * 1.0
        ),
    }
    if function not in fns:
        raise ConfigError(f"--function must be one of {sorted(fns)}, got {function!r}")
    if steps < 1 or batch < 1:
        raise ConfigError(f"--steps and --batch must be >= 1, got {steps} and {batch}")
    fn = fns[function]
    decay = ExponentialDecay.parse(lr_decay) if lr_decay else None
    f = DemandPagedField.open(path, backend=backend)
    try:
        rng = np.random.default_rng(seed)
        chunk = max(1, 65_536 // batch)  # steps sampled at once (the same stream as one by one)
        loss = float("nan")
        with ProgressView(
            "learning", show=not json_out, info=lambda p: f"loss {p['loss']:.4g}"
        ) as view:
            for start in range(0, steps, chunk):
                n = min(chunk, steps - start)
                x = rng.random((n * batch, f.spec.n_dims)).astype(np.float32)

                def report(p, start=start):
                    view.callback(replace(p, done=start + p.done, total=steps))

                f.learn(
                    x,
                    fn(x),
                    lr=lr,
                    optimizer=optimizer,
                    lr_decay=decay,
                    batch_size=batch,
                    callback=report,
                )
                loss = float(view.last["loss"])
        test = rng.random((2000, f.spec.n_dims)).astype(np.float32)
        mse = float(np.mean((f.query(test) - fn(test)) ** 2))
        used = f.backend
    finally:
        f.close()
    summary = {
        "function": function,
        "steps": steps,
        "batch": batch,
        "lr": lr,
        "lr_decay": lr_decay,
        "optimizer": optimizer or ("adam" if f.optim_layout is not None else "sgd"),
        "last_loss": loss,
        "held_out_mse": mse,
        "backend": used,
    }
    if json_out:
        emit(summary, True, None)
        return
    console.print(f"held-out MSE on 2,000 points: {mse:.5f} (loss at the last step {loss:.5f})")


@field_app.command("stats")
@handles_errors
def field_stats(
    path: Path = typer.Argument(..., help="A field folder."),
    queries: int = typer.Option(1000, help="Random queries to run before reporting."),
    dram_pages: int = typer.Option(4096, help="DRAM tier size in pages."),
    seed: int = typer.Option(0),
    backend: str = BACKEND_OPTION,
    json_out: bool = JSON_OPTION,
) -> None:
    """Run random queries read-only and report tiers, latency percentiles and disk use."""
    from neurofabric.field import DemandPagedField, TierConfig

    tiers = TierConfig(dram_pages=dram_pages)
    f = DemandPagedField.open(path, readonly=True, tiers=tiers, backend=backend)
    try:
        rng = np.random.default_rng(seed)
        for _ in range(queries):
            f.query(rng.random((1, f.spec.n_dims)))
        s = f.stats()
    finally:
        f.close()
    emit(s, json_out, stats_table)


def stats_table(s: dict) -> Table:
    t = Table(title="field statistics")
    t.add_column("figure")
    t.add_column("value", justify="right")
    for tier, rate in s["tiers"]["hit_rate"].items():
        t.add_row(f"row reads from {tier}", f"{rate:.2%}")
    lat = s["latency"]
    t.add_row(
        "query p50 / p95 / p99",
        f"{lat['p50_us']:.0f} / {lat['p95_us']:.0f} / {lat['p99_us']:.0f} us",
    )
    t.add_row("DRAM evictions", f"{s['tiers']['dram_evictions']:,}")
    t.add_row("bytes read from SSD", f"{s['tiers']['bytes_read_ssd']:,}")
    t.add_row("on disk / logical", f"{s['disk_bytes']:,} / {s['logical_bytes']:,} bytes")
    return t


@field_app.command("bench")
@handles_errors
def field_bench(
    workload: str = typer.Option(
        "interleaved", help="sequential, strided, zipf, uniform, interleaved."
    ),
    accesses: int = typer.Option(20000, help="Length of the page stream."),
    depth: int = typer.Option(4, help="Pages predicted per access."),
    seed: int = typer.Option(0),
    json_out: bool = JSON_OPTION,
) -> None:
    """Every prefetcher on one page stream: precision, coverage and cost per access."""
    from neurofabric.field.prefetch import PREFETCHERS, PrefetchTracker, make_prefetcher
    from neurofabric.field.workloads import make_workload

    pages = make_workload(workload, accesses, seed=seed)
    results = {}
    for name in PREFETCHERS:
        tracker = PrefetchTracker(make_prefetcher(name), k=depth)
        for p in pages.tolist():
            tracker.access(p)
        results[name] = tracker.summary()
    if json_out:
        emit({"workload": workload, "accesses": accesses, "depth": depth} | results, True, None)
        return
    t = Table(title=f"prefetchers on a {workload} stream of {accesses:,} pages")
    for col in ("prefetcher", "precision", "coverage", "us per access"):
        t.add_column(col, justify="right")
    for name, s in results.items():
        t.add_row(
            name, f"{s['precision']:.3f}", f"{s['coverage']:.3f}", f"{s['us_per_access']:.2f}"
        )
    console.print(t)
