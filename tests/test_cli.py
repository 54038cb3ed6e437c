"""The command line: `neurofabric snn run` and `neurofabric demo`."""

import json

import pytest
from typer.testing import CliRunner

from neurofabric.cli import app

runner = CliRunner()


def test_snn_run_prints_summary_and_writes_outputs(tmp_path):
    plot, spikes = tmp_path / "raster.png", tmp_path / "spikes.parquet"
    res = runner.invoke(
        app,
        [
            "snn",
            "run",
            "cuba",
            "--neurons",
            "500",
            "--duration",
            "0.1",
            "--plot",
            str(plot),
            "--export",
            str(spikes),
            "--save",
            str(tmp_path / "ck"),
        ],
    )
    assert res.exit_code == 0, res.output
    for word in ("neurons", "synapses", "spikes", "mean rate", "wall time"):
        assert word in res.output
    assert plot.stat().st_size > 1000 and spikes.stat().st_size > 0
    assert (tmp_path / "ck" / "manifest.json").is_file()


def test_snn_run_json_matches_the_library():
    from neurofabric.snn.models import cuba

    res = runner.invoke(
        app,
        ["snn", "run", "cuba", "--neurons", "400", "--duration", "0.05", "--seed", "3", "--json"],
    )
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output)
    direct = cuba(400, seed=3).run(0.05)
    assert summary["spikes"] == direct.n_spikes
    assert summary["synapses"] == direct.n_synapses


@pytest.mark.parametrize(
    "args,message",
    [
        (["snn", "run", "hodgkin"], "unknown model"),
        (["snn", "run", "cuba", "--duration", "-1"], "duration"),
        (["snn", "run", "cuba", "--storage", "tape"], "storage"),
    ],
)
def test_bad_input_gives_clear_error(args, message):
    res = runner.invoke(app, args)
    assert res.exit_code == 2
    assert message in res.output


def test_demo_writes_figures(tmp_path):
    res = runner.invoke(app, ["demo", "--out", str(tmp_path), "--duration", "0.05"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "cuba_raster.png").is_file() and (tmp_path / "cuba_voltage.png").is_file()
    assert "identical spikes: True" in res.output
