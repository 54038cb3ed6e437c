"""The README's headline tables, each made from the results rows of its benchmarks.

:data:`TABLES` maps the name in a README block ``<!-- bench:table:NAME:start -->`` to the
function that makes its body from the rows of every benchmark (``{benchmark: rows}``, the
newest run of each, as ``report.newest`` picks them). A table shows ours beside the peers the
way the README quotes them; a benchmark with no rows yet gives the command that makes them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value == 0:
            return "0"
        mag = abs(value)
        if mag >= 1000:
            return f"{value:,.0f}"
        if mag >= 10:
            return f"{value:.1f}"
        if mag >= 0.01:
            return f"{value:.3g}"
        return f"{value:.2e}"
    if isinstance(value, list | tuple):
        return "x".join(fmt(v) for v in value)
    return str(value)


# ----------------------------------------------------------------- the README's headline tables
def _last(rows: list[dict], **match: Any) -> dict | None:
    """The last row (the newest in its file) whose keys have these values."""
    for row in reversed(rows):
        if all(row.get(k) == v for k, v in match.items()):
            return row
    return None


def _get(rows: list[dict], figure: str, **match: Any) -> Any:
    row = _last(rows, **match)
    return None if row is None else row.get(figure)


def _pct(frac: Any) -> str:
    return "-" if frac is None else f"{100 * frac:.1f} %"


def _grid(head: list[str], body: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return lines + ["| " + " | ".join(cells) + " |" for cells in body]


def _provenance(rows: list[dict], command: str) -> str:
    dates = ", ".join(sorted({r["date"] for r in rows}))
    machines = "; ".join(sorted({r["machine"] for r in rows}))
    return f"`{command}`, {dates}, {machines}"


def _missing(name: str) -> str:
    return (
        f"Not in the results yet: `python benchmarks/run_all.py --only {name}`, then "
        "`python benchmarks/report.py benchmarks/results --write`."
    )


def _ours(parts: list[tuple[str, Any]]) -> str:
    """``first (label value, ...)``: the first figure, the others in brackets."""
    shown = [(label, v) for label, v in parts if v is not None]
    if not shown:
        return "-"
    (_, first), rest = shown[0], shown[1:]
    extra = ", ".join(f"{label} {fmt(v)}" for label, v in rest)
    return fmt(first) + (f" ({extra})" if extra else "")


_CUBA_PEERS = (
    ("brian2", "cpp_standalone", "Brian2 {v} C++ standalone"),
    ("brian2", "cython", "Brian2 {v} Cython"),
    ("nest-simulator", None, "NEST {v}"),
)


def _cuba_threads(rs: list[dict], threads: int) -> list[str]:
    """The CUBA table of one thread count."""
    peers = [(s, v, label) for s, v, label in _CUBA_PEERS if _last(rs, system=s, variant=v)]
    head = [f"{threads} thread{'s' if threads > 1 else ''} each", "neurofabric"]
    head += [label.format(v=_get(rs, "version", system=s, variant=v)) for s, v, label in peers]
    sizes = sorted({r["neurons"] for r in rs if r.get("s_per_bio_s") is not None})
    body = []

    def ours(figure: str, n: int, variants: list[tuple[str, str]]) -> str:
        return _ours(
            [
                (label, _get(rs, figure, system="neurofabric", variant=v, neurons=n))
                for label, v in variants
            ]
        )

    def peer(figure: str, n: int, ratio: bool) -> list[str]:
        cells = []
        for s, v, _ in peers:
            row = _last(rs, system=s, variant=v, neurons=n)
            if row is None or row.get(figure) is None:
                cells.append("not run")
                continue
            x = row.get("time_vs_neurofabric_x") if ratio else None
            cells.append(fmt(row[figure]) + (f" ({fmt(x)}x ours)" if x else ""))
        return cells

    for n in sizes:
        body.append(
            [f"{n:,} neurons, wall s per biological s"]
            + [
                ours(
                    "s_per_bio_s",
                    n,
                    [
                        ("", "csr/float64"),
                        ("float32", "csr/float32"),
                        ("procedural", "procedural/float64"),
                        ("torch on the CPU", "csr/float64/torch-cpu"),
                    ],
                )
            ]
            + peer("s_per_bio_s", n, True)
        )
    for n in sizes:
        body.append(
            [f"{n:,} neurons, bytes per synapse (peak process growth, the same measure for all)"]
            + [
                ours(
                    "per_synapse_bytes",
                    n,
                    [("CSR", "csr/float64"), ("procedural", "procedural/float64")],
                )
            ]
            + peer("per_synapse_bytes", n, False)
        )
    if sizes:
        body.append(
            ["our synapse arrays alone, bytes per synapse"]
            + [
                ours(
                    "array_per_synapse_bytes",
                    sizes[-1],
                    [("CSR", "csr/float64"), ("procedural", "procedural/float64")],
                )
            ]
            + [""] * len(peers)
        )
        cached = _get(rs, "process_wall_s", variant="first-run-cached-jit")
        cold = _get(rs, "process_wall_s", variant="first-run-cold-jit")
        if cached is not None or cold is not None:
            body.append(
                [f"first 1 s run of {sizes[0]:,} neurons, whole process, s"]
                + [_ours([("", cached), ("empty kernel cache", cold)])]
                + peer("process_wall_s", sizes[0], False)
            )
    return ["", *_grid(head, body)]


def cuba_table(by: dict[str, list[dict]]) -> str:
    """Wall time, memory per synapse and the first run of the CUBA network, ours against
    Brian2 and NEST, a table per thread count."""
    rows = by.get("snn_cuba")
    if not rows:
        return _missing("snn_cuba")
    out = [f"CUBA network, 1 s of biological time ({_provenance(rows, 'benchmarks/snn_cuba.py')}):"]
    for threads in sorted({r["threads"] for r in rows if isinstance(r.get("threads"), int)}):
        out += _cuba_threads([r for r in rows if r.get("threads") == threads], threads)
    return "\n".join(out)


def mnist_table(by: dict[str, list[dict]]) -> str:
    """Diehl & Cook on MNIST: test accuracy of each weight setting, and training speed
    against BindsNET."""
    out: list[str] = []
    rows = by.get("snn_mnist")
    if rows:
        out.append(
            "Unsupervised Diehl & Cook learning on MNIST, one pass, accuracy on "
            f"{fmt(rows[0].get('test_images'))} test images "
            f"({_provenance(rows, 'benchmarks/snn_mnist.py')}):"
        )
        body = [
            [
                fmt(r.get("neurons")),
                str(r.get("model")),
                fmt(r.get("train_images")),
                str(r.get("weights")),
                _pct(r.get("accuracy_frac")),
            ]
            for r in rows
        ]
        # accuracy only: the speed is snn_mnist_speed's, timed on its own
        head = ["neurons", "rule", "training images", "weights", "test accuracy"]
        out += ["", *_grid(head, body)]
    else:
        out.append(_missing("snn_mnist"))
    speed = by.get("snn_mnist_speed")
    if speed:
        ours = _last(speed, system="neurofabric", variant="paper-protocol")
        same = _last(speed, system="neurofabric", variant="bindsnet-protocol")
        peer = _last(speed, system="bindsnet")
        n = (ours or same or {}).get("train_images")
        out += [
            "",
            f"Training speed, the first {fmt(n)} images "
            f"({_provenance(speed, 'benchmarks/snn_mnist_speed.py')}):",
            "",
            *_grid(
                ["", "neurofabric", f"BindsNET {peer.get('version') if peer else ''}".strip()],
                [
                    [
                        "images per second",
                        _ours(
                            [
                                ("", ours and ours.get("images_per_s")),
                                ("on BindsNET's protocol", same and same.get("images_per_s")),
                            ]
                        ),
                        fmt(peer and peer.get("images_per_s")),
                    ],
                    ["ours against BindsNET", fmt(ours and ours.get("speedup_x")) + "x", ""],
                ],
            ),
        ]
    else:
        out += ["", _missing("snn_mnist_speed")]
    return "\n".join(out)


def thermo_table(by: dict[str, list[dict]]) -> str:
    """Test accuracy, pruning and time of Metropolis-Hastings against plain annealing and
    backprop on digits and MNIST, and the proposals per second."""
    systems = (
        ("neurofabric", "mh-topology"),
        ("neurofabric", "plain-sa"),
        ("scikit-learn", "mlp-adam"),
    )
    head = [
        "",
        "Metropolis-Hastings with birth and death",
        "plain simulated annealing",
        "backprop (scikit-learn, Adam)",
    ]
    body, used = [], []
    for name, what in (("thermo_digits", "digits"), ("thermo_mnist", "MNIST")):
        rows = [r for r in by.get(name, []) if r.get("part", "training") == "training"]
        if not rows:
            body.append([f"{what}: {_missing(name)}", "", "", ""])
            continue
        used += rows
        model = rows[0].get("model")
        seeds = rows[0].get("seeds")
        label = f"{what} {model}, test accuracy" + (f" (median of {seeds} seeds)" if seeds else "")
        cells = []
        for s, v in systems:
            r = _last(rows, system=s, variant=v)
            if r is None:
                cells.append("not run")
                continue
            pruned = r.get("sparsity_frac")
            extra = f", {_pct(pruned)} of connections pruned" if pruned else ""
            cells.append(f"{_pct(r.get('accuracy_frac'))}{extra}, {fmt(r.get('train_s'))} s")
        body.append([label, *cells])
    out = []
    if used:
        out.append(
            "The thermodynamic trainer, no gradients "
            f"({_provenance(used, 'benchmarks/thermo_digits.py, benchmarks/thermo_mnist.py')}):"
        )
    out += ["", *_grid(head, body)]
    fast = [r for r in by.get("thermo_digits", []) if r.get("part") == "throughput"]
    if fast:
        body = [
            [
                f"{fmt(r['size'])} samples",
                fmt(r.get("proposals_per_s")),
                fmt(_get(fast, "proposals_per_s", variant="numpy-reference", size=r["size"])),
                fmt(r.get("speedup_x")) + "x",
            ]
            for r in fast
            if r.get("variant") == "numba"
        ]
        out += [
            "",
            *_grid(
                [
                    "proposals per second on digits, energy over",
                    "numba",
                    "numpy reference (recomputes the network)",
                    "ratio",
                ],
                body,
            ),
        ]
    return "\n".join(out)


def thermo_load_table(by: dict[str, list[dict]]) -> str:
    """Loading the same weights: open, and open plus reading every byte, each system."""
    rows = by.get("thermo_load")
    if not rows:
        return _missing("thermo_load")
    size = rows[0].get("size")
    body = [
        [
            r["system"],
            str(r.get("how", r.get("variant"))),
            str(r.get("checksums", "")),
            fmt(r.get("load_ms")),
            fmt(r.get("first_pass_ms")),
        ]
        for r in rows
    ]
    return "\n".join(
        [
            f"Loading {fmt(size)} float32 weights with their source and target columns, cold page "
            f"cache ({_provenance(rows, 'benchmarks/thermo_load.py')}):",
            "",
            *_grid(
                ["system", "how", "checksums", "open, ms", "open and read every byte, ms"], body
            ),
        ]
    )


def _x(value: Any) -> str:
    return "-" if value is None else f"{fmt(value)}x"


def _mb(value: Any) -> str:
    return "-" if value is None else f"{fmt(value / 1e6)} MB"


def _titled(rows: list[dict], title: str, command: str, head: list[str], body: list) -> list[str]:
    """A caption with the command, dates and machine, then the grid."""
    return [f"{title} ({_provenance(rows, command)}):", "", *_grid(head, body)]


def _cells(rows: list[dict], keys: tuple[str, ...]) -> list[list[str]]:
    """A table body: per row, these keys' values formatted."""
    return [[fmt(r.get(k)) for k in keys] for r in rows]


