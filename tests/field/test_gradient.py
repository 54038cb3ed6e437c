"""``learn`` against calculus: one SGD step equals params - lr * (central finite differences).

The loss is recomputed here in float64 from the table and the decoder alone (an independent
forward pass; only the corner rows and d-linear weights come from the encoding, whose golden
values test_encoding checks). Its central differences give the gradient with respect to every
touched table entry and every decoder weight and bias, which one step of ``learn`` must apply.
"""

import numpy as np
import pytest

from neurofabric.core.errors import ConfigError
from neurofabric.field import DemandPagedField, HashGridSpec

# 3 levels of 2 features, 2 of them hashed into 16 rows: corners of different points and
# levels share rows, so the scatter must sum them
SPEC = HashGridSpec(
    n_dims=2, n_levels=3, n_features=2, log2_table=4, base_resolution=3, per_level_scale=2.0
)
HIDDEN = (5, 4)  # two ReLU layers: the derivative is used twice
OUT_DIM = 2
STEP = 1e-6  # central-difference step (float64)
KINK = 1e-3  # no pre-activation may lie closer to 0 than this (a step of 1e-6 cannot cross it)


def _loss64(table, params, rows, weights, y):
    """0.5 * mean over points of the squared error, all in float64."""
    vals = table[rows.astype(np.int64)]  # (n, L, corners, F)
    feats = np.einsum("nlc,nlcf->nlf", weights.astype(np.float64), vals).reshape(len(y), -1)
    pre = []
    a = feats
    for k, (W, b) in enumerate(params):
        z = a @ W + b
        if k < len(params) - 1:
            pre.append(z)
            z = np.maximum(z, 0.0)
        a = z
    return 0.5 * np.sum((a - y) ** 2) / len(y), pre


def _snapshot(field):
    table = field.pages.read_rows(np.arange(SPEC.n_rows, dtype=np.uint64))
    table = table.view(np.float32).reshape(SPEC.n_rows, SPEC.n_features).astype(np.float64)
    params = [(W.astype(np.float64), b.astype(np.float64)) for W, b in field.decoder()]
    return table, params


def _central_differences(table, params, rows, weights, y):
    def loss(t, p):
        return _loss64(t, p, rows, weights, y)[0]

    g_table = np.zeros_like(table)
    for r in np.unique(rows).tolist():
        for f in range(SPEC.n_features):
            up, down = table.copy(), table.copy()
            up[r, f] += STEP
            down[r, f] -= STEP
            g_table[r, f] = (loss(up, params) - loss(down, params)) / (2 * STEP)
    g_params = []
    for k in range(len(params)):
        grads = []
        for which in (0, 1):  # W, then b
            g = np.zeros_like(params[k][which])
            for idx in np.ndindex(g.shape):
                pair = []
                for sign in (1, -1):
                    p = [(W.copy(), b.copy()) for W, b in params]
                    p[k][which][idx] += sign * STEP
                    pair.append(loss(table, p))
                g[idx] = (pair[0] - pair[1]) / (2 * STEP)
            grads.append(g)
        g_params.append(tuple(grads))
    return g_table, g_params


@pytest.mark.parametrize("backend", ["numba", "reference"])
def test_one_learn_step_follows_the_finite_difference_gradient(tmp_path, backend):
    rng = np.random.default_rng(7)
    field = DemandPagedField.create(
        tmp_path / "f",
        spec=SPEC,
        hidden=HIDDEN,
        out_dim=OUT_DIM,
        seed=3,
        logical_bytes=1 << 20,
        shard_bytes=1 << 20,
        backend=backend,
    )
    assert field.grid.backend == backend  # the kernels asked for are the ones that run
    kernels = {"numba": "numba_cpu", "reference": "reference"}[backend]
    assert field.pages._k.__name__.rsplit(".", 1)[1] == kernels
    # a table of unit scale (a fresh one is all zero: every ReLU would be on, hiding its
    # derivative), written through the tiers as learn writes
    table0 = rng.normal(size=(SPEC.n_rows, SPEC.n_features)).astype(np.float32)
    field.pages.write_rows(np.arange(SPEC.n_rows, dtype=np.uint64), table0.view(np.uint8))
    x = rng.random((6, 2)).astype(np.float32)
    y = rng.normal(size=(6, OUT_DIM))
    rows, weights = field.grid.corners(x)
    table, params = _snapshot(field)
    loss, pre = _loss64(table, params, rows, weights, y)
    # the ReLU is differentiable at this point: no pre-activation near its kink, and both
    # of its sides in use in every hidden layer (else a missing derivative could go unseen)
    for z in pre:
        assert np.abs(z).min() > KINK
        assert (z > 0).any() and (z < 0).any()
    assert len(np.unique(rows)) < rows.size  # shared rows: the scatter has sums to do
    g_table, g_params = _central_differences(table, params, rows, weights, y)

    lr = 0.5  # the step is linear in lr (the gradient is taken before it), so any lr will do
    assert field.learn(x, y, lr=lr, optimizer="sgd") == pytest.approx(loss, rel=1e-5)
    table1, params1 = _snapshot(field)
    scale = max(np.abs(g_table).max(), max(np.abs(g).max() for gp in g_params for g in gp))
    tol = {"rtol": 1e-4, "atol": 1e-5 * scale}  # float32 arithmetic inside learn
    np.testing.assert_allclose((table - table1) / lr, g_table, **tol, err_msg="table rows")
    untouched = np.setdiff1d(np.arange(SPEC.n_rows), rows.reshape(-1))
    np.testing.assert_array_equal(table1[untouched], table[untouched])
    for k, ((W, b), (W1, b1), (gW, gb)) in enumerate(zip(params, params1, g_params, strict=True)):
        np.testing.assert_allclose((W - W1) / lr, gW, **tol, err_msg=f"decoder layer {k} W")
        np.testing.assert_allclose((b - b1) / lr, gb, **tol, err_msg=f"decoder layer {k} b")
    field.close()


def test_loss_and_grads_is_what_learn_applies(tmp_path):
    field = DemandPagedField.create(
        tmp_path / "f",
        spec=SPEC,
        hidden=HIDDEN,
        out_dim=OUT_DIM,
        seed=3,
        logical_bytes=1 << 20,
        shard_bytes=1 << 20,
    )
    x = np.random.default_rng(1).random((4, 2))
    y = np.ones((4, OUT_DIM))
    field.learn(x, y, optimizer="sgd")  # the table is no longer all zero
    loss, rows, row_grads, decoder_grads = field.loss_and_grads(x, y)
    table, params = _snapshot(field)
    assert field.learn(x, y, lr=0.25, optimizer="sgd") == loss
    table1, params1 = _snapshot(field)
    np.testing.assert_allclose(
        table[rows.astype(np.int64)] - 0.25 * row_grads,
        table1[rows.astype(np.int64)],
        rtol=1e-6,
        atol=1e-7,
    )
    for (W, b), (W1, b1), (gW, gb) in zip(params, params1, decoder_grads, strict=True):
        np.testing.assert_allclose(W - 0.25 * gW, W1, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(b - 0.25 * gb, b1, rtol=1e-6, atol=1e-7)
    field.close()


def test_an_unknown_backend_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(ConfigError, match="`backend` must be one of"):
        DemandPagedField.create(tmp_path / "f", spec=SPEC, backend="cuda")
    assert not (tmp_path / "f").exists()
