"""Turn the results files of ``run_all.py`` (JSON lines, ``_record`` schema) into tables.

    python benchmarks/report.py benchmarks/results                 # print, newest run of each
    python benchmarks/report.py benchmarks/results --write         # update docs and README
    python benchmarks/report.py benchmarks/results/2026-12-06-xeon-2c-24g.jsonl   # one file

Each argument is a results file or a folder of them (its ``*.jsonl``, smoke-test
``*-quick.jsonl`` files left out). Of every benchmark, the rows of the newest file that has it
are shown (newest by the rows' date, then by the file's name), so a ``--only`` run replaces
its benchmarks and leaves the others as they were.

``--write`` replaces what lies between ``<!-- bench:summary:start -->`` and
``<!-- bench:summary:end -->`` in ``docs/benchmarks.md`` (a table per benchmark: system,
variant, the workload keys that differ between its rows, its headline figures) and in the
README (one line per benchmark with neurofabric's headline figures against the peers'), and
each README block ``<!-- bench:table:NAME:start -->`` ... ``<!-- bench:table:NAME:end -->``
with the headline table :data:`TABLES` makes for ``NAME`` (ours beside the peers, as the
README quotes them), so those tables are generated from measurements, never typed. Lines that
break the schema are refused with the line number.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _record import FIXED, SCHEMA, has_unit
from run_all import HEADLINE

ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- bench:summary:start -->", "<!-- bench:summary:end -->"


def read(path: Path) -> list[dict[str, Any]]:
    rows = []
    for n, text in enumerate(path.read_text().splitlines(), 1):
        if not text.strip():
            continue
        row = json.loads(text)
        need = ("schema", "benchmark", "system", "figures", "headline", "machine", "date")
        missing = [k for k in need if k not in row]
        if missing or row["schema"] != SCHEMA:
            raise SystemExit(f"{path}:{n}: not a schema-{SCHEMA} line (missing {missing})")
        bad = [f for f in row["figures"] if not has_unit(f) or f not in row]
        if bad:
            raise SystemExit(f"{path}:{n}: figures without a unit or a value: {bad}")
        rows.append(row)
    if not rows:
        raise SystemExit(f"{path}: no result lines")
    return rows


def results_files(paths: list[Path]) -> list[Path]:
    """The files named, each folder replaced by its ``*.jsonl`` (not ``*-quick.jsonl``)."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.glob("*.jsonl") if not p.stem.endswith("-quick"))
        elif path.is_file():
            files.append(path)
        else:
            raise SystemExit(f"{path}: no such results file or folder")
    if not files:
        raise SystemExit(f"no results files in {', '.join(str(p) for p in paths)}")
    return files


def _source(path: Path) -> str:
    try:
        return path.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return path.name


def _order(name: str) -> tuple[int, str]:
    names = list(HEADLINE)
    return (names.index(name) if name in names else len(names), name)


def newest(paths: list[Path]) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows of every benchmark from the newest file that has it, benchmarks in
    ``run_all``'s order, and the files they came from."""
    best: dict[str, tuple[tuple[str, str], list[dict], str]] = {}
    for path in results_files(paths):
        by: dict[str, list[dict]] = defaultdict(list)
        for row in read(path):
            by[row["benchmark"]].append(row)
        for name, rows in by.items():
            key = (max(r["date"] for r in rows), path.name)
            if name not in best or key >= best[name][0]:
                best[name] = (key, rows, _source(path))
    rows = [r for name in sorted(best, key=_order) for r in best[name][1]]
    sources = sorted({best[name][2] for name in best})
    return rows, sources


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


def _workload_keys(rows: list[dict]) -> list[str]:
    """The workload keys whose values differ between the rows (what tells rows apart)."""
    keys: list[str] = []
    for row in rows:
        for k, v in row.items():
            if k in FIXED or k in row["figures"] or k in keys or isinstance(v, dict):
                continue
            if isinstance(v, list) and len(v) > 4:
                continue
            keys.append(k)
    return [k for k in keys if len({json.dumps(r.get(k)) for r in rows}) > 1]