def _join(parts: list[list[str]]) -> str:
    return "\n\n".join("\n".join(p) for p in parts if p)


# ------------------------------------------------------------------------- spiking simulator
def microcircuit_table(by: dict[str, list[dict]]) -> str:
    """The Potjans & Diesmann microcircuit: each population's rate, ours beside NEST's from
    the same parameters in the same run, then build, run and peak memory."""
    rows = by.get("snn_microcircuit")
    if not rows:
        return _missing("snn_microcircuit")
    ours = _last(rows, system="neurofabric")
    nest = _last(rows, system="nest-simulator")
    first = ours or nest or rows[-1]
    pops = [k[5:-3] for k in first if k.startswith("rate_") and k.endswith("_hz")]
    body = []
    for p in pops:
        a, b = (r and r.get(f"rate_{p}_hz") for r in (ours, nest))
        gap = f"{100 * (a - b) / b:+.1f} %" if a is not None and b else "-"
        body.append([p.upper().replace("23", "2/3"), fmt(a), fmt(b), gap])
    title = (
        f"The cortical microcircuit at scale {fmt(first.get('scale'))}, "
        f"{fmt(first.get('neurons'))} neurons, {fmt(first.get('synapses'))} synapses, rates over "
        f"{fmt(first.get('duration_s'))} s after {fmt(first.get('presim_s'))} s, "
        f"{first.get('threads')} thread each"
    )
    cmd = "benchmarks/snn_microcircuit.py"
    parts = [_titled(rows, title, cmd, ["population", "neurofabric, Hz", "NEST, Hz", "gap"], body)]
    speed = []
    for label, fig, ratio in (
        ("build, s", "build_s", "build_speedup_x"),
        ("wall s per biological s", "s_per_bio_s", "speedup_x"),
        ("peak memory, MB", "peak_rss_mb", "nest_rss_ratio_x"),
    ):
        x = ours and ours.get(ratio)
        note = f" (NEST's / ours {_x(x)})" if x is not None else ""
        speed.append([label, fmt(ours and ours.get(fig)) + note, fmt(nest and nest.get(fig))])
    parts.append(_grid(["", "neurofabric", "NEST"], speed))
    return _join(parts)


