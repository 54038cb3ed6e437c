"""NeuralFabric: construction, validation, Arrow storage (zero-copy), Parquet, imports."""

import json
from pathlib import Path

import numpy as np
import pytest

from neurofabric.core.errors import CheckpointError, ConfigError, DataError, ShapeError
from neurofabric.store import sha256_file, write_columns
from neurofabric.thermo import NeuralFabric


def _X(n_in, n=25, seed=0):
    return np.random.default_rng(seed).random((n, n_in))


def test_layered_structure_and_density():
    fab = NeuralFabric.layered([10, 8, 4], density=0.5, seed=0)
    assert fab.n_pairs == 10 * 8 + 8 * 4
    assert 0.35 < fab.n_edges / fab.n_pairs < 0.65
    assert fab.sparsity == pytest.approx(1 - fab.n_edges / fab.n_pairs)
    assert np.all(fab.source < fab.target)
    same = NeuralFabric.layered([10, 8, 4], density=0.5, seed=0)
    np.testing.assert_array_equal(fab.weight, same.weight)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(source=[1], target=[0]), "higher unit index"),
        (dict(source=[0], target=[1]), "targets an input"),
        (dict(source=[0, 0], target=[3, 3]), "twice"),
        (dict(source=[0, 1, 0], target=[3, 2, 3]), "twice"),  # not adjacent (unsorted)
        (dict(source=[0, 1, 2, 0], target=[2, 2, 3, 2]), "twice"),
        (dict(source=[4], target=[5]), "leaves an output"),
        (dict(source=[0], target=[9]), "n_units"),
    ],
)
def test_bad_topology_is_refused(kwargs, match):
    n = len(kwargs["source"])
    with pytest.raises(ShapeError, match=match):
        NeuralFabric(
            n_in=2,
            n_out=2,
            bias=np.zeros(6),
            weight=np.ones(n),
            source=np.array(kwargs["source"]),
            target=np.array(kwargs["target"]),
        )


def test_shapes_that_do_not_match_are_refused():
    with pytest.raises(ShapeError, match="weight"):
        NeuralFabric(
            n_in=2, n_out=1, source=[0, 1], target=[2, 2], weight=np.ones(3), bias=np.zeros(3)
        )
    with pytest.raises(ShapeError, match="layer_sizes"):
        NeuralFabric(
            n_in=2,
            n_out=1,
            source=[0],
            target=[2],
            weight=np.ones(1),
            bias=np.zeros(3),
            layer_sizes=[2, 2],
        )
    with pytest.raises(ShapeError, match="allowed pair"):
        NeuralFabric(
            n_in=2,
            n_out=1,
            source=[0],
            target=[3],
            weight=np.ones(1),
            bias=np.zeros(4),
            layer_sizes=[2, 1, 1],
        )
    with pytest.raises(ConfigError, match="activation"):
        NeuralFabric.layered([2, 2], activation="gelu")


def test_from_dense_matches_scikit_learn_mlp():
    from sklearn.datasets import load_digits
    from sklearn.neural_network import MLPClassifier

    X, y = load_digits(return_X_y=True)
    X = X[:300] / 16.0
    mlp = MLPClassifier(hidden_layer_sizes=(12,), max_iter=30, random_state=0).fit(X, y[:300])
    fab = NeuralFabric.from_dense(mlp.coefs_, mlp.intercepts_)
    np.testing.assert_allclose(fab.predict_proba(X), mlp.predict_proba(X), atol=1e-10)
    assert fab.n_edges == sum(c.size for c in mlp.coefs_)


def test_from_state_dict_and_safetensors(tmp_path):
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    sd = {
        "net.0.weight": rng.normal(size=(5, 4)),  # torch Linear layout: (out, in)
        "net.0.bias": rng.normal(size=5),
        "net.2.weight": rng.normal(size=(3, 5)),
        "net.2.bias": rng.normal(size=3),
    }
    fab = NeuralFabric.from_state_dict(sd, activation="tanh")
    X = _X(4)
    want = (
        np.tanh(X @ sd["net.0.weight"].T + sd["net.0.bias"]) @ sd["net.2.weight"].T
        + sd["net.2.bias"]
    )
    np.testing.assert_allclose(fab.forward(X), want, atol=1e-12)
    save_file({k: v.astype(np.float32) for k, v in sd.items()}, str(tmp_path / "m.safetensors"))
    fab2 = NeuralFabric.from_safetensors(tmp_path / "m.safetensors", activation="tanh")
    np.testing.assert_allclose(fab2.forward(X), want, atol=1e-5)
    with pytest.raises(DataError):
        NeuralFabric.from_state_dict({"x.bias": np.zeros(2)})


def test_from_torch_state_dict_when_torch_is_installed():
    torch = pytest.importorskip("torch")
    net = torch.nn.Sequential(
        torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 2)
    ).double()
    fab = NeuralFabric.from_state_dict(net.state_dict())
    X = _X(4)
    np.testing.assert_allclose(
        fab.forward(X), net(torch.from_numpy(X)).detach().numpy(), atol=1e-12
    )


def _pruned():
    fab = NeuralFabric.layered([6, 5, 3], density=0.5, seed=3)
    fab.bias[6:] = np.linspace(-0.3, 0.3, 8)
    return fab


def test_save_load_roundtrip_gives_the_same_predictions(tmp_path):
    fab = _pruned()
    X = _X(6)
    fab.save(tmp_path / "f", meta={"note": "x"})
    for mmap in (True, False):
        back = NeuralFabric.load(tmp_path / "f", mmap=mmap)
        np.testing.assert_array_equal(back.forward(X), fab.forward(X))
        assert back.n_edges == fab.n_edges and back.layer_sizes == fab.layer_sizes
        assert back.meta == {"note": "x"}
    # float32 storage: close, not exact
    fab.save(tmp_path / "f32", dtype=np.float32)
    back = NeuralFabric.load(tmp_path / "f32")
    assert back.weight.dtype == np.float32
    np.testing.assert_allclose(back.forward(X), fab.forward(X), atol=1e-5)


