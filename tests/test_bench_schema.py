"""The benchmarks' one JSON-line schema (benchmarks/_record.py), the report that turns a
results file into the generated tables, and every benchmark script using them. No timing is
asserted: benchmarks are not tests."""

import json
import re
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import _record  # noqa: E402
import _tables  # noqa: E402
import report  # noqa: E402


def _line(**kw):
    args = {
        "workload": {"neurons": 100, "threads": 1},
        "figures": {"wall_s": 0.5, "speedup_x": 2.0},
    }
    args.update(kw)
    return _record.make_line("snn_test", kw.pop("system", "neurofabric"), **args)


def test_a_line_carries_the_schema_keys():
    line = _line(headline=("wall_s",), variant="numba")
    assert line["schema"] == 1 and line["benchmark"] == "snn_test"
    assert line["system"] == "neurofabric" and line["variant"] == "numba"
    assert line["figures"] == ["wall_s", "speedup_x"] and line["headline"] == ["wall_s"]
    assert line["neurons"] == 100 and line["wall_s"] == 0.5
    assert "cores" in line["machine"] and len(line["date"]) == 10


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"figures": {"wall": 1.0}}, "must end with its unit"),
        ({"figures": {"wall_s": "fast"}}, "must be a number"),
        ({"workload": {"wall_s": 1}}, "used twice or reserved"),
        ({"workload": {"machine": "x"}}, "used twice or reserved"),
        ({"headline": ("rss_mb",)}, "not among the figures"),
        ({"figures": {}}, "at least one figure"),
    ],
)
def test_lines_that_break_the_rules_are_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        _line(**kw)


def test_system_names_are_packages_and_nan_is_null():
    with pytest.raises(ValueError, match="package name"):
        _record.make_line("snn_test", "Brian2 C++", workload={}, figures={"wall_s": 1.0})
    line = _record.make_line("snn_test", "brian2", workload={}, figures={"wall_s": float("nan")})
    assert line["wall_s"] is None


def test_record_appends_to_the_results_file(tmp_path, monkeypatch, capsys):
    out = tmp_path / "results" / "r.jsonl"
    monkeypatch.setenv(_record.RESULTS_ENV, str(out))
    _record.record("snn_test", "neurofabric", workload={"n": 1}, figures={"wall_s": 1.0})
    _record.record("snn_test", "brian2", workload={"n": 1}, figures={"wall_s": 3.0})
    printed = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    stored = [json.loads(x) for x in out.read_text().splitlines()]
    assert printed == stored and [r["system"] for r in stored] == ["neurofabric", "brian2"]


def test_report_generates_the_tables_between_the_markers(tmp_path):
    same = {"threads": 1}  # the same in every row: not a column
    rows = [
        _record.make_line("snn_x", "neurofabric", workload={"n": n, **same}, figures={"wall_s": w})
        for n, w in ((100, 0.25), (1000, 2.5))
    ]
    rows.append(
        _record.make_line("snn_x", "brian2", workload={"n": 1000, **same}, figures={"wall_s": 5.0})
    )
    results = tmp_path / "r.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in rows))
    loaded = report.read(results)
    table = report.benchmark_table("snn_x", loaded)
    assert "| system | variant | n | wall_s |" in table
    assert "| brian2 | - | 1,000 | 5 |" in table and "| neurofabric | - | 100 | 0.25 |" in table
    docs = tmp_path / "docs.md"
    docs.write_text(f"# head\n{report.START}\nold\n{report.END}\ntail\n")
    report.replace_block(docs, report.docs_summary(loaded, "r.jsonl"))
    text = docs.read_text()
    assert "old" not in text and "### snn_x" in text and text.endswith("tail\n")
    assert "| `snn_x` | neurofabric, brian2 | wall_s 0.25 | 3 |" in report.readme_summary(
        loaded, "r.jsonl"
    )


