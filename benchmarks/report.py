"""Turn the results files of ``run_all.py`` (JSON lines, ``_record`` schema) into tables.

    python benchmarks/report.py benchmarks/results                 # print, newest run of each
    python benchmarks/report.py benchmarks/results --write         # update docs and README
    python benchmarks/report.py benchmarks/results/2026-12-06-xeon-2c-24g.jsonl   # one file

Each argument is a results file or a folder of them (its ``*.jsonl``, smoke-test
``*-quick.jsonl`` files left out). Of every benchmark, the rows of the newest file that has it
are shown (newest by the rows' date, then by the time they were recorded (rows from before
that field count as older), then by the file's name; of two runs in one file, the last by its
``run`` id), so a ``--only`` run replaces its benchmarks and leaves the others as they were.
Each table in the docs names the machine and the run its rows come from.

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
from pathlib import Path
from typing import Any

from _record import FIXED, SCHEMA, has_unit
from _tables import fmt, headline_tables
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
    best: dict[str, tuple[tuple[str, str, str], list[dict], str]] = {}
    for path in results_files(paths):
        by: dict[str, list[dict]] = defaultdict(list)
        for row in read(path):
            by[row["benchmark"]].append(row)
        for name, rows in by.items():
            # two runs appended to one file: the last one (rows from before run ids: all)
            last = rows[-1].get("run")
            rows = [r for r in rows if r.get("run") == last]
            key = (
                max(r["date"] for r in rows),
                max(r.get("recorded", "") for r in rows),
                path.name,
            )
            if name not in best or key >= best[name][0]:
                best[name] = (key, rows, _source(path))
    rows = [r for name in sorted(best, key=_order) for r in best[name][1]]
    sources = sorted({best[name][2] for name in best})
    return rows, sources


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
    machines = "; ".join(dict.fromkeys(r["machine"] for r in rows))
    runs = ", ".join(f"`{run}`" for run in dict.fromkeys(str(r.get("run", "-")) for r in rows))
    lines = [
        f"### {name}",
        "",
        f"{machines}; run {runs}",
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