def test_mmap_load_copies_no_weight_data(tmp_path):
    fab = NeuralFabric.layered([50, 40, 10], seed=0)
    fab.save(tmp_path / "f")
    back = NeuralFabric.load(tmp_path / "f", mmap=True, verify=False)
    # each column is a read-only view whose memory lies inside a mapping of edges.arrow
    for arr in (back.source, back.target, back.weight):
        assert not arr.flags.owndata and not arr.flags.writeable
        base = arr
        while isinstance(base, np.ndarray) and base.base is not None:
            base = base.base
        assert not isinstance(base, np.ndarray)  # owned by an Arrow buffer, not a numpy copy
    # the loaded weights are the bytes of the file, at an aligned offset
    raw = (tmp_path / "f" / "edges.arrow").read_bytes()
    start = raw.find(back.weight.tobytes())
    assert start >= 0 and start % 8 == 0
    # and (on Linux) their address lies inside a mapping of edges.arrow itself
    maps = Path("/proc/self/maps")
    if maps.exists():
        addr = back.weight.__array_interface__["data"][0]
        spans = []
        for line in maps.read_text().splitlines():
            if line.endswith(str(tmp_path / "f" / "edges.arrow")):
                lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
                spans.append((lo, hi))
        assert any(lo <= addr < hi for lo, hi in spans), (hex(addr), spans)


def test_corrupt_or_foreign_files_are_refused(tmp_path):
    fab = _pruned()
    fab.save(tmp_path / "f")
    data = bytearray((tmp_path / "f" / "edges.arrow").read_bytes())
    data[-200] ^= 0xFF
    (tmp_path / "f" / "edges.arrow").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        NeuralFabric.load(tmp_path / "f")
    with pytest.raises(CheckpointError, match="manifest"):
        NeuralFabric.load(tmp_path)
    fab.save(tmp_path / "g")
    m = json.loads((tmp_path / "g" / "manifest.json").read_text())
    m["format_version"] = 99
    (tmp_path / "g" / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(CheckpointError, match="format_version"):
        NeuralFabric.load(tmp_path / "g")


def test_arrow_file_with_missing_columns_is_refused(tmp_path):
    fab = _pruned()
    fab.save(tmp_path / "f")
    write_columns(tmp_path / "f" / "edges.arrow", {"source": fab.source, "weight": fab.weight})
    with pytest.raises(DataError, match="target"):
        NeuralFabric.load(tmp_path / "f", verify=False)


def test_read_layer_maps_one_layer(tmp_path):
    fab = _pruned()
    fab.save(tmp_path / "f")
    l1 = NeuralFabric.read_layer(tmp_path / "f", 1)
    l2 = NeuralFabric.read_layer(tmp_path / "f", 2)
    assert np.all((l1["target"] >= 6) & (l1["target"] < 11))
    assert np.all(l2["target"] >= 11)
    assert len(l1["weight"]) + len(l2["weight"]) == fab.n_edges
    assert not l1["weight"].flags.owndata
    with pytest.raises(ConfigError):
        NeuralFabric.read_layer(tmp_path / "f", 3)


def test_parquet_roundtrip(tmp_path):
    fab = _pruned()
    fab.to_parquet(tmp_path / "pq")
    back = NeuralFabric.from_parquet(tmp_path / "pq")
    X = _X(6)
    np.testing.assert_array_equal(back.forward(X), fab.forward(X))


def test_sorted_by_target_gives_csr_offsets():
    fab = NeuralFabric.layered([4, 3, 2], density=0.7, seed=1)
    rng = np.random.default_rng(0)
    perm = rng.permutation(fab.n_edges)
    shuffled = NeuralFabric(
        n_in=4,
        n_out=2,
        source=fab.source[perm],
        target=fab.target[perm],
        weight=fab.weight[perm],
        bias=fab.bias,
        layer_sizes=fab.layer_sizes,
    )
    s, off = shuffled.sorted_by_target()
    assert np.all(np.diff(s.target.astype(int)) >= 0)
    for u in range(fab.n_units):
        assert np.all(s.target[off[u] : off[u + 1]] == u)
    np.testing.assert_allclose(s.forward(_X(4)), fab.forward(_X(4)), atol=1e-12)


@pytest.mark.parametrize("column,value", [("target", 10**6), ("source", -1), ("target", 0)])
def test_out_of_range_connections_with_valid_checksums_are_refused(tmp_path, column, value):
    """Edges pointing outside the network, with the checksums fixed to match the new file:
    a CheckpointError naming the folder, before any kernel indexes with them."""
    fab = _pruned()
    fab.save(tmp_path / "f")
    cols = {"source": fab.source.astype(np.int64), "target": fab.target.astype(np.int64)}
    cols[column][3] = value
    write_columns(
        tmp_path / "f" / "edges.arrow",
        {
            "source": cols["source"].astype(fab.source.dtype if value >= 0 else np.int64),
            "target": cols["target"].astype(fab.target.dtype),
            "weight": fab.weight,
        },
    )
    m = json.loads((tmp_path / "f" / "manifest.json").read_text())
    m["files"]["edges.arrow"] = sha256_file(tmp_path / "f" / "edges.arrow")
    (tmp_path / "f" / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(CheckpointError, match="saved fabric is inconsistent"):
        NeuralFabric.load(tmp_path / "f")
