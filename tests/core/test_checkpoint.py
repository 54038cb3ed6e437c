import json
import os

import numpy as np
import pytest

from neurofabric.core.checkpoint import FORMAT_VERSION, load_checkpoint, save_checkpoint
from neurofabric.core.errors import CheckpointError


def _arrays():
    rng = np.random.default_rng(0)
    return {
        "w": rng.random((3, 4)).astype(np.float32),
        "idx": np.arange(7, dtype=np.int32),
        "flag": np.array([True, False, True]),
        "empty": np.empty(0, np.float64),
    }


def test_round_trip_is_exact_and_zero_copy(tmp_path):
    arrays = _arrays()
    save_checkpoint(tmp_path / "ck", engine="x", params={"a": 1}, arrays=arrays, meta={"t": 3})
    ck = load_checkpoint(tmp_path / "ck", engine="x")
    assert ck.params == {"a": 1} and ck.meta == {"t": 3} and ck.format_version == FORMAT_VERSION
    for name, arr in arrays.items():
        assert ck.arrays[name].dtype == arr.dtype
        np.testing.assert_array_equal(ck.arrays[name], arr)
    # memory-mapped: the loaded float array does not own its memory
    assert not ck.arrays["w"].flags.owndata


def test_corrupt_array_is_detected(tmp_path):
    save_checkpoint(tmp_path / "ck", engine="x", params={}, arrays=_arrays())
    path = tmp_path / "ck" / "w.arrow"
    data = bytearray(path.read_bytes())
    data[-40] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(tmp_path / "ck")


@pytest.mark.parametrize(
    "manifest",
    [
        "not json",
        json.dumps({"format": "other"}),
        json.dumps({"format": "neurofabric-checkpoint", "format_version": 99}),
    ],
)
def test_foreign_or_future_manifest(tmp_path, manifest):
    (tmp_path / "ck").mkdir()
    (tmp_path / "ck" / "manifest.json").write_text(manifest)
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "ck")


def test_wrong_engine_and_missing_dir(tmp_path):
    save_checkpoint(tmp_path / "ck", engine="a", params={}, arrays={})
    with pytest.raises(CheckpointError, match="not 'b'"):
        load_checkpoint(tmp_path / "ck", engine="b")
    with pytest.raises(CheckpointError, match="manifest"):
        load_checkpoint(tmp_path / "nothing")


def test_failed_save_keeps_previous_checkpoint(tmp_path):
    save_checkpoint(tmp_path / "ck", engine="x", params={"v": 1}, arrays=_arrays())
    before = sorted(os.listdir(tmp_path / "ck"))
    with pytest.raises(CheckpointError):  # object arrays are refused (they would need pickle)
        save_checkpoint(
            tmp_path / "ck", engine="x", params={"v": 2}, arrays={"bad": np.array([object()])}
        )
    assert sorted(os.listdir(tmp_path / "ck")) == before
    assert load_checkpoint(tmp_path / "ck").params == {"v": 1}
    assert [p for p in os.listdir(tmp_path) if p.startswith(".")] == []
