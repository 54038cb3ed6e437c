"""What every command shares: --json gives one JSON line, --backend is checked, errors exit 2."""

import json

import pytest
import typer
from typer.testing import CliRunner

from neurofabric.cli import app
from neurofabric.cli.common import ProgressView, handles_errors, jsonable
from neurofabric.core.errors import ConfigError
from neurofabric.core.progress import Progress

runner = CliRunner()

#: the commands that run or train an engine: each takes --json and --backend
RUN_AND_TRAIN = [
    ("snn", "run"),
    ("snn", "microcircuit"),
    ("snn", "mnist", "train"),
    ("thermo", "train"),
    ("guard", "train"),
    ("guard", "rhythm"),
    ("guard", "router"),
    ("field", "learn"),
    ("field", "query"),
    ("field", "stats"),
    ("seq", "train"),
    ("seq", "generate"),
]


def _command(path):
    group = typer.main.get_command(app)
    for name in path:
        group = group.commands[name]
    return group


@pytest.mark.parametrize("path", RUN_AND_TRAIN, ids=" ".join)
def test_run_and_train_commands_take_json_and_backend(path):
    options = {opt for p in _command(path).params for opt in getattr(p, "opts", [])}
    assert {"--json", "--backend"} <= options


def _json(res):
    assert res.exit_code == 0, res.output
    lines = [line for line in res.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, res.stdout  # nothing else on stdout: progress and tables are off
    return json.loads(lines[0])


def test_guard_demos_json_reports_the_backend_used():
    rhythm = _json(runner.invoke(app, ["guard", "rhythm", "--backend", "reference", "--json"]))
    assert rhythm["backend"] == "reference" and 0 <= rhythm["second_pattern_last_20"] <= 1
    router = _json(runner.invoke(app, ["guard", "router", "--n-train", "200", "--json"]))
    assert router["backend"] == "numba" and router["held_out"] > router["chance"]


@pytest.mark.parametrize(
    "args",
    [
        ["guard", "router", "--backend", "numbaa"],
        ["snn", "run", "cuba", "--neurons", "100", "--duration", "0.01", "--backend", "numbaa"],
    ],
)
def test_a_backend_typo_is_an_error_naming_the_choices(args):
    res = runner.invoke(app, args)
    assert res.exit_code == 2
    assert "numbaa" in res.output and "reference" in res.output


def test_field_json_round_trip(tmp_path):
    path = str(tmp_path / "f")
    created = _json(
        runner.invoke(
            app,
            ["field", "create", path, "--dims", "2", "--levels", "4", "--log2-table", "10"]
            + ["--hidden", "8", "--json"],
        )
    )
    assert created["table_rows"] > 0 and created["disk_bytes"] < created["logical_bytes"]
    learned = _json(
        runner.invoke(app, ["field", "learn", path, "--steps", "7", "--batch", "16", "--json"])
    )
    assert learned["steps"] == 7 and learned["backend"] == "numba"
    assert learned["held_out_mse"] >= 0 and learned["last_loss"] >= 0
    queried = _json(runner.invoke(app, ["field", "query", path, "0.1,0.2", "0.5,0.5", "--json"]))
    assert len(queried["values"]) == 2 and len(queried["values"][0]) == 1


def test_field_learn_is_the_same_model_whatever_the_chunking(tmp_path):
    """The command samples its steps in chunks; the points must be the step-by-step stream."""
    import numpy as np

    from neurofabric.field import DemandPagedField

    for name in ("a", "b"):
        path = str(tmp_path / name)
        runner.invoke(
            app, ["field", "create", path, "--dims", "2", "--levels", "4", "--log2-table", "10"]
        )
    runner.invoke(app, ["field", "learn", str(tmp_path / "a"), "--steps", "5", "--batch", "8"])
    f = DemandPagedField.open(tmp_path / "b")
    rng = np.random.default_rng(0)
    for _ in range(5):
        x = rng.random((8, 2)).astype(np.float32)
        f.learn(x, np.prod(np.sin(3 * np.pi * x), axis=1, keepdims=True))
    f.close()
    a = DemandPagedField.open(tmp_path / "a", readonly=True)
    b = DemandPagedField.open(tmp_path / "b", readonly=True)
    x = rng.random((50, 2)).astype(np.float32)
    np.testing.assert_array_equal(a.query(x), b.query(x))
    a.close()
    b.close()


def test_handles_errors_turns_library_errors_into_exit_2():
    @handles_errors
    def cmd():
        raise ConfigError("`x` must be > 0, got -1")

    with pytest.raises(typer.Exit) as info:
        cmd()
    assert info.value.exit_code == 2

    @handles_errors
    def crash():
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError):  # only library errors are user errors; bugs still show
        crash()


def test_progress_view_passes_the_stop_answer_back():
    view = ProgressView("x", show=False, stop=lambda p: p.done >= 3)
    answers = [view.callback(Progress("t", k, 5, "step", 0.1 * k, {"loss": 1.0})) for k in (1, 3)]
    assert answers == [False, True]
    assert view.first.done == 1 and view.last.done == 3


def test_jsonable_handles_numpy_and_non_finite_numbers():
    import numpy as np

    out = jsonable({"a": np.float32(1.5), "b": np.arange(2), "c": float("nan"), 3: (1, 2)})
    assert json.loads(json.dumps(out)) == {"a": 1.5, "b": [0, 1], "c": None, "3": [1, 2]}
