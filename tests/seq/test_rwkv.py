"""RWKV-4: the chunked and numba WKV and the recurrent step against the numpy spec (values and
gradients), state, checkpoints, and the fast numba decoder against the torch model."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from neurofabric.core.errors import (  # noqa: E402
    BackendUnavailableError,
    CheckpointError,
    ConfigError,
    ShapeError,
)
from neurofabric.seq import RWKV4, RWKVConfig  # noqa: E402
from neurofabric.seq.decode import RWKVDecoder  # noqa: E402
from neurofabric.seq.kernels.reference import wkv_ref  # noqa: E402
from neurofabric.seq.kernels.torch_ops import (  # noqa: E402
    shift_mix_numba,
    shift_mix_torch,
    wkv_chunked,
    wkv_numba,
)
from neurofabric.seq.rwkv import resolve_wkv  # noqa: E402
from tests.seq._kernels import grads_by_kernel  # noqa: E402


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


def test_numba_wkv_equals_the_spec_and_has_exact_gradients():
    rng = np.random.default_rng(3)
    T, C = 40, 6
    decay = -np.exp(rng.normal(size=C))
    u = rng.normal(size=C)
    k = rng.normal(size=(2, T, C)) * 20
    v = rng.normal(size=(2, T, C))
    args = [torch.tensor(z) for z in (decay, u, k, v)]
    out, (a, b, p) = wkv_numba(*args)
    for i in range(2):
        ref, (ra, rb, rp) = wkv_ref(decay, u, k[i], v[i])
        np.testing.assert_allclose(out[i].numpy(), ref, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(a[i].numpy() * np.exp(p[i].numpy() - rp), ra, rtol=1e-9)
        np.testing.assert_allclose(b[i].numpy() * np.exp(p[i].numpy() - rp), rb, rtol=1e-9)
    # gradients of every input, a carried state included, through the output and the sums
    # a e^p, b e^p of the final state (how the next step reads it)
    small = [t[..., :3].clone() if t.ndim > 1 else t[:3].clone() for t in args]
    small[2] = small[2][:, :7] / 10
    small[3] = small[3][:, :7]
    state = [s.detach()[:, :3].clone() for s in wkv_numba(*small)[1]]
    ins = [t.requires_grad_() for t in small + state]

    def f(decay, u, k, v, a, b, p):
        y, (a2, b2, p2) = wkv_numba(decay, u, k, v, (a, b, p))
        return y, a2 * torch.exp(p2), b2 * torch.exp(p2)

    assert torch.autograd.gradcheck(f, ins)

    def two_segments(wkv, **kw):  # the second segment reads the first one's final state
        y, st = wkv(*ins[:4], tuple(ins[4:]), **kw)
        y2, _ = wkv(ins[0], ins[1], ins[2][:, :3] * 2, ins[3][:, :3], st, **kw)
        loss = (y**2).sum() + (y2 * torch.arange(3.0, dtype=y2.dtype)).sum()
        return torch.autograd.grad(loss, ins)

    for g1, g2 in zip(two_segments(wkv_numba), two_segments(wkv_chunked, chunk=3), strict=True):
        torch.testing.assert_close(g1, g2, rtol=1e-9, atol=1e-11)


@pytest.fixture(scope="module")
def model():
    return RWKV4(RWKVConfig(vocab_size=37, n_layer=3, n_embd=24, chunk=5), seed=1).double()


@pytest.fixture(params=["chunked", "numba"])
def wkv(request, model):
    model.set_wkv(request.param)
    assert model.wkv_backend == request.param
    yield request.param
    model.set_wkv("auto")


def test_the_float32_wkv_runs_a_vectorized_exp_within_float32_rounding():
    """float32 WKV kernels take a step's exps as rows from the polynomial exp: values, final
    state and gradients within float32 rounding of the float64 run (which uses np.exp)."""
    g = torch.Generator().manual_seed(11)
    B, T, C = 2, 37, 24
    k = torch.randn(B, T, C, generator=g, dtype=torch.float64) * 4
    v = torch.randn(B, T, C, generator=g, dtype=torch.float64)
    decay = -torch.exp(torch.randn(C, generator=g, dtype=torch.float64))
    u = torch.randn(C, generator=g, dtype=torch.float64)
    results = []
    for dtype in (torch.float64, torch.float32):
        ins = [t.to(dtype).requires_grad_() for t in (decay, u, k, v)]
        y, (a, b, p) = wkv_numba(*ins)
        grads = torch.autograd.grad((y * y).sum() + a.sum() + b.sum(), ins)
        results.append([y, a, b, p, *grads])
    for name, hi, lo in zip("y a b p gdecay gu gk gv".split(), *results, strict=True):
        torch.testing.assert_close(lo.double(), hi, rtol=1e-4, atol=1e-4, msg=name)


@pytest.mark.parametrize("T", [1, 6])
def test_fused_token_shift_equals_the_torch_form_and_has_exact_gradients(T):
    """The numba token shift and mixes: the torch form's values, gradcheck's gradients for
    the input, the shift and every mix, and the same gradients when one output is unused."""
    gen = torch.Generator().manual_seed(3)
    xx = torch.randn(3, T, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    shift = torch.randn(3, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    mixes = [torch.rand(5, dtype=torch.float64, generator=gen, requires_grad=True) for _ in "abc"]
    for got, want in zip(
        shift_mix_numba(xx, shift, mixes), shift_mix_torch(xx, shift, mixes), strict=True
    ):
        assert torch.allclose(got, want, rtol=0, atol=1e-12)
    assert torch.autograd.gradcheck(lambda x, s, *m: shift_mix_numba(x, s, m), (xx, shift, *mixes))
    grads = []
    for form in (shift_mix_numba, shift_mix_torch):
        a, _, c = form(xx, shift, mixes)  # the second output does not reach the loss
        grads.append(torch.autograd.grad((a * 2 + c).sum(), (xx, shift, *mixes), allow_unused=True))
    inputs = (xx, shift, *mixes)
    for got, want, x in zip(*grads, inputs, strict=True):  # an unused mix: no gradient or zeros
        zero = torch.zeros_like(x)
        assert torch.allclose(zero if got is None else got, zero if want is None else want)


def test_step_over_a_sequence_equals_forward(model, wkv):
    tokens = torch.randint(0, 37, (2, 23), generator=torch.Generator().manual_seed(0))
    logits, _ = model(tokens)
    state = model.init_state(2, dtype=torch.float64)
    steps = []
    for t in range(23):
        out, state = model.step(tokens[:, t], state)
        steps.append(out)
    torch.testing.assert_close(torch.stack(steps, dim=1), logits, rtol=1e-10, atol=1e-10)


def test_state_continues_a_sequence_and_is_not_mutated(model, wkv):
    tokens = torch.randint(0, 37, (1, 30), generator=torch.Generator().manual_seed(1))
    whole, _ = model(tokens)
    first, state = model(tokens[:, :12])
    frozen = [tuple(t.clone() for t in layer) for layer in state]
    rest, _ = model(tokens[:, 12:], state=state)
    torch.testing.assert_close(torch.cat([first, rest], dim=1), whole, rtol=1e-12, atol=1e-12)
    for before, after in zip(frozen, state, strict=True):
        for x, y in zip(before, after, strict=True):
            assert torch.equal(x, y)


def test_numba_and_chunked_train_the_same_model():
    cfg = RWKVConfig(vocab_size=30, n_layer=2, n_embd=16, chunk=4)
    grads = grads_by_kernel(
        lambda: RWKV4(cfg, seed=4).double(), "set_wkv", ("numba", "chunked"), 30
    )
    assert grads["blocks.0.att.time_decay"].abs().max() > 0


def test_wkv_choice_is_checked():
    with pytest.raises(ConfigError, match="`wkv` must be one of"):
        RWKVConfig(wkv="cuda")
    with pytest.raises(BackendUnavailableError, match="CPU tensors only"):
        resolve_wkv("numba", "meta")
    assert resolve_wkv("auto", "meta") == "chunked"


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
