"""Mamba-1: the chunked selective scan against the sequential spec, step against forward,
state continuation and the HF / state-spaces checkpoint layouts."""

import pytest

torch = pytest.importorskip("torch")

from neurofabric.core.errors import CheckpointError, ShapeError  # noqa: E402
from neurofabric.seq.mamba import Mamba, MambaConfig, selective_scan, selective_scan_ref  # noqa: E402
from tests.seq._kernels import grads_by_kernel  # noqa: E402


@pytest.mark.parametrize("chunk", [1, 4, 16, 64])
def test_chunked_scan_equals_the_sequential_spec(chunk):
    g = torch.Generator().manual_seed(chunk)
    b, L, d, n = 2, 29, 5, 3

    def r(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    u, B, C, D = r(b, L, d), r(b, L, n), r(b, L, n), r(d)
    delta = torch.rand(b, L, d, generator=g, dtype=torch.float64) * 3
    A = -torch.rand(d, n, generator=g, dtype=torch.float64) * 4
    h0 = r(b, d, n)
    y1, h1 = selective_scan_ref(u, delta, A, B, C, D, h0)
    y2, h2 = selective_scan(u, delta, A, B, C, D, h0, chunk=chunk)
    torch.testing.assert_close(y2, y1, rtol=1e-11, atol=1e-11)
    torch.testing.assert_close(h2, h1, rtol=1e-11, atol=1e-11)


@pytest.fixture(scope="module")
def model():
    return Mamba(MambaConfig(vocab_size=41, n_layer=2, d_model=16, chunk=6), seed=2).double()


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


def test_checkpoint_layouts(model):
    sd = model.to_hf_state_dict()
    assert "backbone.layers.1.mixer.A_log" in sd and "lm_head.weight" in sd
    tokens = torch.tensor([[3, 1, 4, 1, 5]])
    torch.testing.assert_close(Mamba.from_hf_state_dict(sd).double()(tokens), model(tokens))
    # state-spaces/mamba names the embedding "backbone.embedding"
    ss = {k.replace("backbone.embeddings.", "backbone.embedding."): v for k, v in sd.items()}
    torch.testing.assert_close(Mamba.from_hf_state_dict(ss).double()(tokens), model(tokens))
    del sd["backbone.layers.0.mixer.D"]
    with pytest.raises(CheckpointError, match="mixer.D"):
        Mamba.from_hf_state_dict(sd)
    with pytest.raises(ShapeError, match=r"\[0, 41\)"):
        model(torch.tensor([[41]]))


def test_fast_mamba_decoder_matches_the_torch_model():
    import numpy as np

    from neurofabric.seq.decode import MambaDecoder

    m = Mamba(MambaConfig(vocab_size=53, n_layer=2, d_model=32), seed=4)
    fast, slow = MambaDecoder.from_model(m), MambaDecoder.from_model(m, backend="reference")
    s_fast, s_slow, s_torch = fast.init_state(2), slow.init_state(2), m.init_state(2)
    with torch.no_grad():
        for t in ([1, 2], [52, 0], [7, 7], [30, 11]):
            a, s_fast = fast.step(np.array(t), s_fast)
            b, s_slow = slow.step(np.array(t), s_slow)
            c, s_torch = m.step(torch.tensor(t), s_torch)
            np.testing.assert_allclose(a, c.numpy(), atol=1e-4)
            np.testing.assert_allclose(a, b, atol=1e-4)


def test_numba_scan_equals_the_spec_and_has_exact_gradients():
    from neurofabric.seq.mamba import selective_scan_numba

    g = torch.Generator().manual_seed(7)
    b, L, d, n = 2, 9, 3, 4

    def r(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    u, B, C, D, h0 = r(b, L, d), r(b, L, n), r(b, L, n), r(d), r(b, d, n)
    delta = torch.rand(b, L, d, generator=g, dtype=torch.float64) * 2
    A = -torch.rand(d, n, generator=g, dtype=torch.float64) * 3
    ins = [t.requires_grad_() for t in (u, delta, A, B, C, D, h0)]
    for a, e in zip(selective_scan_numba(*ins), selective_scan_ref(*ins), strict=True):
        torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(lambda *a: selective_scan_numba(*a), ins)


def test_the_float32_scan_runs_a_vectorized_exp_within_float32_rounding():
    """float32 scans take the decays from a polynomial exp (``exp_row(..., fast=True)``): its
    relative error against float64 stays under 3.5e-7 (3 float32 ulps) on the clamp range (libm's
    float32 exp: 1.2e-7), and a float32 scan
    (values and gradients) matches the float64 one as closely as float32 allows."""
    import numpy as np

    from neurofabric.seq.kernels.numba_cpu import exp_row
    from neurofabric.seq.mamba import selective_scan_numba

    x = np.linspace(-87.0, 88.0, 200_001, dtype=np.float32)
    out, bits = np.empty_like(x), np.empty(x.shape, dtype=np.int32)
    exp_row(x, out, bits, True)
    ref = np.exp(x.astype(np.float64))
    assert np.max(np.abs(out - ref) / ref) < 3.5e-7
    exp_row(x, out, bits, False)  # libm's float32 exp
    assert np.max(np.abs(out - ref) / ref) < 1.2e-7

    g = torch.Generator().manual_seed(3)
    b, L, d, n = 2, 23, 5, 16
    u, B, C = (
        torch.randn(*s, generator=g, dtype=torch.float64) for s in ((b, L, d), (b, L, n), (b, L, n))
    )
    D, h0 = (
        torch.randn(d, generator=g, dtype=torch.float64),
        torch.zeros(b, d, n, dtype=torch.float64),
    )
    delta = torch.rand(b, L, d, generator=g, dtype=torch.float64) * 0.5
    A = -torch.rand(d, n, generator=g, dtype=torch.float64) * 8
    results = []
    for dtype in (torch.float64, torch.float32):
        ins = [t.to(dtype).requires_grad_() for t in (u, delta, A, B, C, D, h0)]
        y, h = selective_scan_numba(*ins)
        grads = torch.autograd.grad((y * y).sum() + h.sum(), ins)
        results.append([y, h, *grads])
    for name, hi, lo in zip("y h du ddelta dA dB dC dD dh0".split(), *results, strict=True):
        torch.testing.assert_close(lo.double(), hi, rtol=2e-5, atol=2e-5, msg=name)


def test_both_scans_train_the_same_model():
    a, b = (Mamba(MambaConfig(vocab_size=41, n_layer=2, d_model=16), seed=9) for _ in range(2))
    for p, q in zip(a.parameters(), b.parameters(), strict=True):  # the seed fixes every weight
        assert torch.equal(p, q)
    cfg = MambaConfig(vocab_size=41, n_layer=2, d_model=16, chunk=4)
    grads_by_kernel(lambda: Mamba(cfg, seed=9).double(), "set_scan", ("numba", "chunked"), 41)
