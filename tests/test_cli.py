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


def test_snn_microcircuit_reports_every_population(tmp_path):
    from neurofabric.snn.microcircuit import POPULATIONS, microcircuit_spec

    raster = tmp_path / "raster.png"
    args = ["snn", "microcircuit", "--scale", "0.01", "--k-scale", "0.01", "--duration", "0.2"]
    args += ["--presim", "0.05", "--seed", "2", "--plot", str(raster), "--json"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output)
    assert list(summary["populations"]) == list(POPULATIONS)
    assert summary["neurons"] == microcircuit_spec(0.01, 0.01).n_neurons.sum()
    assert raster.stat().st_size > 5000
    assert summary["populations"]["L4E"]["rate_hz"] > 0
    res = runner.invoke(app, ["snn", "microcircuit", "--scale", "2"])
    assert res.exit_code == 2 and "scale" in res.output


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
    assert (tmp_path / "thermo_history.png").is_file()
    assert (tmp_path / "thermo_digits" / "edges.arrow").is_file()
    assert "Metropolis-Hastings" in res.output
    assert (tmp_path / "guard_confusion.png").is_file() and (tmp_path / "rhythm.png").is_file()
    assert "expert router (105" in res.output
    assert "demand-paged field" in res.output and (tmp_path / "field" / "manifest.json").is_file()
    assert (tmp_path / "field_image.png").stat().st_size > 10_000 and "PSNR" in res.output
    assert "Sequence models" in res.output and (tmp_path / "seq_rwkv" / "loss.png").is_file()


