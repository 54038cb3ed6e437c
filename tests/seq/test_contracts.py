"""seq on the shared contracts: backends resolved by core.backend (a typo raises, "auto" runs
numba, Mamba's numba scan never takes tensors off the CPU), one forward shape, progress
callbacks that stop a run, parameter checks by core.validation."""

import json
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from neurofabric.core.errors import (  # noqa: E402
    BackendUnavailableError,
    ConfigError,
)
from neurofabric.core.progress import Progress  # noqa: E402
from neurofabric.core.validation import check_interval  # noqa: E402
from neurofabric.seq import RWKV4, Mamba, MambaConfig, RWKVConfig  # noqa: E402
from neurofabric.seq import mamba as mamba_mod  # noqa: E402
from neurofabric.seq.decode import (  # noqa: E402
    Mamba2Decoder,
    MambaDecoder,
    RWKV7Decoder,
    RWKVDecoder,
)
from neurofabric.seq.kernels import numba_cpu  # noqa: E402
from neurofabric.seq.mamba2 import Mamba2, Mamba2Config  # noqa: E402
from neurofabric.seq.output import LMOutput  # noqa: E402
from neurofabric.seq.rwkv7 import RWKV7, RWKV7Config  # noqa: E402
from neurofabric.seq.train import TextData, TrainConfig, Trainer  # noqa: E402

TEXT = "the cat sat on the mat. the dog sat on the log. " * 40


def _rwkv(vocab=20):
    return RWKV4(RWKVConfig(vocab_size=vocab, n_layer=1, n_embd=16, chunk=8), seed=0)


def _mamba(vocab=20, **kw):
    return Mamba(MambaConfig(vocab_size=vocab, n_layer=1, d_model=16, chunk=4, **kw), seed=0)


def _mamba2(vocab=20):
    return Mamba2(
        Mamba2Config(vocab_size=vocab, n_layer=1, d_model=16, head_dim=8, chunk=4), seed=0
    )


def _rwkv7(vocab=20):
    return RWKV7(RWKV7Config(vocab_size=vocab, n_layer=2, n_embd=16, head_size=8, chunk=4), seed=0)


# ---------------------------------------------------------------- backends
@pytest.mark.parametrize(
    "decoder, build",
    [
        (RWKVDecoder, _rwkv),
        (RWKV7Decoder, _rwkv7),
        (MambaDecoder, _mamba),
        (Mamba2Decoder, _mamba2),
    ],
)
def test_a_backend_typo_raises_naming_the_choices(decoder, build):
    with pytest.raises(ConfigError, match=r"`backend` must be one of .*'numba'.*got 'numab'"):
        decoder.from_model(build(), backend="numab")


@pytest.mark.parametrize(
    "decoder, build, kernel",
    [
        (RWKVDecoder, _rwkv, "rwkv_step"),
        (MambaDecoder, _mamba, "mamba_step"),
        (Mamba2Decoder, _mamba2, "mamba2_step"),
        (RWKV7Decoder, _rwkv7, "rwkv7_step"),
    ],
)
def test_auto_resolves_and_runs_the_numba_kernel(decoder, build, kernel, monkeypatch):
    calls = []
    real = getattr(numba_cpu, kernel)

    def counted(*args):
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(numba_cpu, kernel, counted)
    dec = decoder.from_model(build())
    assert dec.backend == "numba"
    dec.step(np.array([3]), dec.init_state(1))
    assert calls == [1]
    assert decoder.from_model(build(), backend="reference").backend == "reference"


def test_without_numba_auto_falls_back_by_name_and_an_explicit_numba_raises(monkeypatch):
    monkeypatch.setitem(sys.modules, "numba", None)  # `import numba` now fails
    assert RWKVDecoder.from_model(_rwkv()).backend == "reference"
    with pytest.raises(BackendUnavailableError, match="pip install numba"):
        RWKVDecoder.from_model(_rwkv(), backend="numba")
    assert _mamba().scan_backend == "chunked"
    with pytest.raises(BackendUnavailableError, match="pip install numba"):
        _mamba(scan="numba").scan_backend  # noqa: B018


def test_mamba_auto_scan_is_numba_on_cpu_and_runs_it(monkeypatch):
    calls = []
    real = mamba_mod.selective_scan_numba

    def counted(*args):
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(mamba_mod, "selective_scan_numba", counted)
    model = _mamba()
    assert model.config.scan == "auto" and model.scan_backend == "numba"
    model(torch.tensor([[1, 2, 3]]))
    assert calls == [1]
    chunked = _mamba(scan="chunked")
    assert chunked.scan_backend == "chunked"
    chunked(torch.tensor([[1, 2, 3]]))
    assert calls == [1]