def benchmark_table(name: str, rows: list[dict]) -> str:
    heads: list[str] = []
    for row in rows:
        heads += [h for h in row["headline"] if h not in heads]
    keys = _workload_keys(rows)
    cols = ["system", "variant", *keys, *heads]
    lines = [
        f"### {name}",
        "",
        "| " + " | ".join(cols) + " |",
        "|" + "---|" * len(cols),
    ]
    for row in rows:
        lines.append("| " + " | ".join(fmt(row.get(c)) for c in cols) + " |")
    return "\n".join(lines)


def _ticked(source: str) -> str:
    return ", ".join(f"`{s}`" for s in source.split(", "))


def docs_summary(rows: list[dict], source: str) -> str:
    by: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by[row["benchmark"]].append(row)
    machines = sorted({r["machine"] for r in rows})
    dates = sorted({r["date"] for r in rows})
    parts = [
        "Generated by `python benchmarks/report.py benchmarks/results --write` from "
        f"{_ticked(source)}, the newest run of each benchmark ({', '.join(dates)}; "
        f"{'; '.join(machines)}). Figures carry their unit in their name (`_s` seconds, `_x` "
        "a ratio measured in the same run, ...).",
    ]
    parts += [benchmark_table(name, rs) for name, rs in by.items()]
    return "\n\n".join(parts)


def readme_summary(rows: list[dict], source: str) -> str:
    by: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by[row["benchmark"]].append(row)
    lines = [
        f"Generated from {_ticked(source)} by `benchmarks/report.py`, the newest run of each "
        "benchmark (tables per benchmark in docs/benchmarks.md):",
        "",
        "| benchmark | systems | neurofabric (first row) | rows |",
        "|---|---|---|---|",
    ]
    for name, rs in by.items():
        systems = ", ".join(dict.fromkeys(r["system"] for r in rs))
        ours = next((r for r in rs if r["system"] == "neurofabric"), None)
        shown = ", ".join(f"{h} {fmt(ours.get(h))}" for h in ours["headline"]) if ours else "-"
        lines.append(f"| `{name}` | {systems} | {shown} | {len(rs)} |")
    return "\n".join(lines)


def replace_block(path: Path, body: str, start: str = START, end: str = END) -> None:
    text = path.read_text()
    if start not in text or end not in text:
        raise SystemExit(f"{path}: no {start} ... {end} block to replace")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{start}\n{body}\n{end}{tail}")


def table_markers(name: str) -> tuple[str, str]:
    return f"<!-- bench:table:{name}:start -->", f"<!-- bench:table:{name}:end -->"


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


#: the README's headline tables, by the name in their markers
TABLES: dict[str, Callable[[dict[str, list[dict]]], str]] = {
    "snn_cuba": cuba_table,
    "snn_mnist": mnist_table,
    "thermo": thermo_table,
    "thermo_load": thermo_load_table,
}


def headline_tables(rows: list[dict]) -> dict[str, str]:
    by: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by[row["benchmark"]].append(row)
    return {name: make(by) for name, make in TABLES.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results", type=Path, nargs="+", help="results files or folders")
    ap.add_argument("--write", action="store_true", help="update docs/benchmarks.md and README")
    ap.add_argument("--docs", type=Path, default=ROOT / "docs" / "benchmarks.md")
    ap.add_argument("--readme", type=Path, default=ROOT / "README.md")
    args = ap.parse_args()
    rows, sources = newest(args.results)
    source = ", ".join(sources)
    docs, readme = docs_summary(rows, source), readme_summary(rows, source)
    tables = headline_tables(rows)
    if not args.write:
        print("\n\n".join([docs, readme, *tables.values()]))
        return
    replace_block(args.docs, docs)
    replace_block(args.readme, readme)
    for name, body in tables.items():
        replace_block(args.readme, body, *table_markers(name))
    print(f"updated {args.docs} and {args.readme} from {len(rows)} rows", file=sys.stderr)


if __name__ == "__main__":
    main()