def nir_table(by: dict[str, list[dict]]) -> str:
    """Networks exported to NIR by snnTorch and Norse, run in their own framework and here."""
    rows = by.get("snn_nir")
    if not rows:
        return _missing("snn_nir")
    body = []
    for r in rows:
        if r["system"] != "neurofabric":
            continue
        match = {k: r.get(k) for k in ("network", "neurons", "synapses", "steps")}
        peer = next(
            (q for q in reversed(rows) if q["system"] != "neurofabric" and _same(q, match)), None
        )
        body.append(
            [
                str(r.get("network")),
                fmt(r.get("neurons")),
                fmt(r.get("synapses")),
                fmt(r.get("steps")),
                f"{peer['system']} {peer.get('variant')}" if peer else "-",
                fmt(peer and peer.get("wall_s")),
                fmt(r.get("wall_s")),
                _x(r.get("speedup_x")),
                f"{fmt(r.get('mismatched_spikes_count'))} of {fmt(r.get('spikes_count'))}",
            ]
        )
    head = ["network", "neurons", "synapses", "steps", "exported by", "there, s", "here, s"]
    head += ["ours faster", "spikes that differ"]
    title = "NIR graphs exported by snnTorch and Norse, run there and here, one thread each"
    return _join([_titled(rows, title, "benchmarks/snn_nir.py", head, body)])