def test_report_refuses_lines_of_another_shape(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"system": "neurofabric", "wall": 1}) + "\n")
    with pytest.raises(SystemExit, match="bad.jsonl:1"):
        report.read(bad)


def test_every_benchmark_records_its_rows_in_the_schema():
    scripts = [
        p
        for p in BENCH.glob("*.py")
        if not p.name.startswith("_") and p.name not in ("run_all.py", "report.py")
    ]
    assert len(scripts) >= 25
    uses = re.compile(r"^from _record import [^\n]*\brecord\b", re.M)
    # a script may run another's main (field_sdf.py is field_fit.py on another signal)
    runs = re.compile(r"^from (\w+) import main\b", re.M)

    def records(path):
        text = path.read_text()
        other = runs.search(text)
        if other and (BENCH / f"{other.group(1)}.py").is_file():
            text = (BENCH / f"{other.group(1)}.py").read_text()
        return uses.search(text)

    missing = [p.name for p in scripts if not records(p)]
    assert not missing, f"benchmarks printing their own JSON shape: {missing}"


def test_run_all_knows_every_headline_script():
    import run_all

    for name in run_all.HEADLINE:
        assert (BENCH / f"{name}.py").is_file(), name
    readme = (BENCH.parent / "README.md").read_text()
    quoted = {w.split("/")[1][:-3] for w in readme.split() if w.startswith("benchmarks/")}
    quoted = {q for q in quoted if (BENCH / f"{q}.py").is_file()} - {"run_all", "report"}
    assert quoted <= set(run_all.HEADLINE), quoted - set(run_all.HEADLINE)


def _write(path, rows, date):
    path.write_text("".join(json.dumps({**r, "date": date}) + "\n" for r in rows))
    return path


def test_report_takes_the_newest_run_of_each_benchmark(tmp_path):
    def line(bench, wall):
        return _record.make_line(bench, "neurofabric", workload={"n": 1}, figures={"wall_s": wall})

    _write(
        tmp_path / "2026-01-01-m.jsonl",
        [line("snn_cuba", 1.0), line("field_fit", 7.0)],
        "2026-01-01",
    )
    _write(tmp_path / "2026-02-01-m.jsonl", [line("snn_cuba", 2.0)], "2026-02-01")
    _write(tmp_path / "2026-03-01-m-quick.jsonl", [line("snn_cuba", 9.0)], "2026-03-01")
    rows, sources = report.newest([tmp_path])
    walls = {r["benchmark"]: r["wall_s"] for r in rows}
    # the February run replaces January's snn_cuba; field_fit stays; smoke-test files never count
    assert walls == {"snn_cuba": 2.0, "field_fit": 7.0}
    assert [r["benchmark"] for r in rows] == ["snn_cuba", "field_fit"]  # run_all's order
    assert sources == ["2026-01-01-m.jsonl", "2026-02-01-m.jsonl"]
    with pytest.raises(SystemExit, match="no such results file"):
        report.newest([tmp_path / "missing.jsonl"])


def test_of_two_runs_appended_to_one_file_the_report_keeps_the_last(tmp_path, monkeypatch):
    rows = []
    for run, walls in (("r1", (1.0, 2.0)), ("r2", (3.0,))):
        monkeypatch.setenv(_record.RUN_ENV, run)
        for w in walls:
            rows.append(
                _record.make_line("field_fit", "neurofabric", workload={}, figures={"wall_s": w})
            )
    assert [r["run"] for r in rows] == ["r1", "r1", "r2"]
    _write(tmp_path / "2026-01-01-m.jsonl", rows, "2026-01-01")
    got, _ = report.newest([tmp_path])
    assert [r["wall_s"] for r in got] == [3.0]


def _cuba(system, variant, neurons, **figures):
    line = _record.make_line(
        "snn_cuba",
        system,
        variant=variant,
        workload={"neurons": neurons, "threads": 1, "version": "9.9"},
        figures=figures,
    )
    return {**line, "version": None if system == "neurofabric" else "9.9"}


