"""RWKV-7: the chunked and numba WKV-7 against the sequential spec (values and gradients), step
against forward, the fused decoders against the torch model, RWKV-LM's checkpoint layout and
the config checks. Parity with the ``rwkv`` package's RWKV-7 itself runs in
benchmarks/seq_decode.py (peers venv)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from neurofabric.core.errors import BackendUnavailableError, CheckpointError, ConfigError  # noqa: E402
from neurofabric.seq.decode import RWKV7Decoder  # noqa: E402
from neurofabric.seq.io import build_lm, load_model, save_model  # noqa: E402
from neurofabric.seq.rwkv7 import (  # noqa: E402
    RWKV7,
    RWKV7Config,
    wkv7_chunked,
    wkv7_numba,
    wkv7_ref,
)
from tests.seq._kernels import grads_by_kernel  # noqa: E402


def _inputs(seed, B=2, T=23, H=3, N=5):
    """Inputs as RWKV-7 makes them: w in (0.545, 1), a = -kappa, b = kappa * rate, |kappa| = 1."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    w = torch.exp(-0.6 * torch.rand(B, T, H, N, generator=g, dtype=torch.float64))
    kappa = torch.nn.functional.normalize(r(B, T, H, N), dim=-1)
    rate = torch.rand(B, T, H, N, generator=g, dtype=torch.float64)
    return r(B, T, H, N), w, r(B, T, H, N), r(B, T, H, N), -kappa, kappa * rate, r(B, H, N, N)


@pytest.mark.parametrize("chunk", [1, 4, 16, 64])
def test_chunked_wkv7_equals_the_sequential_spec(chunk):
    ins = _inputs(chunk)
    y1, S1 = wkv7_ref(*ins)
    y2, S2 = wkv7_chunked(*ins, chunk=chunk)
    torch.testing.assert_close(y2, y1, rtol=1e-11, atol=1e-11)
    torch.testing.assert_close(S2, S1, rtol=1e-11, atol=1e-11)