def _same(row: dict, match: dict[str, Any]) -> bool:
    return all(row.get(k) == v for k, v in match.items())


def mpi_table(by: dict[str, list[dict]]) -> str:
    """Spikes identical over MPI ranks, and the time per biological second on 1 and 2 ranks
    against one process on 1 and 2 threads."""
    rows = by.get("snn_mpi")
    if not rows:
        return _missing("snn_mpi")
    body = []
    for r in rows:
        if r.get("check") == "repeats":
            continue
        how = (
            f"{r['ranks']} rank{'s' if r['ranks'] > 1 else ''}"
            if r.get("variant") == "mpi"
            else f"one process, {r.get('threads')} thread{'s' if r.get('threads', 1) > 1 else ''}"
        )
        same = r.get("identical_runs_count")
        delay = r.get("delay_ms")
        body.append(
            [
                f"{r.get('model')}, {fmt(r.get('neurons'))} neurons"
                + ("" if delay is None else f", delay {fmt(delay)} ms"),
                how,
                fmt(r.get("s_per_bio_s")),
                _x(r.get("speedup_x")),
                _x(r.get("over_one_rank_x")),
                fmt(r.get("spikes_count")),
                "-" if same is None else ("yes" if same else "no"),
            ]
        )
    rep = _last(rows, check="repeats")
    head = ["network", "run on", "wall s per biological s", "speed-up", "over 1 rank", "spikes"]
    head.append("spikes identical to 1 rank")
    parts = [_titled(rows, "Many processes (MPI)", "benchmarks/snn_mpi.py", head, body)]
    if rep:
        parts.append(
            [
                f"{fmt(rep.get('identical_runs_count'))} of {fmt(rep.get('runs'))} runs on "
                f"{rep.get('ranks')} ranks gave the same spikes as one process."
            ]
        )
    return _join(parts)


