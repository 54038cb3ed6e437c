"""IDX reading and the MNIST loader on small files the test writes (no real data needed)."""

import gzip

import numpy as np
import pytest

from neurofabric.core.config import config_context
from neurofabric.core.errors import DataError
from neurofabric.data import load_mnist, read_idx
from neurofabric.data.idx import write_idx


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_round_trip(tmp_path, dtype, suffix):
    arr = (np.arange(24).reshape(2, 3, 4) * 3).astype(dtype)
    write_idx(tmp_path / f"a.idx{suffix}", arr)
    back = read_idx(tmp_path / f"a.idx{suffix}")
    assert back.dtype == np.dtype(dtype) and back.shape == arr.shape
    np.testing.assert_array_equal(back, arr)


def _fake_mnist(root, n_train=60000, n_test=10000, bad_label=False):
    folder = root / "mnist"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        if bad_label:
            labels[5] = 12
        write_idx(
            folder / f"{prefix}-images-idx3-ubyte.gz",
            rng.integers(0, 256, (n, 28, 28)).astype(np.uint8),
        )
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return folder


def test_load_from_configured_data_dir(tmp_path):
    _fake_mnist(tmp_path)
    with config_context(data_dir=tmp_path):
        x, y = load_mnist("test")
    assert x.shape == (10000, 28, 28) and y.shape == (10000,) and x.dtype == np.uint8


def test_counts_and_labels_are_checked(tmp_path):
    _fake_mnist(tmp_path / "short", n_train=100)
    with pytest.raises(DataError, match="should hold 60000"):
        load_mnist("train", data_dir=tmp_path / "short")
    _fake_mnist(tmp_path / "bad", n_test=10000, bad_label=True)
    with pytest.raises(DataError, match="label 12 at record 5"):
        load_mnist("test", data_dir=tmp_path / "bad")


def test_malformed_files(tmp_path):
    (tmp_path / "x.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="x.gz"):
        read_idx(tmp_path / "x.gz")
    with gzip.open(tmp_path / "t.gz", "wb") as fh:
        fh.write(bytes([0, 0, 8, 1]) + (100).to_bytes(4, "big") + b"\x00" * 10)
    with pytest.raises(DataError, match="promises"):
        read_idx(tmp_path / "t.gz")


def test_missing_files_and_data_dir(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="download=True"):
        load_mnist("train", data_dir=tmp_path)
    monkeypatch.delenv("NEUROFABRIC_DATA", raising=False)
    with config_context(data_dir=None), pytest.raises(DataError, match="NEUROFABRIC_DATA"):
        load_mnist("train")


def test_download_code_fetches_from_a_mirror(tmp_path, monkeypatch):
    # a local file:// mirror stands in for the canonical one (no network in tests)
    mirror = _fake_mnist(tmp_path / "mirror", n_train=60000, n_test=10000)
    from neurofabric.data import mnist

    monkeypatch.setitem(mnist.MNIST_SETS, "mnist", mnist.MnistSet("mnist", (f"file://{mirror}/",)))
    x, y = load_mnist("test", data_dir=tmp_path / "cache", download=True)
    assert len(x) == 10000 and (tmp_path / "cache" / "mnist" / "t10k-labels-idx1-ubyte.gz").exists()