def test_the_cuba_headline_table_puts_each_figure_in_its_place():
    rows = [
        _cuba(
            "neurofabric",
            "csr/float64",
            4000,
            s_per_bio_s=0.04,
            per_synapse_bytes=28.0,
            array_per_synapse_bytes=8.25,
        ),
        _cuba(
            "neurofabric",
            "procedural/float64",
            4000,
            s_per_bio_s=0.08,
            per_synapse_bytes=5.4,
            array_per_synapse_bytes=0.3,
        ),
        _cuba("neurofabric", "first-run-cold-jit", 4000, process_wall_s=9.5),
        _cuba("neurofabric", "first-run-cached-jit", 4000, process_wall_s=1.5),
        _cuba(
            "brian2",
            "cpp_standalone",
            4000,
            s_per_bio_s=0.07,
            per_synapse_bytes=30.0,
            process_wall_s=8.0,
            time_vs_neurofabric_x=1.75,
        ),
        _cuba(
            "nest-simulator",
            None,
            4000,
            s_per_bio_s=1.3,
            per_synapse_bytes=48.0,
            process_wall_s=2.0,
            time_vs_neurofabric_x=32.5,
        ),
    ]
    table = _tables.cuba_table({"snn_cuba": rows})
    assert "| 1 thread each | neurofabric | Brian2 9.9 C++ standalone | NEST 9.9 |" in table
    assert (
        "| 4,000 neurons, wall s per biological s | 0.04 (procedural 0.08) | 0.07 (1.75x ours) "
        "| 1.3 (32.5x ours) |" in table
    )
    assert "| 28.0 (procedural 5.4) | 30.0 | 48.0 |" in table
    assert "| our synapse arrays alone, bytes per synapse | 8.25 (procedural 0.3) |  |  |" in table
    assert "| 1.5 (empty kernel cache 9.5) | 8 | 2 |" in table
    assert "Cython" not in table  # a peer that did not run gets no column
    assert "Not in the results yet" in _tables.cuba_table({})


def test_the_readme_and_docs_tables_are_generated_from_the_results_in_the_repository(tmp_path):
    """What the README and docs/benchmarks.md show between the markers is what report.py makes
    from benchmarks/results now: a typed edit, or a results file added without rerunning the
    report, fails here."""
    rows, sources = report.newest([BENCH / "results"])
    source = ", ".join(sources)
    readme = (BENCH.parent / "README.md").read_text()
    docs = (BENCH.parent / "docs" / "benchmarks.md").read_text()

    def block(text, start, end):
        assert start in text and end in text, f"no {start} block"
        return text.split(start, 1)[1].split(end, 1)[0].strip("\n")

    assert block(docs, report.START, report.END) == report.docs_summary(rows, source)
    assert block(readme, report.START, report.END) == report.readme_summary(rows, source)
    for name, body in report.headline_tables(rows).items():
        assert block(readme, *report.table_markers(name)) == body, name


def _row(benchmark, system, variant, workload, **figures):
    return {
        **_record.make_line(benchmark, system, variant=variant, workload=workload, figures=figures)
    }


def test_the_microcircuit_table_sets_each_rate_beside_nests():
    work = {"scale": 1.0, "neurons": 77169, "synapses": 1, "presim_s": 0.1, "duration_s": 10.0}
    work["threads"] = 1
    ours = _row(
        "snn_microcircuit",
        "neurofabric",
        "numba",
        work,
        build_s=100.0,
        s_per_bio_s=45.0,
        peak_rss_mb=6000.0,
        rate_l23e_hz=0.9,
        rate_l4e_hz=4.5,
        speedup_x=5.0,
        build_speedup_x=2.0,
        nest_rss_ratio_x=2.5,
    )
    nest = _row(
        "snn_microcircuit",
        "nest-simulator",
        None,
        work,
        build_s=200.0,
        s_per_bio_s=225.0,
        peak_rss_mb=15000.0,
        rate_l23e_hz=1.0,
        rate_l4e_hz=4.0,
    )
    table = _tables.microcircuit_table({"snn_microcircuit": [ours, nest]})
    assert "| L2/3E | 0.9 | 1 | -10.0 % |" in table
    assert "| L4E | 4.5 | 4 | +12.5 % |" in table
    assert "| wall s per biological s | 45.0 (NEST's / ours 5x) | 225.0 |" in table
    assert "| peak memory, MB | 6,000 (NEST's / ours 2.5x) | 15,000 |" in table
    assert "Not in the results yet" in _tables.microcircuit_table({})


