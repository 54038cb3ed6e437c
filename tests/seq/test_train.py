"""Training: learning, exact resume after an interruption, checkpoints, sampling, bad input."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from neurofabric.core.errors import CheckpointError, ConfigError, ShapeError  # noqa: E402
from neurofabric.seq import RWKV4, Mamba, MambaConfig, RWKVConfig  # noqa: E402
from neurofabric.seq.generate import generate, sample_token  # noqa: E402
from neurofabric.seq.io import load_model, save_model  # noqa: E402
from neurofabric.seq.mamba2 import Mamba2, Mamba2Config  # noqa: E402
from neurofabric.seq.rwkv7 import RWKV7, RWKV7Config  # noqa: E402
from neurofabric.seq.train import TextData, TrainConfig, Trainer  # noqa: E402

TEXT = "the cat sat on the mat. the dog sat on the log. " * 40


def _rwkv(data):
    return RWKV4(RWKVConfig(vocab_size=data.vocab_size, n_layer=1, n_embd=16, chunk=8), seed=0)


def test_training_lowers_validation_loss_for_every_architecture(tmp_path):
    data = TextData.from_text(TEXT)
    for model in (
        _rwkv(data),
        Mamba(MambaConfig(vocab_size=data.vocab_size, n_layer=1, d_model=16), seed=0),
        Mamba2(Mamba2Config(vocab_size=data.vocab_size, n_layer=1, d_model=16, head_dim=8), seed=0),
        RWKV7(RWKV7Config(vocab_size=data.vocab_size, n_layer=1, n_embd=16, head_size=8), seed=0),
    ):
        cfg = TrainConfig(
            max_steps=40, batch_size=8, seq_len=24, eval_every=20, lr=5e-3, warmup_steps=5
        )
        res = Trainer(model, data, cfg).fit()
        assert res["val_loss"] < 0.8 * np.log(data.vocab_size)  # well below a uniform guess


def test_resume_after_interruption_is_exact(tmp_path):
    data = TextData.from_text(TEXT)
    cfg = TrainConfig(max_steps=16, batch_size=4, seq_len=16, eval_every=8, lr=3e-3, warmup_steps=2)
    straight = Trainer(_rwkv(data), data, cfg, out_dir=tmp_path / "a")
    straight.fit()

    class Stop(Exception):
        pass

    def interrupt(progress):
        if progress.done == 10:  # after the checkpoint at step 8
            raise Stop

    first = Trainer(_rwkv(data), data, cfg, out_dir=tmp_path / "b")
    with pytest.raises(Stop):
        first.fit(callback=interrupt)
    resumed = Trainer(_rwkv(data), data, cfg, out_dir=tmp_path / "b", resume=True)
    assert resumed.step == 8
    resumed.fit()
    for (name, a), (_, b) in zip(
        straight.model.state_dict().items(), resumed.model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    lines = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [8, 16]
    assert (tmp_path / "b" / "metrics.csv").is_file()
    assert resumed.plot(tmp_path / "loss.png").stat().st_size > 1000


def test_model_files_round_trip_and_refuse_mismatches(tmp_path):
    data = TextData.from_text(TEXT)
    model = _rwkv(data)
    save_model(model, tmp_path / "m")
    back = load_model(tmp_path / "m", arch="rwkv4")
    x = torch.tensor([[1, 2, 3]])
    torch.testing.assert_close(back(x), model(x))
    with pytest.raises(CheckpointError, match="not 'mamba'"):
        load_model(tmp_path / "m", arch="mamba")
    other = RWKV4(RWKVConfig(vocab_size=data.vocab_size, n_layer=2, n_embd=16), seed=0)
    Trainer(
        model,
        data,
        TrainConfig(max_steps=2, eval_every=2, batch_size=2, seq_len=8),
        out_dir=tmp_path / "run",
    ).fit()
    with pytest.raises(CheckpointError, match="model config differs.*`n_layer` .saved 1, now 2"):
        Trainer(
            other,
            data,
            TrainConfig(max_steps=2, eval_every=2, batch_size=2, seq_len=8),
            out_dir=tmp_path / "run",
            resume=True,
        )
    (tmp_path / "m" / "model.safetensors").write_bytes(b"corrupt")
    with pytest.raises(CheckpointError, match="sha256"):
        load_model(tmp_path / "m")


def test_sampling_rules():
    rng = np.random.default_rng(0)
    logits = np.array([0.0, 5.0, 1.0, -3.0])
    assert sample_token(logits, rng, temperature=0) == 1
    picks = {sample_token(logits, rng, top_k=2) for _ in range(200)}
    assert picks <= {1, 2}
    assert {sample_token(logits, rng, top_p=0.5) for _ in range(50)} == {1}
    tok = TextData.from_text(TEXT).tokenizer
    model = RWKV4(RWKVConfig(vocab_size=tok.vocab_size, n_layer=1, n_embd=8))
    with pytest.raises(ConfigError, match="top_p"):
        list(generate(model, tok, "the", top_p=0.0))
    with pytest.raises(ConfigError, match="temperature"):
        list(generate(model, tok, "the", temperature=-1))


def test_generation_backends_sample_the_same_text_and_a_typo_is_an_error():
    data = TextData.from_text(TEXT)
    model = _rwkv(data)
    texts = {
        b: "".join(generate(model, data.tokenizer, "the ", max_new_tokens=15, seed=4, backend=b))
        for b in ("auto", "numba", "reference", "torch")
    }
    assert len(set(texts.values())) == 1, texts
    with pytest.raises(ConfigError, match="backend"):
        list(generate(model, data.tokenizer, "the ", backend="numbaa"))


def test_generation_is_seeded_streams_and_stops():
    data = TextData.from_text(TEXT)
    model = _rwkv(data)
    pieces = list(generate(model, data.tokenizer, "the ", max_new_tokens=20, seed=3))
    a = "".join(pieces)
    b = "".join(generate(model, data.tokenizer, "the ", max_new_tokens=20, seed=3, backend="torch"))
    assert a == b and len(pieces) == 20  # the numba and torch paths sample the same text
    stopped = "".join(
        generate(model, data.tokenizer, "the ", max_new_tokens=200, seed=3, stop=(a[:2],))
    )
    assert stopped.endswith(a[:2]) and len(stopped) <= len(a)
    with pytest.raises(ShapeError, match="not in the vocabulary"):
        list(generate(model, data.tokenizer, "ZZZ"))


def test_bad_corpus_and_config():
    with pytest.raises(ShapeError, match="empty"):
        TextData.from_text("")
    with pytest.raises(ConfigError, match="batch_size"):
        TrainConfig(batch_size=0)
    data = TextData.from_text(TEXT)
    small = RWKV4(RWKVConfig(vocab_size=3, n_layer=1, n_embd=8))
    with pytest.raises(ConfigError, match="vocabulary"):
        Trainer(small, data)


def test_model_save_interrupted_between_its_renames_is_recovered(tmp_path):
    """A crash between the two renames of an atomic save leaves the folder missing and the
    complete new copy beside it; loading finishes the swap."""
    import os

    model = RWKV4(RWKVConfig(vocab_size=11, n_embd=8, n_layer=1), seed=0)
    save_model(model, tmp_path / "m")
    os.replace(tmp_path / "m", tmp_path / ".m.new-0123abcd")
    back = load_model(tmp_path / "m")
    for a, b in zip(model.state_dict().values(), back.state_dict().values(), strict=True):
        assert torch.equal(a, b)


# ---------------------------------------------------------------- strict, verified resume
_CFG = dict(max_steps=4, batch_size=2, seq_len=8, eval_every=2, warmup_steps=1)


def _run(tmp_path, data=None, **cfg):
    data = data or TextData.from_text(TEXT)
    Trainer(_rwkv(data), data, TrainConfig(**{**_CFG, **cfg}), out_dir=tmp_path / "run").fit()
    return data


def test_resume_without_a_checkpoint_raises_naming_the_folder(tmp_path):
    data = TextData.from_text(TEXT)
    with pytest.raises(CheckpointError, match=r"resume=True, but .*checkpoint does not exist"):
        Trainer(_rwkv(data), data, TrainConfig(**_CFG), out_dir=tmp_path / "nothing", resume=True)
    with pytest.raises(ConfigError, match="needs `out_dir`"):
        Trainer(_rwkv(data), data, TrainConfig(**_CFG), resume=True)
    with pytest.raises(ConfigError, match="`resume` must be True or False"):
        Trainer(_rwkv(data), data, TrainConfig(**_CFG), out_dir=tmp_path / "x", resume="yes")


def test_a_fresh_start_never_overwrites_a_checkpoint(tmp_path):
    data = _run(tmp_path)
    before = {p.name: p.read_bytes() for p in (tmp_path / "run" / "checkpoint").iterdir()}
    with pytest.raises(CheckpointError, match="already holds a training checkpoint.*resume=True"):
        Trainer(_rwkv(data), data, TrainConfig(**_CFG), out_dir=tmp_path / "run")
    after = {p.name: p.read_bytes() for p in (tmp_path / "run" / "checkpoint").iterdir()}
    assert before == after
    resumed = Trainer(_rwkv(data), data, TrainConfig(**_CFG), out_dir=tmp_path / "run", resume=True)
    assert resumed.step == 4


def test_checkpoint_manifest_lists_every_file_with_its_sha256(tmp_path):
    from neurofabric.core.checkpoint import sha256_file

    _run(tmp_path)
    folder = tmp_path / "run" / "checkpoint"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["format"] == "neurofabric-seq-checkpoint" and manifest["format_version"] == 1
    files = sorted(p.name for p in folder.iterdir() if p.name != "manifest.json")
    assert sorted(manifest["sha256"]) == files
    assert all(manifest["sha256"][f] == sha256_file(folder / f) for f in files)


@pytest.mark.parametrize(
    "name", ["model.safetensors", "optimizer.safetensors", "trainer.json", "config.json"]
)
def test_a_corrupted_checkpoint_file_is_refused_naming_it(tmp_path, name):
    data = _run(tmp_path)
    path = tmp_path / "run" / "checkpoint" / name
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01  # one flipped bit
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match=f"{name}: sha256 mismatch"):
        Trainer(_rwkv(data), data, TrainConfig(**_CFG), out_dir=tmp_path / "run", resume=True)
    path.unlink()
    with pytest.raises(CheckpointError, match=f"{name} is missing"):
        Trainer(_rwkv(data), data, TrainConfig(**_CFG), out_dir=tmp_path / "run", resume=True)


def test_a_checkpoint_without_manifest_is_refused(tmp_path):
    data = _run(tmp_path)
    (tmp_path / "run" / "checkpoint" / "manifest.json").unlink()
    with pytest.raises(CheckpointError, match="manifest.json is missing"):
        Trainer(_rwkv(data), data, TrainConfig(**_CFG), out_dir=tmp_path / "run", resume=True)


@pytest.mark.parametrize(
    "field, value", [("lr", 2e-3), ("seed", 1), ("batch_size", 3), ("max_steps", 6)]
)
def test_a_changed_training_config_is_refused_naming_the_field(tmp_path, field, value):
    data = _run(tmp_path)
    cfg = TrainConfig(**{**_CFG, field: value})
    with pytest.raises(CheckpointError, match=f"training config differs.*`{field}`"):
        Trainer(_rwkv(data), data, cfg, out_dir=tmp_path / "run", resume=True)


def test_max_time_may_change_on_resume(tmp_path):
    data = _run(tmp_path, max_steps=2)
    cfg = TrainConfig(**{**_CFG, "max_steps": 2, "max_time": 60.0})
    assert Trainer(_rwkv(data), data, cfg, out_dir=tmp_path / "run", resume=True).step == 2


def test_different_data_is_refused(tmp_path):
    data = _run(tmp_path)
    other = TextData.from_text(TEXT.replace("dog", "cat"), data.tokenizer)
    assert other.vocab_size == data.vocab_size and len(other.train) == len(data.train)
    with pytest.raises(CheckpointError, match="training data differs.*`train_sha256`"):
        Trainer(_rwkv(other), other, TrainConfig(**_CFG), out_dir=tmp_path / "run", resume=True)
    split = TextData.from_text(TEXT, data.tokenizer, train_frac=0.8)
    with pytest.raises(CheckpointError, match="training data differs.*`train_tokens`"):
        Trainer(_rwkv(split), split, TrainConfig(**_CFG), out_dir=tmp_path / "run", resume=True)