def brain_table(by: dict[str, list[dict]]) -> str:
    """The multi-scale brain: mean field against the spiking network it stands for, a region
    swapped between levels, paging to disk, and the 86-billion-neuron whole."""
    rows = by.get("snn_brain")
    if not rows:
        return _missing("snn_brain")
    cmd = "benchmarks/snn_brain.py"
    parts = []
    sweep = [r for r in rows if r.get("part") == "sweep"]
    if sweep:
        gs = sorted({r["g"] for r in sweep})
        etas = sorted({r["eta"] for r in sweep})
        body = []
        for g in gs:
            cells = []
            for eta in etas:
                r = _last(sweep, g=g, eta=eta)
                cells.append(
                    "-"
                    if r is None
                    else f"{fmt(r['meanfield_hz'])} / {fmt(r['spiking_hz'])} "
                    f"({100 * (r['meanfield_over_spiking_x'] - 1):+.0f} %)"
                )
            body.append([f"g = {fmt(g)}", *cells])
        head = ["mean field / spiking, Hz", *[f"eta = {fmt(e)}" for e in etas]]
        title = f"Brunel's network ({fmt(sweep[0].get('neurons'))} neurons) against its mean field"
        parts.append(_titled(sweep, title, cmd, head, body))
        if any(r.get("slow_power_frac") is not None for r in sweep):
            body = [
                [f"g = {fmt(g)}"]
                + [
                    "-"
                    if (r := _last(sweep, g=g, eta=eta)) is None
                    else f"{100 * r['slow_power_frac']:.0f} % (peak {r['peak_hz']:.0f} Hz)"
                    for eta in etas
                ]
                for g in gs
            ]
            head = ["share of the spiking network's power below 40 Hz (Poisson: 8 %)"]
            parts.append(_grid(head + [f"eta = {fmt(e)}" for e in etas], body))
    cuba = [r for r in rows if r.get("part") == "cuba"]
    if cuba:
        body = [
            [
                f"g = {fmt(r['g'])}, eta = {fmt(r['eta'])}",
                fmt(r.get("spiking_hz")),
                f"{fmt(r.get('meanfield_hz'))} ({_x(r.get('meanfield_over_spiking_x'))})",
                f"{fmt(r.get('white_meanfield_hz'))} ({_x(r.get('white_meanfield_over_spiking_x'))})",
            ]
            for r in cuba
        ]
        tau = fmt(1e3 * cuba[0].get("tau_syn_s", 0))
        head = [f"exponential synapses, {tau} ms", "spiking, Hz", "mean field, Hz"]
        head.append("white-noise mean field, Hz")
        parts.append(_grid(head, body))
    swap = [r for r in rows if r.get("part") == "swap"]
    if len(swap) >= 2:
        sp, mf = _last(swap, a_level="spiking"), _last(swap, a_level="mean-field")
        if sp and mf:
            gap = 100 * (mf["b_hz"] - sp["b_hz"]) / sp["b_hz"]
            parts.append(
                [
                    f"Region A swapped from spiking to mean field: A {fmt(sp['a_hz'])} -> "
                    f"{fmt(mf['a_hz'])} Hz, its spiking neighbour B {fmt(sp['b_hz'])} -> "
                    f"{fmt(mf['b_hz'])} Hz ({gap:+.1f} %)."
                ]
            )
    paging = [r for r in rows if r.get("part") == "paging"]
    if paging:
        body = [
            [
                str(r.get("variant")),
                f"{r.get('budget_regions')} of {r.get('regions')}",
                fmt(r.get("wall_ram_s")),
                fmt(r.get("wall_paged_s")),
                _x(r.get("slowdown_x")),
                "yes" if r.get("identical_runs_count") else "no",
            ]
            for r in paging
        ]
        head = ["paging regions to disk", "regions in memory", "all in RAM, s", "paged, s"]
        head += ["slower", "rates identical"]
        parts.append(_grid(head, body))
    whole = [r for r in rows if r.get("part") == "whole"]
    keys = ("regions", "neurons", "spiking_neurons", "total_mb", "build_s", "s_per_bio_s")
    body = _cells(whole, keys)
    if body:
        head = ["regions", "neurons", "of them spiking", "memory, MB", "build, s"]
        head.append("wall s per biological s")
        parts.append(_grid(head, body))
    return _join(parts)