def test_thermo_train_and_eval_on_digits(tmp_path):
    from neurofabric.thermo import ThermoClassifier

    out = tmp_path / "m"
    res = runner.invoke(
        app,
        [
            "thermo",
            "train",
            "--out",
            str(out),
            "--hidden",
            "8",
            "--proposals",
            "30000",
            "--generation",
            "10000",
            "--plot",
            str(tmp_path / "h.png"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "test accuracy" in res.output and (tmp_path / "h.png").is_file()
    model = ThermoClassifier.load(out)
    assert model.fabric_.layer_sizes == (64, 8, 10)
    res = runner.invoke(
        app, ["thermo", "eval", str(out), "--confusion-png", str(tmp_path / "c.png")]
    )
    assert res.exit_code == 0, res.output
    assert "confusion matrix" in res.output and (tmp_path / "c.png").is_file()
    res = runner.invoke(app, ["thermo", "eval", str(tmp_path)])
    assert res.exit_code == 2 and "manifest" in res.output
    res = runner.invoke(app, ["thermo", "train", "--out", str(out), "--schedule", "cosine"])
    assert res.exit_code == 2 and "schedule" in res.output
    res = runner.invoke(app, ["thermo", "compile"])
    assert res.exit_code == 0 and "compiled" in res.output


def test_mnist_train_and_eval_on_a_fake_dataset(tmp_path):
    """Full-size IDX files (the loader checks the canonical counts), mostly blank."""
    import numpy as np

    from neurofabric.data.idx import write_idx

    folder = tmp_path / "data" / "mnist"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 60000), ("t10k", 10000)):
        images = np.zeros((n, 28, 28), np.uint8)
        labels = (np.arange(n) % 2).astype(np.uint8)
        images[:40, 4:12, 4:12] = 255 * (labels[:40, None, None] == 0)  # class 0: a square
        images[:40, 16:24, 16:24] = 255 * (labels[:40, None, None] == 1)  # class 1: another
        images[:40] = np.maximum(images[:40], rng.integers(0, 30, (40, 28, 28)))
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
    model = tmp_path / "model"
    res = runner.invoke(
        app,
        [
            "snn",
            "mnist",
            "train",
            "--out",
            str(model),
            "--data-dir",
            str(tmp_path / "data"),
            "--neurons",
            "6",
            "--images",
            "30",
            "--label-images",
            "30",
        ],
    )
    assert res.exit_code == 0, res.output
    assert (model / "network" / "manifest.json").is_file()
    assert not (tmp_path / "model.checkpoint").exists()  # removed once the model is saved
    # 4-bit aware learning, resumed from a checkpoint left by an interrupted run
    common = ["snn", "mnist", "train", "--data-dir", str(tmp_path / "data"), "--neurons", "6"]
    common += ["--images", "30", "--label-images", "30", "--weight-bits", "4"]
    common += ["--checkpoint", str(tmp_path / "ck"), "--checkpoint-every", "10"]
    res = runner.invoke(app, [*common, "--out", str(tmp_path / "q1")])
    assert res.exit_code == 0, res.output
    from neurofabric.data import load_mnist
    from neurofabric.snn.diehl_cook import DiehlCookClassifier

    class Stop(Exception):
        pass

    def stop_at_21(p):
        if p.done == 21:
            raise Stop

    x, y = load_mnist("train", data_dir=tmp_path / "data")
    with pytest.raises(Stop):  # an interrupted run leaves its checkpoint at 20 images
        DiehlCookClassifier(n_neurons=6, weight_bits=4, rule="code").fit(
            x[:30], y[:30], checkpoint=tmp_path / "ck", checkpoint_every=10, callback=stop_at_21
        )
    res = runner.invoke(app, [*common, "--out", str(tmp_path / "q2"), "--resume"])
    assert res.exit_code == 0, res.output
    assert "resumed from the checkpoint after image 20" in res.output
    a = DiehlCookClassifier.load(tmp_path / "q1").input_weights_
    b = DiehlCookClassifier.load(tmp_path / "q2").input_weights_
    np.testing.assert_array_equal(a, b)
    res = runner.invoke(
        app,
        [
            "snn",
            "mnist",
            "eval",
            str(model),
            "--data-dir",
            str(tmp_path / "data"),
            "--images",
            "20",
            "--plots",
            str(tmp_path / "plots"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "accuracy 1.0000" in res.output and "confusion" in res.output  # two easy classes
    assert (tmp_path / "plots" / "receptive_fields.png").stat().st_size > 1000
    res = runner.invoke(
        app,
        [
            "snn",
            "mnist",
            "eval",
            str(model),
            "--data-dir",
            str(tmp_path / "data"),
            "--images",
            "20",
            "--quantize",
            "2",
            "--stp",
            "0.5,0.2,0,1",
            "--label-images",
            "30",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "INT2 weights" in res.output and "STP U=0.5" in res.output and "accuracy" in res.output
    res = runner.invoke(
        app,
        [
            "snn",
            "mnist",
            "eval",
            str(model),
            "--data-dir",
            str(tmp_path / "data"),
            "--stp",
            "0.5,0.2",
        ],
    )
    assert res.exit_code == 2 and "four numbers" in res.output
    res = runner.invoke(app, ["snn", "mnist", "eval", str(tmp_path / "nothing")])
    assert res.exit_code == 2 and "manifest" in res.output


def _text_csv(path, n=300, seed=0):
    import csv

    import numpy as np

    rng = np.random.default_rng(seed)
    topics = {"space": "rocket orbit nasa launch moon", "cars": "engine wheel road brake gear"}
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label"])
        for k in range(n):
            label = list(topics)[k % 2]
            words = topics[label].split() + ["the", "a", "is"]
            w.writerow([" ".join(rng.choice(words, size=6)), label])
    return path


def test_guard_train_eval_predict_on_a_csv(tmp_path):
    data = _text_csv(tmp_path / "d.csv")
    res = runner.invoke(
        app,
        [
            "guard",
            "train",
            "--csv",
            str(data),
            "--out",
            str(tmp_path / "m"),
            "--n-features",
            "4096",
            "--int8",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "model on disk" in res.output
    res = runner.invoke(
        app,
        [
            "guard",
            "eval",
            "--model",
            str(tmp_path / "m"),
            "--csv",
            str(data),
            "--plot",
            str(tmp_path / "cm.png"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "accuracy" in res.output and (tmp_path / "cm.png").stat().st_size > 1000
    res = runner.invoke(
        app, ["guard", "predict", "--model", str(tmp_path / "m"), "nasa rocket launch"]
    )
    assert res.exit_code == 0 and "space" in res.output
    res = runner.invoke(app, ["guard", "train", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "exactly one of" in res.output


def test_guard_demos_run():
    res = runner.invoke(app, ["guard", "rhythm", "--repeats", "20"])
    assert res.exit_code == 0 and "100%" in res.output
    res = runner.invoke(app, ["guard", "router", "--n-train", "300", "--n-test", "100"])
    assert res.exit_code == 0 and "105" in res.output


def test_field_create_learn_query_stats(tmp_path):
    path = str(tmp_path / "f")
    res = runner.invoke(
        app,
        [
            "field",
            "create",
            path,
            "--dims",
            "2",
            "--levels",
            "6",
            "--log2-table",
            "12",
            "--base-resolution",
            "4",
            "--hidden",
            "16",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "1,125,899,906,842,624 bytes" in res.output
    res = runner.invoke(app, ["field", "learn", path, "--steps", "30", "--batch", "64"])
    assert res.exit_code == 0, res.output
    decayed = ["field", "learn", path, "--steps", "4", "--batch", "8", "--lr-decay", "2,1,0.5"]
    res = runner.invoke(app, [*decayed, "--json"])
    assert res.exit_code == 0 and json.loads(res.output)["lr_decay"] == "2,1,0.5", res.output
    res = runner.invoke(app, [*decayed[:-1], "2,0.5"])
    assert res.exit_code == 2 and "START,INTERVAL,BASE" in res.output, res.output
    res = runner.invoke(app, ["field", "query", path, "0.25,0.5", "0.9,0.1"])
    assert res.exit_code == 0 and "0.25,0.5" in res.output
    res = runner.invoke(app, ["field", "query", path, "0.25,0.5,0.1"])
    assert res.exit_code == 2 and "2 dimensions" in res.output
    res = runner.invoke(app, ["field", "stats", path, "--queries", "50"])
    assert res.exit_code == 0 and "row reads from dram" in res.output
    res = runner.invoke(app, ["field", "bench", "--workload", "sequential", "--accesses", "2000"])
    assert res.exit_code == 0 and "stride" in res.output


def test_seq_tokenizer_train_generate(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("to be or not to be, that is the question\n" * 80)
    res = runner.invoke(
        app,
        [
            "seq",
            "tokenizer",
            "train",
            "--data",
            str(text),
            "--out",
            str(tmp_path / "tok.json"),
            "--kind",
            "bpe",
            "--vocab-size",
            "300",
        ],
    )
    assert res.exit_code == 0, res.output
    res = runner.invoke(
        app,
        [
            "seq",
            "train",
            "--data",
            str(text),
            "--out",
            str(tmp_path / "run"),
            "--arch",
            "mamba",
            "--layers",
            "1",
            "--dim",
            "16",
            "--steps",
            "20",
            "--batch-size",
            "4",
            "--seq-len",
            "16",
            "--eval-every",
            "10",
        ],
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "run" / "best" / "model.safetensors").is_file()
    assert (tmp_path / "run" / "loss.png").is_file() and (
        tmp_path / "run" / "metrics.csv"
    ).is_file()
    res = runner.invoke(
        app,
        [
            "seq",
            "generate",
            "--checkpoint",
            str(tmp_path / "run"),
            "--prompt",
            "to be",
            "--max-tokens",
            "10",
        ],
    )
    assert res.exit_code == 0 and res.output.startswith("to be"), res.output
    res = runner.invoke(
        app, ["seq", "generate", "--checkpoint", str(tmp_path / "run"), "--prompt", "ZZ"]
    )
    assert res.exit_code == 2 and "not in the vocabulary" in res.output
    res = runner.invoke(
        app, ["seq", "train", "--data", str(tmp_path / "none.txt"), "--out", str(tmp_path / "x")]
    )
    assert res.exit_code == 2 and "none.txt" in res.output
    res = runner.invoke(
        app,
        [
            "seq",
            "memory",
            "--checkpoint",
            str(tmp_path / "run" / "best"),
            "--measure",
            "--batch-size",
            "2",
            "--seq-len",
            "8",
        ],
    )
    assert res.exit_code == 0 and "activations" in res.output and "measured" in res.output
    res = runner.invoke(app, ["seq", "memory", "--arch", "gru"])
    assert res.exit_code == 2 and "--arch" in res.output


def test_seq_train_resumes_only_with_resume(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("to be or not to be, that is the question\n" * 40)
    args = [
        "seq",
        "train",
        "--data",
        str(text),
        "--out",
        str(tmp_path / "run"),
        "--layers",
        "1",
        "--dim",
        "8",
        "--batch-size",
        "2",
        "--seq-len",
        "8",
        "--eval-every",
        "2",
    ]
    res = runner.invoke(app, [*args, "--resume", "--steps", "2"])
    assert res.exit_code == 2 and "nothing to resume" in " ".join(res.output.split())
    res = runner.invoke(app, [*args, "--steps", "2"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, [*args, "--steps", "2"])  # again without --resume: refused
    assert res.exit_code == 2 and "already holds a training checkpoint" in " ".join(
        res.output.split()
    )
    res = runner.invoke(app, [*args, "--steps", "2", "--resume"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, [*args, "--steps", "4", "--resume"])  # another schedule
    assert res.exit_code == 2 and "`max_steps`" in " ".join(res.output.split())


def test_seq_train_backend_chooses_each_models_training_kernel(tmp_path):
    from neurofabric.seq.io import read_meta

    text = tmp_path / "t.txt"
    text.write_text("to be or not to be, that is the question\n" * 40)
    args = ["seq", "train", "--data", str(text), "--layers", "1", "--dim", "8"]
    args += ["--batch-size", "2", "--seq-len", "8", "--eval-every", "2", "--steps", "2"]
    for arch, field in (("rwkv", "wkv"), ("rwkv7", "wkv"), ("mamba2", "scan")):
        out = tmp_path / arch
        res = runner.invoke(app, [*args, "--arch", arch, "--backend", "chunked", "--out", str(out)])
        assert res.exit_code == 0, res.output
        assert read_meta(out / "best")["config"][field] == "chunked"
    res = runner.invoke(
        app, [*args, "--arch", "gpt", "--backend", "numba", "--out", str(tmp_path / "gpt")]
    )
    assert res.exit_code == 2 and "the GPT has none" in " ".join(res.output.split())


def test_seq_memory_matches_the_library():
    from neurofabric.seq import RWKVConfig
    from neurofabric.seq.memory import estimate_memory

    res = runner.invoke(
        app,
        [
            "seq",
            "memory",
            "--arch",
            "rwkv",
            "--dim",
            "64",
            "--layers",
            "2",
            "--vocab",
            "100",
            "--batch-size",
            "4",
            "--seq-len",
            "32",
        ],
    )
    assert res.exit_code == 0, res.output
    est = estimate_memory(
        RWKVConfig(vocab_size=100, n_layer=2, n_embd=64), batch_size=4, seq_len=32
    )
    assert f"{est.activations / 2**20:,.3f}" in res.output


def test_demo_sequence_part_can_run_twice_into_one_folder(tmp_path):
    """`make demo` reruns into demo-output: the strict seq resume must not stop it."""
    from neurofabric.cli.demo import _demo_seq

    for _ in range(2):
        _demo_seq(tmp_path)
    assert (tmp_path / "seq_rwkv" / "loss.png").is_file()


def test_seq_quantize_eval_and_generate(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("to be or not to be, that is the question\n" * 80)
    res = runner.invoke(
        app,
        ["seq", "train", "--data", str(text), "--out", str(tmp_path / "run"), "--dim", "32"]
        + ["--layers", "1", "--steps", "30", "--batch-size", "4", "--seq-len", "16"]
        + ["--eval-every", "30"],
    )
    assert res.exit_code == 0, res.output
    res = runner.invoke(
        app,
        ["seq", "quantize", str(tmp_path / "run"), str(tmp_path / "w4"), "--group", "32"]
        + ["--data", str(text), "--calib-seqs", "8", "--seq-len", "16", "--json"],
    )
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output)
    assert summary["bits_per_weight"] == pytest.approx(4 + 16 / 32 + 4 / 32)
    assert summary["file_bytes"] < summary["float32_bytes"] / 2
    assert (tmp_path / "w4" / "tokenizer.json").is_file()
    losses = {}
    for name in ("run", "w4"):
        res = runner.invoke(
            app,
            ["seq", "eval", str(tmp_path / name), "--data", str(text), "--json"]
            + ["--n-seqs", "8", "--seq-len", "16"],
        )
        assert res.exit_code == 0, res.output
        losses[name] = json.loads(res.output)["loss"]
    assert abs(losses["w4"] - losses["run"]) < 0.05 * losses["run"]
    res = runner.invoke(
        app,
        ["seq", "generate", "--checkpoint", str(tmp_path / "w4"), "--prompt", "to be"]
        + ["--max-tokens", "10"],
    )
    assert res.exit_code == 0 and res.output.startswith("to be"), res.output
    res = runner.invoke(app, ["seq", "quantize", str(tmp_path / "run"), str(tmp_path / "x")])
    assert res.exit_code == 2 and "--data" in res.output
    res = runner.invoke(
        app,
        ["seq", "quantize", str(tmp_path / "run"), str(tmp_path / "x"), "--method", "rtn"]
        + ["--bits", "9"],
    )
    assert res.exit_code == 2 and "bits" in res.output


def test_version_needs_no_command():
    from neurofabric import __version__

    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.output.strip() == f"neurofabric {__version__}"


def test_an_error_keeps_its_brackets(capsys):
    # rich would read "[studio]" in an install hint as markup and drop it
    import typer

    from neurofabric.cli.common import fail
    from neurofabric.core.errors import BackendUnavailableError

    with pytest.raises(typer.Exit):
        fail(BackendUnavailableError("pip install 'neurofabric[studio]' [red]x[/red]"))
    err = capsys.readouterr().err
    assert "pip install 'neurofabric[studio]' [red]x[/red]" in err.replace("\n", "")


def _topics_csv(path, n=200, seed=0):
    """Two topics of 60 words each plus 60 shared ones: enough inputs to prune."""
    import csv

    import numpy as np

    rng = np.random.default_rng(seed)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label"])
        for k in range(n):
            label = ("space", "cars")[k % 2]
            words = [f"{label}{rng.integers(60)}" for _ in range(5)]
            words += [f"common{rng.integers(60)}" for _ in range(5)]
            w.writerow([" ".join(words), label])
    return path


@pytest.fixture(scope="module")
def guard_model(tmp_path_factory):
    """A `guard train` model on a CSV: (model folder, the CSV)."""
    root = tmp_path_factory.mktemp("guard")
    data = _topics_csv(root / "d.csv")
    args = ["guard", "train", "--csv", str(data), "--out", str(root / "m")]
    res = runner.invoke(app, [*args, "--n-features", "4096", "--epochs", "3"])
    assert res.exit_code == 0, res.output
    return root / "m", data


def _compress(model, out, *args):
    res = runner.invoke(app, ["guard", "compress", str(model), str(out), *args, "--json"])
    assert res.exit_code == 0, res.output
    lines = [line for line in res.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, res.stdout
    return json.loads(lines[0])


@pytest.mark.parametrize(
    "text,n",
    [("123456", 123456), ("100KB", 100_000), ("1.5MB", 1_500_000), ("64KiB", 65536)],
)
def test_sizes_read_in_decimal_and_binary_units(text, n):
    from neurofabric.cli.guard import parse_size

    assert parse_size(text) == n


@pytest.mark.parametrize("retrain", [False, True])
def test_guard_compress_meets_a_human_size_budget(guard_model, tmp_path, retrain):
    from neurofabric.guard import TextGuardClassifier, saved_bytes

    model, data = guard_model
    extra = ["--csv", str(data), "--epochs", "2"] if retrain else []
    s = _compress(model, tmp_path / "s", "--max-bytes", "5.5KB", *extra)
    small = TextGuardClassifier.load(tmp_path / "s")
    assert saved_bytes(tmp_path / "s") == s["compressed"]["bytes"] <= 5_500
    assert s["original"]["bytes"] == saved_bytes(model) > s["compressed"]["bytes"]
    assert s["ratio"] == pytest.approx(s["original"]["bytes"] / s["compressed"]["bytes"])
    # pruned: fewer inputs than the 180 words, but enough to tell the topics apart
    assert 20 < small.featurizer_.n_inputs == s["compressed"]["inputs"] < 180
    assert s["original"]["inputs"] == 4096 and s["original"]["weights"] == "float32"
    assert s["compressed"]["bits"] == 4 and small.compression_["bits"] == 4
    assert s["retrained"] is retrain and small.compression_["retrained"] is retrain
    assert s["max_bytes"] == 5_500 and "accuracy" not in s["compressed"]  # no test split
    assert list(small.predict(["space1 space2 space3", "cars4 cars5 cars6"])) == ["space", "cars"]


def test_guard_compress_keeps_max_features_at_the_bits_asked(guard_model, tmp_path):
    from neurofabric.guard import TextGuardClassifier, saved_bytes

    model, data = guard_model
    sizes = {}
    for bits in ("4", "2"):
        s = _compress(model, tmp_path / bits, "--max-features", "50", "--bits", bits)
        small = TextGuardClassifier.load(tmp_path / bits)
        assert small.featurizer_.n_inputs == s["compressed"]["inputs"] == 50
        assert small.compression_["bits"] == s["compressed"]["bits"] == int(bits)
        assert s["compressed"]["weights"] == f"int{bits}"
        sizes[bits] = saved_bytes(tmp_path / bits)
    assert sizes["2"] < sizes["4"]  # 2-bit codes really are smaller on disk


@pytest.mark.parametrize(
    "args,words",
    [
        ([], ["--max-bytes", "--max-features"]),  # neither bound
        (["--max-features", "9", "--bits", "3"], ["--bits", "4 or 2"]),
        (["--max-features", "9", "--importance", "idf"], ["--importance", "norm"]),
        (["--max-features", "9", "--epochs", "2"], ["--epochs", "--csv"]),  # nothing to retrain on
    ],
)
def test_guard_compress_refuses_bad_requests(guard_model, tmp_path, args, words):
    model, _ = guard_model
    res = runner.invoke(app, ["guard", "compress", str(model), str(tmp_path / "s"), *args])
    assert res.exit_code == 2 and all(w in res.output for w in words), res.output
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("size", ["12zz", "1.5.2MB", "-5KB", "0"])
def test_guard_compress_refuses_a_malformed_size(guard_model, tmp_path, size):
    model, _ = guard_model
    res = runner.invoke(
        app, ["guard", "compress", str(model), str(tmp_path / "s"), "--max-bytes", size]
    )
    assert res.exit_code == 2
    assert "--max-bytes" in res.output and repr(size) in res.output and "100KB" in res.output
    assert not (tmp_path / "s").exists()


def test_guard_compress_scores_both_models_on_a_dataset_test_split(tmp_path, monkeypatch):
    import io
    import tarfile

    import numpy as np

    import neurofabric.data.text as text

    rng = np.random.default_rng(0)
    folder = tmp_path / "20newsgroups"
    folder.mkdir()
    with tarfile.open(folder / "20news-bydate.tar.gz", "w:gz") as tar:
        for split, n in (("train", 200), ("test", 60)):
            for i in range(n):
                group = ("rec.autos", "sci.space")[i % 2]
                words = [f"{group[4:]}{rng.integers(60)}" for _ in range(5)]
                words += [f"common{rng.integers(60)}" for _ in range(5)]
                doc = ("From: x\n\n" + " ".join(words)).encode("latin-1")
                info = tarfile.TarInfo(f"20news-bydate-{split}/{group}/{1000 + i}")
                info.size = len(doc)
                tar.addfile(info, io.BytesIO(doc))
    monkeypatch.setattr(text, "NEWSGROUPS_COUNTS", {"train": 200, "test": 60})
    data = ["--dataset", "20newsgroups", "--data-dir", str(tmp_path)]
    res = runner.invoke(app, ["guard", "train", "--out", str(tmp_path / "m"), *data])
    assert res.exit_code == 0, res.output
    args = ["guard", "compress", str(tmp_path / "m"), str(tmp_path / "s"), *data]
    res = runner.invoke(app, [*args, "--max-features", "40", "--bits", "2"])
    assert res.exit_code == 0, res.output
    for words in ("model on disk", "inputs kept", "int2", "test accuracy (60 docs)", "1/"):
        assert words in res.output
    s = _compress(tmp_path / "m", tmp_path / "s2", *data, "--max-features", "40")
    assert s["retrained"] and s["train_docs"] == 200 and s["test_docs"] == 60
    assert s["original"]["accuracy"] > 0.9 and s["compressed"]["accuracy"] > 0.9


def test_seq_memory_estimates_rwkv7_and_mamba2_and_refuses_the_gpt(tmp_path):
    from neurofabric.seq.io import build_lm, save_model
    from neurofabric.seq.memory import estimate_memory, measure_memory

    for arch in ("rwkv7", "mamba2", "gpt"):
        model = build_lm(arch, 20, layers=1, width=16, seq_len=8)
        save_model(model, tmp_path / arch)
        args = ["seq", "memory", "--checkpoint", str(tmp_path / arch), "--batch-size", "2"]
        args += ["--seq-len", "8", "--json"]
        res = runner.invoke(app, args)
        if arch == "gpt":
            assert res.exit_code == 2 and "KV cache" in " ".join(res.output.split())
            continue
        assert res.exit_code == 0, res.output
        got = json.loads(res.output)
        assert "measured_bytes" not in got
        assert got["estimate_bytes"]["activations"] == (
            estimate_memory(model.config, batch_size=2, seq_len=8).activations
        )
        res = runner.invoke(app, [*args, "--measure"])
        assert res.exit_code == 0, res.output
        got = json.loads(res.output)
        want = measure_memory(model, batch_size=2, seq_len=8)
        assert got["measured_bytes"]["activations"] == want.activations > 0
        assert got["estimate_bytes"]["activations"] == want.activations  # exact, B >= 2
        assert got["measured_bytes"]["parameters"] == 4 * sum(p.numel() for p in model.parameters())
    # RWKV-7's chunked WKV has no count: without --measure the error says to measure
    chunked = build_lm("rwkv7", 20, layers=1, width=16, seq_len=8)
    chunked.set_wkv("chunked")
    save_model(chunked, tmp_path / "chunked")
    args = ["seq", "memory", "--checkpoint", str(tmp_path / "chunked"), "--seq-len", "8"]
    res = runner.invoke(app, args)
    assert res.exit_code == 2 and "--measure" in " ".join(res.output.split())
    res = runner.invoke(app, [*args, "--batch-size", "2", "--measure", "--json"])
    assert res.exit_code == 0 and "estimate_bytes" not in json.loads(res.output)
    res = runner.invoke(app, ["seq", "memory", "--arch", "mamba2", "--dim", "64", "--json"])
    assert res.exit_code == 0 and json.loads(res.output)["arch"] == "mamba2"