def test_mamba_off_the_cpu_auto_runs_the_torch_scan_and_numba_raises(monkeypatch):
    """On another device (the meta device stands for a GPU here) "auto" is the chunked torch
    scan and the numba kernels are never handed the tensors; an explicit "numba" raises."""

    def never(*args):
        raise AssertionError("the numba scan was called with tensors off the CPU")

    numba_scan = mamba_mod.selective_scan_numba

    assert mamba_mod.resolve_scan("auto", "cuda") == "chunked"
    with pytest.raises(BackendUnavailableError, match="CPU tensors only.*scan='auto'"):
        mamba_mod.resolve_scan("numba", "cuda:0")
    monkeypatch.setattr(mamba_mod, "selective_scan_numba", never)
    model = _mamba().to("meta")
    assert model.scan_backend == "chunked"
    mixer = model.layers[0].mixer
    c = model.config
    x = torch.empty(2, 5, c.d_model, device="meta")
    conv, ssm = model.init_state(2)[0]
    assert conv.device.type == "meta" and ssm.device.type == "meta"
    out, conv, ssm = mixer(x, conv, ssm)
    assert out.shape == (2, 5, c.d_model) and ssm.shape == (2, c.d_inner, c.d_state)
    model.set_scan("numba")
    assert model.config.scan == "numba" and mixer.cfg.scan == "numba"
    with pytest.raises(BackendUnavailableError, match="CPU tensors only"):
        mixer(x, conv, ssm)
    u = delta = torch.empty(1, 2, 3, device="meta")
    B = C = torch.empty(1, 2, 4, device="meta")
    with pytest.raises(BackendUnavailableError, match="CPU tensors only"):
        numba_scan(u, delta, torch.empty(3, 4, device="meta"), B, C, torch.empty(3, device="meta"))
    with pytest.raises(ConfigError, match="`scan` must be one of"):
        model.set_scan("fast")
    with pytest.raises(ConfigError, match="`scan` must be one of"):
        MambaConfig(scan="cuda")


def test_the_memory_estimate_resolves_auto_to_the_scan_that_runs():
    from neurofabric.seq.memory import estimate_memory

    shape = dict(vocab_size=30, n_layer=2, d_model=16, chunk=4)
    auto = estimate_memory(MambaConfig(**shape), batch_size=2, seq_len=16)
    assert auto == estimate_memory(MambaConfig(**shape, scan="numba"), batch_size=2, seq_len=16)
    chunked = estimate_memory(MambaConfig(**shape, scan="chunked"), batch_size=2, seq_len=16)
    assert chunked.activations > auto.activations


# ---------------------------------------------------------------- one forward shape
@pytest.mark.parametrize("build", [_rwkv, _rwkv7, _mamba, _mamba2])
def test_forward_returns_logits_and_state_whatever_the_arguments(build):
    model = build()
    tokens = torch.tensor([[1, 2, 3, 4]])
    out = model(tokens)
    assert isinstance(out, LMOutput) and len(out) == 2
    logits, state = out
    assert logits.shape == (1, 4, 20) and len(state) == model.config.n_layer
    cont = model(tokens[:, 2:], state=model(tokens[:, :2]).state)
    assert isinstance(cont, LMOutput) and len(cont) == 2
    torch.testing.assert_close(cont.logits, logits[:, 2:], atol=1e-5, rtol=1e-5)
    with pytest.raises(TypeError):
        model(tokens, return_state=True)


# ---------------------------------------------------------------- progress
def _trainer(tmp_path, name, resume=False, **cfg):
    data = TextData.from_text(TEXT)
    model = RWKV4(RWKVConfig(vocab_size=data.vocab_size, n_layer=1, n_embd=16, chunk=8), seed=0)
    config = TrainConfig(
        **{
            "max_steps": 10,
            "batch_size": 2,
            "seq_len": 8,
            "eval_every": 4,
            "warmup_steps": 1,
            **cfg,
        }
    )
    return Trainer(model, data, config, out_dir=tmp_path / name, resume=resume)