# -------------------------------------------------------------------- event-driven classifier
def guard_table(by: dict[str, list[dict]]) -> str:
    """Text classification against scikit-learn and fastText, model size against
    ``fasttext quantize``, training on two threads, and the streaming runtime."""
    parts = []
    text = by.get("guard_text")
    if text:
        body = [
            [
                f"{r['system']} ({r.get('variant')})",
                _pct(r.get("accuracy_frac")),
                fmt(r.get("train_s")),
                fmt(r.get("features_and_predict_docs_per_s")),
                fmt(r.get("predict_only_docs_per_s")),
                _mb(r.get("model_bytes")),
            ]
            for r in text
        ]
        head = ["system", "test accuracy", "training, s", "docs/s from raw text"]
        head += ["docs/s on built features", "model"]
        title = f"Text classification on {text[0].get('dataset')}, one thread each"
        parts.append(_titled(text, title, "benchmarks/guard_text.py", head, body))
    else:
        parts.append([_missing("guard_text")])
    size = by.get("guard_size")
    if size:
        body = [
            [
                str(r.get("dataset")),
                fmt(r.get("model_bytes")),
                _pct(r.get("accuracy_frac")),
                fmt(r.get("ours_model_bytes")),
                _pct(r.get("ours_accuracy_frac")),
                f"{r.get('ours_minus_fasttext_pct', 0):+.1f} points",
            ]
            for r in size
            if r["system"] == "fasttext" and r.get("variant") == "quantize"
        ]
        head = ["dataset", "fasttext quantize, bytes", "its accuracy", "ours, bytes"]
        head += ["our accuracy", "ours minus fastText"]
        title = "Compressed models at the size `fasttext quantize` makes"
        parts.append(_titled(size, title, "benchmarks/guard_size.py", head, body))
        ladder = []
        for r in size:
            if r["system"] != "neurofabric" or not str(r.get("variant")).startswith("compressed"):
                continue
            if r.get("max_bytes") not in (1_000_000, 100_000, 10_000):
                continue
            ladder.append(
                [
                    str(r.get("dataset")),
                    fmt(r.get("max_bytes")),
                    str(r["variant"]).split("-")[1],
                    _pct(r.get("accuracy_frac")),
                    f"{r.get('vs_full_pct', 0):+.2f} points",
                ]
            )
        if ladder:
            head = ["dataset", "size budget, bytes", "weights", "test accuracy"]
            head.append("against the full model")
            parts.append(_grid(head, ladder))
    par = by.get("guard_parallel")
    if par:
        body = [
            [
                str(r.get("dataset")),
                str(r.get("variant")),
                _pct(r.get("accuracy_frac")),
                f"{r.get('vs_sequential_pct', 0):+.2f} points",
                fmt(r.get("epoch_ms")),
                _x(r.get("epoch_speedup_x")),
            ]
            for r in _newest_of(par, ("dataset", "variant"))
        ]
        head = ["dataset", "training", f"accuracy (mean of {par[0].get('seeds')} seeds)"]
        head += ["against one thread", "epoch, ms", "epoch speed-up"]
        title = f"Training on {par[0].get('threads')} threads"
        parts.append(_titled(par, title, "benchmarks/guard_parallel.py", head, body))
    run = by.get("guard_runtime")
    if run:
        body = _cells(run, ("variant", "workers", "batch_size", "docs_per_s", "p50_us", "p99_us"))
        head = ["streaming runtime", "workers", "batch", "docs/s", "p50, us", "p99, us"]
        title = f"The streaming runtime on {run[0].get('dataset')}"
        parts.append(_titled(run, title, "benchmarks/guard_runtime.py", head, body))
    return _join(parts)


def _newest_of(rows: list[dict], keys: tuple[str, ...]) -> list[dict]:
    """One row per value of ``keys``, the newest, in the order of first appearance."""
    seen: dict[tuple, dict] = {}
    for r in rows:
        seen[tuple(json_key(r.get(k)) for k in keys)] = r
    return list(seen.values())


