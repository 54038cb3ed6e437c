"""RWKV-4: the chunked WKV and the recurrent step against the numpy spec, state, checkpoints,
and the fast numba decoder against the torch model."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from neurofabric.core.errors import CheckpointError, ConfigError, ShapeError  # noqa: E402
from neurofabric.seq import RWKV4, RWKVConfig  # noqa: E402
from neurofabric.seq.decode import RWKVDecoder  # noqa: E402
from neurofabric.seq.kernels.reference import wkv_ref  # noqa: E402
from neurofabric.seq.kernels.torch_ops import wkv_chunked  # noqa: E402


@pytest.mark.parametrize("chunk", [1, 5, 16, 64])
def test_chunked_wkv_equals_the_sequential_spec(chunk):
    rng = np.random.default_rng(chunk)
    T, C = 40, 6
    decay = -np.exp(rng.normal(size=C))
    u = rng.normal(size=C)
    k = rng.normal(size=(T, C)) * 20  # large keys: the running maximum must keep it finite
    v = rng.normal(size=(T, C))
    ref, (a, b, p) = wkv_ref(decay, u, k, v)
    out, (a2, b2, p2) = wkv_chunked(
        *(torch.tensor(z) for z in (decay, u)),
        torch.tensor(k)[None],
        torch.tensor(v)[None],
        chunk=chunk,
    )
    np.testing.assert_allclose(out[0].numpy(), ref, rtol=1e-10, atol=1e-12)
    # the same sums, whatever the scale they are kept at
    np.testing.assert_allclose(a2[0].numpy() * np.exp(p2[0].numpy() - p), a, rtol=1e-9)
    np.testing.assert_allclose(b2[0].numpy() * np.exp(p2[0].numpy() - p), b, rtol=1e-9)


def test_wkv_is_differentiable():
    k = torch.randn(2, 9, 4, dtype=torch.float64, requires_grad=True)
    v = torch.randn(2, 9, 4, dtype=torch.float64, requires_grad=True)
    decay = -torch.exp(torch.randn(4, dtype=torch.float64))
    u = torch.randn(4, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda k, v: wkv_chunked(decay, u, k, v, chunk=4)[0], (k, v))


@pytest.fixture(scope="module")
def model():
    return RWKV4(RWKVConfig(vocab_size=37, n_layer=3, n_embd=24, chunk=5), seed=1).double()


def test_step_over_a_sequence_equals_forward(model):
    tokens = torch.randint(0, 37, (2, 23), generator=torch.Generator().manual_seed(0))
    logits, _ = model(tokens)
    state = model.init_state(2, dtype=torch.float64)
    steps = []
    for t in range(23):
        out, state = model.step(tokens[:, t], state)
        steps.append(out)
    torch.testing.assert_close(torch.stack(steps, dim=1), logits, rtol=1e-10, atol=1e-10)


def test_state_continues_a_sequence_and_is_not_mutated(model):
    tokens = torch.randint(0, 37, (1, 30), generator=torch.Generator().manual_seed(1))
    whole, _ = model(tokens)
    first, state = model(tokens[:, :12])
    frozen = [tuple(t.clone() for t in layer) for layer in state]
    rest, _ = model(tokens[:, 12:], state=state)
    torch.testing.assert_close(torch.cat([first, rest], dim=1), whole, rtol=1e-12, atol=1e-12)
    for before, after in zip(frozen, state, strict=True):
        for x, y in zip(before, after, strict=True):
            assert torch.equal(x, y)


def test_rwkv_checkpoint_layout_round_trip(model):
    sd = model.to_rwkv_state_dict()
    assert sd["blocks.0.att.time_mix_k"].shape == (1, 1, 24)
    assert {"emb.weight", "blocks.0.ln0.weight", "blocks.2.ffn.value.weight", "head.weight"} <= set(
        sd
    )
    back = RWKV4.from_rwkv_state_dict(sd).double()
    tokens = torch.tensor([[1, 2, 3, 4, 5]])
    torch.testing.assert_close(back(tokens), model(tokens))
    broken = dict(sd)
    del broken["blocks.1.att.time_first"]
    with pytest.raises(CheckpointError, match="time_first"):
        RWKV4.from_rwkv_state_dict(broken)


def test_fast_decoder_matches_the_torch_model():
    m = RWKV4(RWKVConfig(vocab_size=61, n_layer=2, n_embd=48), seed=3)
    fast = RWKVDecoder.from_model(m)
    slow = RWKVDecoder.from_model(m, backend="reference")
    tokens = np.array([[5, 7], [60, 0], [3, 3], [12, 40]])
    s_fast, s_slow, s_torch = fast.init_state(2), slow.init_state(2), m.init_state(2)
    with torch.no_grad():
        for t in tokens:
            a, s_fast = fast.step(t, s_fast)
            b, s_slow = slow.step(t, s_slow)
            c, s_torch = m.step(torch.tensor(t), s_torch)
            np.testing.assert_allclose(a, c.numpy(), atol=1e-4)
            np.testing.assert_allclose(a, b, atol=1e-4)


def test_bad_input_is_refused(model):
    with pytest.raises(ShapeError, match=r"\[0, 37\)"):
        model(torch.tensor([[1, 99]]))
    with pytest.raises(ConfigError, match="n_embd"):
        RWKVConfig(n_embd=0)
    dec = RWKVDecoder.from_model(RWKV4(RWKVConfig(vocab_size=10, n_layer=1, n_embd=8)))
    with pytest.raises(ShapeError, match="state must have shape"):
        dec.step(np.array([1, 2]), dec.init_state(1))