def test_fit_reports_progress_every_log_interval(tmp_path):
    seen: list[Progress] = []
    res = _trainer(tmp_path, "a").fit(callback=seen.append, log_every=3)
    assert [p.done for p in seen] == [3, 6, 9, 10]  # every 3 steps and the last
    assert {(p.task, p.total, p.unit) for p in seen} == {("seq.train", 10, "step")}
    for p in seen:
        assert {"loss", "lr", "grad_norm", "tokens_per_s"} <= set(p.metrics)
        assert p["tokens_per_s"] > 0 and np.isfinite(p["loss"])
    # evaluations run at steps 4, 8 and 10: of the reported steps only 10 has one
    assert ["val_loss" in p.metrics for p in seen] == [False, False, False, True]
    assert seen[-1]["val_loss"] == res["val_loss"] and res["stopped"] is False
    with pytest.raises(ConfigError, match="`log_every` must be >= 1"):
        _trainer(tmp_path, "b").fit(log_every=0)
    with pytest.raises(ConfigError, match="`callback` must be a function"):
        _trainer(tmp_path, "c").fit(callback="print")


def test_a_callback_returning_true_stops_after_that_interval_resumably(tmp_path):
    straight = _trainer(tmp_path, "straight")
    straight.fit()
    seen = []

    def stop_at_6(p):  # not an evaluation step: the stop itself writes the checkpoint
        seen.append(p.done)
        return p.done == 6

    first = _trainer(tmp_path, "run")
    res = first.fit(callback=stop_at_6, log_every=2)
    assert seen == [2, 4, 6] and res["stopped"] is True
    assert first.step == res["step"] == 6
    manifest = json.loads((tmp_path / "run" / "checkpoint" / "manifest.json").read_text())
    assert manifest["format"] == "neurofabric-seq-checkpoint"
    resumed = _trainer(tmp_path, "run", resume=True)
    assert resumed.step == 6
    assert resumed.fit()["stopped"] is False and resumed.step == 10
    for (name, a), (_, b) in zip(
        straight.model.state_dict().items(), resumed.model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name


def test_a_mamba_run_saved_with_scan_numba_resumes_under_auto(tmp_path):
    """Before "auto" the default scan was "numba": such a checkpoint resumes with today's
    default config (the scan kernel is not part of the model's identity)."""
    data = TextData.from_text(TEXT)
    cfg = TrainConfig(max_steps=2, batch_size=2, seq_len=8, eval_every=2, warmup_steps=1)
    shape = dict(vocab_size=data.vocab_size, n_layer=1, d_model=16)
    Trainer(Mamba(MambaConfig(**shape, scan="numba")), data, cfg, out_dir=tmp_path / "r").fit()
    again = Trainer(Mamba(MambaConfig(**shape)), data, cfg, out_dir=tmp_path / "r", resume=True)
    assert again.step == 2


# ---------------------------------------------------------------- parameter checks
def test_check_interval_open_and_closed_ends():
    assert check_interval("p", 1, 0, 1, low_open=True) == 1.0
    assert check_interval("b", 0, 0, 1, high_open=True) == 0.0
    with pytest.raises(ConfigError, match=r"`p` must lie in \(0, 1\], got 0"):
        check_interval("p", 0, 0, 1, low_open=True)
    with pytest.raises(ConfigError, match=r"`b` must lie in \[0, 1\), got 1"):
        check_interval("b", 1, 0, 1, high_open=True)
    with pytest.raises(ConfigError, match="finite number"):
        check_interval("b", float("nan"), 0, 1)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"beta1": 1.0}, r"`beta1` must lie in \[0, 1\)"),
        ({"weight_decay": -0.1}, "`weight_decay` must be >= 0"),
        ({"max_time": 0}, "`max_time` must be > 0"),
        ({"lr": 0}, "`lr` must be > 0"),
        ({"patience": 0}, "`patience` must be >= 1"),
        ({"warmup_steps": -1}, "`warmup_steps` must be >= 0"),
        ({"eval_batches": 1.5}, "`eval_batches` must be an integer"),
    ],
)
def test_train_config_checks_name_the_parameter(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig(**kwargs)


def test_other_parameter_checks():
    from neurofabric.seq.generate import generate

    with pytest.raises(ConfigError, match=r"`train_frac` must lie in \(0, 1\)"):
        TextData.from_text(TEXT, train_frac=1.0)
    with pytest.raises(ConfigError, match="`eps` must be > 0"):
        MambaConfig(eps=0.0)
    with pytest.raises(ConfigError, match="`n_embd` must be >= 1"):
        RWKVConfig(n_embd=0)
    tok = TextData.from_text(TEXT).tokenizer
    model = _rwkv(tok.vocab_size)
    with pytest.raises(ConfigError, match=r"`top_p` must be > 0"):
        list(generate(model, tok, "the", top_p=0.0))
    with pytest.raises(ConfigError, match="`top_k` must be >= 1"):
        list(generate(model, tok, "the", top_k=0))
    with pytest.raises(ConfigError, match="`max_new_tokens` must be an integer"):
        list(generate(model, tok, "the", max_new_tokens=2.5))