def json_key(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


# -------------------------------------------------------------------------- sequence models
_SEQ_NAMES = {"rwkv4": "RWKV-4", "rwkv": "RWKV-4", "rwkv7": "RWKV-7", "mamba": "Mamba-1"}
_SEQ_NAMES |= {"mamba2": "Mamba-2", "gpt": "GPT"}


def _arch(name: Any) -> str:
    return _SEQ_NAMES.get(str(name), str(name))


def seq_table(by: dict[str, list[dict]]) -> str:
    """Decoding against the official ``rwkv`` package and HF transformers, training speed and
    loss against a GPT, 4-bit quality, memory estimates, and data-parallel training."""
    parts = []
    dec = [r for r in by.get("seq_decode", []) if r.get("model")]
    if dec:
        body = []
        for r in _newest_of([r for r in dec if r.get("variant") == "numba"], ("model", "vocab")):
            m = {"model": r["model"], "vocab": r["vocab"]}
            peer = next(
                (q for q in reversed(dec) if q["system"] != "neurofabric" and _same(q, m)), None
            )
            body.append(
                [
                    f"{_arch(r['model'])}, {r.get('layers')}x{r.get('width')}",
                    fmt(r["vocab"]),
                    fmt(r.get("tokens_per_s")),
                    fmt(_get(dec, "tokens_per_s", variant="torch", **m)),
                    f"{peer['system']} {peer.get('version')}: {fmt(peer.get('tokens_per_s'))}"
                    if peer
                    else "-",
                    _x(r.get("speedup_x")),
                    fmt(_get(dec, "tokens_per_s", variant="numba-batch16", **m)),
                    fmt(r.get("parity_max_abs_nats")),
                ]
            )
        head = ["model", "vocab", "numba, tok/s", "torch, tok/s", "peer, tok/s", "ours / peer"]
        head += ["numba, 16 streams, tok/s", "logits against the peer's, max difference"]
        title = "Decoding one stream, float32, one thread each"
        parts.append(_titled(dec, title, "benchmarks/seq_decode.py", head, body))
        parity = _parity(by.get("seq_decode", []))
        if parity:
            parts.append(
                _grid(["logits against the peer's", "shapes", "largest difference, nats"], parity)
            )
    else:
        parts.append([_missing("seq_decode")])
    train = by.get("seq_train")
    if train:
        gpt = _last(train, arch="gpt")
        body = []
        for r in train:
            per_min = 60 * r["trained_steps"] / r["wall_s"]
            base = gpt and 60 * gpt["trained_steps"] / gpt["wall_s"]
            body.append(
                [
                    f"{_arch(r.get('arch'))}, {r.get('layers')}x{r.get('width')}",
                    fmt(r.get("params")),
                    fmt(per_min),
                    _x(per_min / base) if base else "-",
                    fmt(r.get("best_val_loss_nats")),
                ]
            )
        t = train[0]
        head = ["model", "parameters", "steps per minute", "against the GPT"]
        head.append(f"best validation loss, nats/char, after {fmt(t.get('minutes'))} min")
        title = (
            f"Training on {t.get('dataset')}, batch {t.get('batch')} x {t.get('seq_len')}, "
            f"{t.get('threads')} threads"
        )
        parts.append(_titled(train, title, "benchmarks/seq_train.py", head, body))
    quant = [r for r in by.get("seq_quant", []) if r.get("corpus")]
    if quant:
        body = []
        for r in _newest_of([r for r in quant if r.get("variant") == "fp32"], ("corpus", "arch")):
            m = {"corpus": r["corpus"], "arch": r["arch"]}
            cells = []
            for v in ("rtn-w4", "awq-w4", "rtn-w3", "awq-w3"):
                q = _last(quant, variant=v, **m)
                cells.append("-" if q is None else f"{q['loss_vs_fp32_pct']:+.2f} %")
            bits = _get(quant, "per_weight_bits", variant="awq-w4", **m)
            body.append(
                [str(r["corpus"]), _arch(r["arch"]), fmt(r.get("val_loss_nats")), *cells, fmt(bits)]
            )
        head = ["corpus", "model", "float32 loss, nats", "RTN w4", "AWQ w4", "RTN w3", "AWQ w3"]
        head.append("AWQ w4 bits per weight")
        title = "4-bit and 3-bit weights (group 128): validation loss against float32"
        parts.append(_titled(quant, title, "benchmarks/seq_quant.py", head, body))
    mem = by.get("seq_memory")
    if mem:
        body = [
            [
                str(r.get("model")),
                fmt(r.get("estimate_training_bytes") / 2**20) + " MiB",
                fmt(r.get("measured_training_bytes") / 2**20) + " MiB",
                f"{100 * r.get('training_error_frac', 0):.2f} %",
                fmt(r.get("peak_rss_growth_bytes") / 2**20) + " MiB",
            ]
            for r in mem
        ]
        head = ["model", "estimate", "measured (saved tensors)", "error", "peak RSS growth"]
        t = mem[0]
        title = f"Training memory, batch {t.get('batch')} x {t.get('seq_len')}"
        parts.append(_titled(mem, title, "benchmarks/seq_memory.py", head, body))
    ddp = by.get("seq_ddp")
    if ddp:
        body = []
        for r in _newest_of([r for r in ddp if r.get("variant") == "1proc-1thread"], ("model",)):
            m = {"model": r["model"]}
            cells = [
                f"{fmt(_get(ddp, 'steps_per_s', variant=v, **m))} "
                f"({_x(_get(ddp, 'speedup_x', variant=v, **m))})"
                for v in ("1proc-2thread", "2proc-1thread")
            ]
            same = _get(ddp, "val_loss_nats", variant="2proc-1thread", **m)
            body.append([_arch(r["model"]), fmt(r.get("steps_per_s")), *cells, fmt(same)])
        head = [
            "model",
            "1 process, 1 thread, steps/s",
            "1 process, 2 threads",
            "2 processes (DDP)",
        ]
        head.append("validation loss, any of the three")
        title = "Data-parallel training under torchrun"
        parts.append(_titled(ddp, title, "benchmarks/seq_ddp.py", head, body))
    return _join(parts)


def _parity(rows: list[dict]) -> list[list[str]]:
    """The largest difference of our logits from the peer's, per model (rows ``*-parity``)."""
    by: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        if str(r.get("variant")).endswith("-parity"):
            by[str(r["variant"])[: -len("-parity")]].append(r)
    body = []
    for model, rs in by.items():
        worst = max(
            max(
                r.get(k) or 0
                for k in (
                    "forward_max_abs_nats",
                    "torch_step_max_abs_nats",
                    "numba_step_max_abs_nats",
                )
            )
            for r in rs
        )
        body.append(
            [
                f"{_arch(model)} against {rs[0].get('peer')} (forward, torch and numba steps)",
                fmt(len(rs)),
                fmt(worst),
            ]
        )
    return body


# ------------------------------------------------------------------ demand-paged neural field
def field_table(by: dict[str, list[dict]]) -> str:
    """Fitting an image against a torch hash grid, query latency against a plain memmap, and
    query throughput."""
    parts = []
    fit = by.get("field_fit")
    if fit:
        times = [k for k in fit[0] if k.startswith("psnr_") and k.endswith("s_db")]
        body = [
            [
                f"{r['system']} ({r.get('variant')})",
                fmt(r.get("steps")),
                *[fmt(r.get(k)) for k in times],
                fmt(r.get("to_25db_s")),
                fmt(r.get("to_30db_s")),
            ]
            for r in fit
        ]
        head = ["system", "steps", *[f"PSNR at {k[5:-4]} s, dB" for k in times]]
        head += ["to 25 dB, s", "to 30 dB, s"]
        title = f"Fitting scikit-learn's {fit[0].get('signal')}.jpg, one thread each"
        parts.append(_titled(fit, title, "benchmarks/field_fit.py", head, body))
    else:
        parts.append([_missing("field_fit")])
    sdf = by.get("field_sdf")
    if sdf:
        body = [
            [
                f"{r['system']} ({r.get('variant')})",
                *[
                    fmt(r.get(k))
                    for k in ("steps", "final_psnr_db", "final_iou_frac", "to_iou_095_s")
                ],
                fmt(r.get("to_30db_s")),
            ]
            for r in sdf
        ]
        head = ["system", "steps", "final PSNR, dB", "final IoU", "to IoU 0.95, s", "to 30 dB, s"]
        title = f"Fitting a torus's signed distance in 3-D, {fmt(sdf[0].get('seconds'))} s each"
        parts.append(_titled(sdf, title, "benchmarks/field_sdf.py", head, body))
    query = [r for r in by.get("field_query", []) if r.get("part") == "latency"]
    if query:
        body = []
        for case in dict.fromkeys(r["case"] for r in query):
            for s in ("neurofabric", "numpy"):
                r = _last(query, case=case, system=s)
                if r:
                    who = "neurofabric" if s == "neurofabric" else "numpy.memmap"
                    body.append(
                        [case, who, *[fmt(r.get(k)) for k in ("p50_us", "p95_us", "p99_us")]]
                    )
        head = ["queries", "system", "p50, us", "p95, us", "p99, us"]
        t = query[0]
        title = f"One-point queries on a 2^{t.get('log2_table')}-row table, one thread each"
        parts.append(_titled(query, title, "benchmarks/field_query.py", head, body))
    thr = by.get("field_throughput")
    if thr:
        keys = ("threads", "single_queries_per_s", "batched_1024_points_per_s")
        body = _cells(thr, (*keys, "batched_65536_points_per_s"))
        head = ["threads", "single queries/s", "points/s, batches of 1,024"]
        head.append("points/s, batches of 65,536")
        parts.append(_titled(thr, "Hot queries", "benchmarks/field_throughput.py", head, body))
    return _join(parts)


#: the README's headline tables, by the name in their markers
TABLES: dict[str, Callable[[dict[str, list[dict]]], str]] = {
    "snn_cuba": cuba_table,
    "snn_mnist": mnist_table,
    "thermo": thermo_table,
    "thermo_load": thermo_load_table,
    "snn_microcircuit": microcircuit_table,
    "snn_brain": brain_table,
    "snn_nir": nir_table,
    "snn_mpi": mpi_table,
    "guard": guard_table,
    "seq": seq_table,
    "field": field_table,
}


def headline_tables(rows: list[dict]) -> dict[str, str]:
    by: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by[row["benchmark"]].append(row)
    return {name: make(by) for name, make in TABLES.items()}