def test_the_sequence_table_matches_each_model_with_its_own_peer():
    def dec(system, variant, model, vocab, **fig):
        work = {"model": model, "vocab": vocab, "layers": 4, "width": 384, "threads": 1}
        row = _row("seq_decode", system, variant, work, **fig)
        return {**row, "version": "1.0"} if system != "neurofabric" else row

    rows = [
        dec("neurofabric", "numba", "rwkv4", 256, tokens_per_s=800.0, speedup_x=2.0),
        dec("neurofabric", "torch", "rwkv4", 256, tokens_per_s=400.0),
        dec("rwkv", "cpu-fp32", "rwkv4", 256, tokens_per_s=400.0),
        dec("rwkv", "cpu-fp32", "rwkv4", 50277, tokens_per_s=90.0),
        dec("neurofabric", "numba", "rwkv4", 50277, tokens_per_s=120.0, speedup_x=1.33),
    ]

    def train(arch, steps, loss):
        work = {"arch": arch, "layers": 4, "width": 256, "minutes": 5.0, "threads": 2}
        return _row(
            "seq_train",
            "neurofabric",
            arch,
            work,
            trained_steps=steps,
            wall_s=300.0,
            best_val_loss_nats=loss,
        )

    table = _tables.seq_table(
        {"seq_decode": rows, "seq_train": [train("rwkv", 1000, 1.5), train("gpt", 1250, 1.7)]}
    )
    assert "| RWKV-4, 4x384 | 256 | 800.0 | 400.0 | rwkv 1.0: 400.0 | 2x |" in table
    assert "| RWKV-4, 4x384 | 50,277 | 120.0 | - | rwkv 1.0: 90.0 | 1.33x |" in table
    assert "| RWKV-4, 4x256 | - | 200.0 | 0.8x | 1.5 |" in table
    assert "| GPT, 4x256 | - | 250.0 | 1x | 1.7 |" in table


def test_report_takes_the_run_recorded_last_whatever_the_file_names(tmp_path):
    """Two machines on one day: the rows recorded later are shown, though their file's name
    sorts first; rows from before ``recorded`` count as older, and each table names its
    machine and run."""
    line = _record.make_line("snn_x", "neurofabric", workload={}, figures={"wall_s": 1.0})
    early = {**line, "machine": "box-a", "run": "early", "recorded": "2026-01-02T08:00:00Z"}
    late = {**line, "machine": "box-b", "run": "late", "wall_s": 2.0}
    late["recorded"] = "2026-01-02T09:00:00Z"
    legacy = {k: v for k, v in {**line, "run": "legacy", "wall_s": 3.0}.items() if k != "recorded"}
    for rows in ([("b.jsonl", early), ("a.jsonl", late)], [("a.jsonl", late), ("b.jsonl", legacy)]):
        folder = tmp_path / str(len(list(tmp_path.iterdir())))
        folder.mkdir()
        for name, row in rows:
            (folder / name).write_text(json.dumps({**row, "date": "2026-01-02"}) + "\n")
        shown, _ = report.newest([folder])
        assert [r["run"] for r in shown] == ["late"]
        assert "box-b; run `late`" in report.benchmark_table("snn_x", shown)
