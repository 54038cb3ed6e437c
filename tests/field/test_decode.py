"""The fused decoder kernel (``mlp_forward``) against the numpy reference and the layer-by-layer
forward pass that learning uses."""

import numpy as np
import pytest

from neurofabric.field import DemandPagedField, HashGridSpec, TierConfig
from neurofabric.field.kernels import numba_cpu, reference


def _args(layers):
    if len(layers) == 2:
        layers = [*layers, (np.zeros((0, 0), np.float32), np.zeros(0, np.float32))]
    return [a for W, b in layers for a in (W, b)]


@pytest.mark.parametrize("dims", [(32, 64, 1), (8, 16, 16, 3), (4, 7, 5)])
@pytest.mark.parametrize("n", [1, 300, 1000])
def test_mlp_forward_matches_the_reference(dims, n):
    rng = np.random.default_rng(len(dims) * 1000 + n)
    layers = [
        (rng.normal(size=(i, o)).astype(np.float32), rng.normal(size=o).astype(np.float32))
        for i, o in zip(dims[:-1], dims[1:], strict=True)
    ]
    feats = rng.normal(size=(n, dims[0])).astype(np.float32)
    feats[rng.random(feats.shape) < 0.3] = 0.0  # zeros take the kernel's skip
    ref = reference.mlp_forward(feats, *_args(layers))
    # the plain layer-by-layer pass (ReLU between layers, none after the last)
    a = feats
    for k, (W, b) in enumerate(layers):
        a = a @ W + b
        a = np.maximum(a, 0) if k < len(layers) - 1 else a
    np.testing.assert_allclose(ref, a, rtol=1e-5, atol=1e-5)
    for fn in (numba_cpu.mlp_forward, numba_cpu.mlp_forward_serial):
        got = fn(feats, *_args(layers))
        assert got.dtype == np.float32 and got.shape == (n, dims[-1])
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-4)  # float32 sums, other order


@pytest.mark.parametrize(
    ("backend", "hidden"),
    [("numba", (16,)), ("numba", (16, 8)), ("numba", (8, 8, 8)), ("reference", (16, 8))],
)
def test_a_batched_query_equals_the_learning_forward_pass(tmp_path, backend, hidden):
    spec = HashGridSpec(n_dims=2, n_levels=4, n_features=2, log2_table=10, base_resolution=4)
    f = DemandPagedField.create(
        tmp_path / "f",
        spec=spec,
        hidden=hidden,
        out_dim=3,
        seed=0,
        backend=backend,
        tiers=TierConfig(dram_pages=512),
    )
    rng = np.random.default_rng(0)
    for _ in range(3):
        x = rng.random((256, 2)).astype(np.float32)
        f.learn(x, np.concatenate([np.sin(4 * x), x[:, :1] * x[:, 1:]], axis=1))
    x = rng.random((2000, 2)).astype(np.float32)
    want = f._forward(f.encode(x), f.decoder())[-1]
    np.testing.assert_allclose(f.query(x), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(f.query(x[:3]), want[:3], rtol=1e-5, atol=1e-6)
    f.close()
