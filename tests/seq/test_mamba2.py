"""Mamba-2: the chunked SSD form against the sequential spec (values and gradients), step
against forward, the fused decoders against the torch model, the HF / state-spaces checkpoint
layouts and the config checks. Parity with HF transformers' ``Mamba2ForCausalLM`` itself runs
in benchmarks/seq_decode.py (peers venv)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from neurofabric.core.errors import CheckpointError, ConfigError, ShapeError  # noqa: E402
from neurofabric.seq.decode import Mamba2Decoder  # noqa: E402
from neurofabric.seq.io import build_lm, load_model, save_model  # noqa: E402
from neurofabric.seq.mamba2 import (  # noqa: E402
    SSD_CHECKPOINT_EVERY,
    Mamba2,
    Mamba2Config,
    ssd_chunked,
    ssd_numba,
    ssd_ref,
)
from tests.seq._kernels import grads_by_kernel  # noqa: E402


def _inputs(seed, b=2, L=29, H=4, P=3, G=2, N=5):
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    dt = torch.rand(b, L, H, generator=g, dtype=torch.float64) * 2
    A = -torch.rand(H, generator=g, dtype=torch.float64) * 3
    return r(b, L, H, P), dt, A, r(b, L, G, N), r(b, L, G, N), r(H), r(b, H, P, N)


@pytest.mark.parametrize("chunk", [1, 4, 16, 64])
def test_chunked_ssd_equals_the_sequential_spec(chunk):
    x, dt, A, B, C, D, h0 = _inputs(chunk)
    y1, h1 = ssd_ref(x, dt, A, B, C, D, h0)
    y2, h2 = ssd_chunked(x, dt, A, B, C, D, h0, chunk=chunk)
    torch.testing.assert_close(y2, y1, rtol=1e-11, atol=1e-11)
    torch.testing.assert_close(h2, h1, rtol=1e-11, atol=1e-11)


def test_chunked_ssd_has_the_gradients_of_the_spec():
    ins = [t.requires_grad_() for t in _inputs(7, L=11)]
    weights = torch.randn(
        2, 11, 4, 3, generator=torch.Generator().manual_seed(1), dtype=ins[0].dtype
    )
    grads = []
    for fn in (ssd_ref, lambda *a: ssd_chunked(*a, chunk=4)):
        y, h = fn(*ins)
        grads.append(torch.autograd.grad((y * weights).sum() + h.square().sum(), ins))
    for name, a, b in zip("x dt A B C D h0".split(), *grads, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-10, msg=name)


def test_numba_ssd_equals_the_spec_and_has_exact_gradients():
    """Across checkpoint blocks (29 steps, blocks of 16), groups shared by two heads, a carried
    state in and out: the spec's outputs, and gradcheck's gradients for every input."""
    assert SSD_CHECKPOINT_EVERY == 16
    x, dt, A, B, C, D, h0 = _inputs(5)
    y1, h1 = ssd_ref(x, dt, A, B, C, D, h0)
    y2, h2 = ssd_numba(x, dt, A, B, C, D, h0)
    torch.testing.assert_close(y2, y1, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(h2, h1, rtol=1e-12, atol=1e-12)
    ins = [t.requires_grad_() for t in _inputs(8, b=2, L=19, H=4, P=2, G=2, N=3)]
    assert torch.autograd.gradcheck(lambda *a: ssd_numba(*a), ins)
    # the final state's gradient alone (as when a later segment reads it)
    grads = [
        torch.autograd.grad(fn(*ins)[1].square().sum(), ins, allow_unused=True)
        for fn in (ssd_ref, ssd_numba)
    ]
    for name, a, b, t in zip("x dt A B C D h0".split(), *grads, ins, strict=True):
        a = torch.zeros_like(t) if a is None else a  # C and D do not reach the state
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-10, msg=name)


def test_both_ssds_train_the_same_model():
    cfg = Mamba2Config(
        vocab_size=41, n_layer=2, d_model=16, head_dim=8, n_groups=2, d_state=6, chunk=5
    )
    grads_by_kernel(lambda: Mamba2(cfg, seed=9).double(), "set_scan", ("numba", "chunked"), 41)


def test_ssd_choice_is_checked():
    m = Mamba2(Mamba2Config(vocab_size=20, n_layer=1, d_model=16, head_dim=8), seed=0)
    assert m.scan_backend == "numba"  # the CPU default
    m.set_scan("chunked")
    assert m.scan_backend == "chunked" and m.layers[0].mixer.cfg.scan == "chunked"
    with pytest.raises(ConfigError, match="`scan`"):
        m.set_scan("cuda")
    with pytest.raises(ConfigError, match="`scan`"):
        Mamba2Config(scan="fast")


@pytest.fixture(scope="module")
def model():
    cfg = Mamba2Config(
        vocab_size=41, n_layer=2, d_model=16, head_dim=8, n_groups=2, d_state=6, chunk=6
    )
    return Mamba2(cfg, seed=2).double()


def test_step_equals_forward_and_state_continues(model):
    tokens = torch.randint(0, 41, (2, 19), generator=torch.Generator().manual_seed(0))
    logits, _ = model(tokens)
    state = model.init_state(2, dtype=torch.float64)
    steps = []
    for t in range(19):
        out, state = model.step(tokens[:, t], state)
        steps.append(out)
    torch.testing.assert_close(torch.stack(steps, 1), logits, rtol=1e-10, atol=1e-10)
    first, st = model(tokens[:, :7])
    rest, _ = model(tokens[:, 7:], state=st)
    torch.testing.assert_close(torch.cat([first, rest], 1), logits)


@pytest.mark.parametrize("tie", [True, False])
@pytest.mark.parametrize("backend", ["numba", "reference"])
def test_fused_decoder_matches_the_torch_model(tie, backend):
    cfg = Mamba2Config(
        vocab_size=37,
        n_layer=2,
        d_model=24,
        head_dim=12,
        n_groups=2,
        d_state=5,
        tie_embeddings=tie,
    )
    m = Mamba2(cfg, seed=4)
    tokens = torch.randint(0, 37, (3, 9), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        logits = m(tokens).logits.numpy()
    dec = Mamba2Decoder.from_model(m, backend=backend)
    assert dec.backend == backend and dec.d_state == 5 and dec.n_heads == 4
    state = dec.init_state(3)
    out = np.stack([dec.step_(tokens[:, t].numpy(), state) for t in range(9)], axis=1)
    np.testing.assert_allclose(out, logits, atol=2e-5, rtol=1e-4)
    before = state[1].copy()
    dec.step(np.array([1, 2, 3]), state)  # the copying step leaves the state alone
    np.testing.assert_array_equal(state[1], before)
    with pytest.raises(ShapeError, match="state must be arrays of shapes"):
        dec.step_(np.array([1, 2]), state)
    with pytest.raises(ShapeError, match=r"\[0, 37\)"):
        dec.step_(np.array([1, 2, 37]), state)


def test_checkpoint_layouts(model):
    sd = model.to_hf_state_dict()
    assert "backbone.layers.1.mixer.dt_bias" in sd and "lm_head.weight" in sd
    tokens = torch.tensor([[3, 1, 4, 1, 5, 9, 2, 6]])
    back = Mamba2.from_hf_state_dict(sd, n_groups=2, chunk=6).double()
    assert back.config == model.config
    torch.testing.assert_close(back(tokens), model(tokens))
    # state-spaces/mamba names the embedding "backbone.embedding"; HF's config.json has n_groups
    ss = {k.replace("backbone.embeddings.", "backbone.embedding."): v for k, v in sd.items()}
    via_cfg = Mamba2.from_hf_config(model.hf_config(), ss, chunk=6).double()
    torch.testing.assert_close(via_cfg(tokens), model(tokens))
    # the wrong group count changes d_state and the head-to-group map: refused or different
    with pytest.raises(CheckpointError, match="n_groups"):
        Mamba2.from_hf_state_dict(sd, n_groups=5)
    with pytest.raises(CheckpointError, match="time_step_limit"):
        Mamba2.from_hf_config({**model.hf_config(), "time_step_limit": [0.0, 0.1]}, sd)
    with pytest.raises(CheckpointError, match="state_size=7"):
        Mamba2.from_hf_config({**model.hf_config(), "state_size": 7}, sd)
    untied = dict(sd, **{"lm_head.weight": sd["lm_head.weight"] * 2})
    assert Mamba2.from_hf_state_dict(untied, n_groups=2).lm_head is not None
    del sd["backbone.layers.0.mixer.D"]
    with pytest.raises(CheckpointError, match="mixer.D"):
        Mamba2.from_hf_state_dict(sd, n_groups=2)
    with pytest.raises(CheckpointError, match="not a Mamba-2 state dict"):
        Mamba2.from_hf_state_dict({"x": torch.zeros(1)})


def test_model_files_round_trip(tmp_path, model):
    save_model(model, tmp_path / "m2")
    back = load_model(tmp_path / "m2", arch="mamba2").double()
    tokens = torch.tensor([[1, 2, 3]])
    torch.testing.assert_close(back(tokens), model(tokens))


def test_config_checks_name_the_parameter():
    with pytest.raises(ConfigError, match="`head_dim` must divide d_inner = expand"):
        Mamba2Config(d_model=20, head_dim=16)
    with pytest.raises(ConfigError, match="`n_groups` must divide the number of heads"):
        Mamba2Config(d_model=32, head_dim=16, n_groups=3)
    with pytest.raises(ConfigError, match="`d_state` must be >= 1"):
        Mamba2Config(d_state=0)
    with pytest.raises(ShapeError, match=r"\[0, 256\)"):
        Mamba2(Mamba2Config(n_layer=1, d_model=16, head_dim=8))(torch.tensor([[256]]))
    # the CLI's builder picks a head size that divides any width
    assert build_lm("mamba2", 30, layers=1, width=20, seq_len=8).config.head_dim == 8