def test_numba_wkv7_equals_the_spec_and_has_exact_gradients():
    ins = _inputs(5)
    y1, S1 = wkv7_ref(*ins)
    y2, S2 = wkv7_numba(*ins)
    torch.testing.assert_close(y2, y1, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(S2, S1, rtol=1e-12, atol=1e-12)
    small = [t.requires_grad_() for t in _inputs(6, B=2, T=6, H=2, N=3)]
    assert torch.autograd.gradcheck(wkv7_numba, small)
    # the chunked form's autograd gradients equal the spec's too
    grads = []
    weights = torch.randn(
        2, 6, 2, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    for fn in (wkv7_ref, lambda *a: wkv7_chunked(*a, chunk=4)):
        y, S = fn(*small)
        grads.append(torch.autograd.grad((y * weights).sum() + S.square().sum(), small))
    for name, a, b in zip("r w k v a b S0".split(), *grads, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-10, msg=name)


@pytest.mark.parametrize("every", [1, 4, 5])
def test_numba_wkv7_gradients_across_checkpoint_blocks(monkeypatch, every):
    """The backward pass recomputes the states block by block from checkpoints: ragged and
    one-step blocks give the spec's gradients."""
    import neurofabric.seq.rwkv7 as rwkv7

    monkeypatch.setattr(rwkv7, "WKV7_CHECKPOINT_EVERY", every)
    ins = [t.requires_grad_() for t in _inputs(7, B=2, T=13, H=2, N=4)]
    weights = torch.randn(
        2, 13, 2, 4, generator=torch.Generator().manual_seed(1), dtype=ins[0].dtype
    )
    grads = []
    for fn in (wkv7_ref, wkv7_numba):
        y, S = fn(*ins)
        grads.append(torch.autograd.grad((y * weights).sum() + S.square().sum(), ins))
    for name, a, b in zip("r w k v a b S0".split(), *grads, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-10, msg=name)
    small = [t.detach()[:, :6].clone().requires_grad_() for t in ins[:6]]
    assert torch.autograd.gradcheck(wkv7_numba, [*small, ins[6].detach().clone().requires_grad_()])


def _perturbed(cfg, seed=1, scale=0.2):
    """A model with every parameter moved off its initialization (whose zeros hide terms)."""
    model = RWKV7(cfg, seed=seed)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return model


@pytest.fixture(scope="module")
def model():
    return _perturbed(
        RWKV7Config(vocab_size=41, n_layer=3, n_embd=32, head_size=8, chunk=5)
    ).double()


@pytest.mark.parametrize("wkv", ["chunked", "numba"])
def test_step_equals_forward_and_state_continues(model, wkv):
    model.set_wkv(wkv)
    assert model.wkv_backend == wkv
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
    model.set_wkv("auto")


def test_numba_and_chunked_train_the_same_model():
    cfg = RWKV7Config(vocab_size=30, n_layer=2, n_embd=16, head_size=8, chunk=4)
    grads_by_kernel(lambda: _perturbed(cfg).double(), "set_wkv", ("numba", "chunked"), 30)


@pytest.mark.parametrize("backend", ["numba", "reference"])
def test_fused_decoder_matches_the_torch_model(backend):
    m = _perturbed(RWKV7Config(vocab_size=37, n_layer=3, n_embd=24, head_size=8))
    tokens = torch.randint(0, 37, (3, 9), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        logits = m(tokens).logits.numpy()
    dec = RWKV7Decoder.from_model(m, backend=backend)
    assert dec.backend == backend and (dec.n_head, dec.head_size) == (3, 8)
    state = dec.init_state(3)
    out = np.stack([dec.step_(tokens[:, t].numpy(), state) for t in range(9)], axis=1)
    np.testing.assert_allclose(out, logits, atol=5e-5, rtol=1e-4)


def test_checkpoint_layout(model):
    sd = model.to_rwkv_state_dict()
    assert sd["blocks.1.att.x_r"].shape == (1, 1, 32) and sd["blocks.0.att.r_k"].shape == (4, 8)
    assert "blocks.0.att.v1" not in sd and sd["blocks.2.ffn.x_k"].shape == (1, 1, 32)
    tokens = torch.tensor([[3, 1, 4, 1, 5, 9, 2, 6]])
    back = RWKV7.from_rwkv_state_dict(sd, chunk=5).double()
    assert back.config == model.config
    torch.testing.assert_close(back(tokens), model(tokens))
    # the rwkv package's checkpoints may carry layer 0's (unused) value-residual weights
    extra = dict(sd, **{"blocks.0.att.v0": torch.zeros(1, 1, 32)})
    torch.testing.assert_close(
        RWKV7.from_rwkv_state_dict(extra, chunk=5).double()(tokens), model(tokens)
    )
    del sd["blocks.1.att.k_a"]
    with pytest.raises(CheckpointError, match="blocks.1.att.k_a"):
        RWKV7.from_rwkv_state_dict(sd)
    with pytest.raises(CheckpointError, match="not an RWKV-7 state dict"):
        RWKV7.from_rwkv_state_dict({"emb.weight": torch.zeros(3, 4)})


def test_model_files_round_trip(tmp_path, model):
    save_model(model, tmp_path / "r7")
    back = load_model(tmp_path / "r7", arch="rwkv7").double()
    tokens = torch.tensor([[1, 2, 3]])
    torch.testing.assert_close(back(tokens), model(tokens))


def test_config_checks_name_the_parameter():
    with pytest.raises(ConfigError, match="`head_size` must divide n_embd = 48"):
        RWKV7Config(n_embd=48, head_size=64)
    with pytest.raises(ConfigError, match="`wkv` must be one of"):
        RWKV7Config(wkv="cuda")
    assert RWKV7Config(n_embd=256).d_decay == 32 and RWKV7Config(n_embd=256).d_gate == 64
    assert build_lm("rwkv7", 30, layers=1, width=48, seq_len=8).config.head_size == 16
    with pytest.raises(BackendUnavailableError, match="CPU tensors only"):
        from neurofabric.seq.rwkv7 import resolve_wkv

        resolve_wkv("numba", "meta")
