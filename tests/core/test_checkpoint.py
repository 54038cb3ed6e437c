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


def test_bundle_round_trip_is_exact_in_one_file(tmp_path):
    arrays = {**_arrays(), "i8": np.array([-3, 4], np.int8), "u64": np.arange(5, dtype=np.uint64)}
    save_checkpoint(tmp_path / "ck", engine="x", params={}, arrays=arrays, bundle=True)
    assert sorted(os.listdir(tmp_path / "ck")) == ["arrays.arrow", "manifest.json"]
    ck = load_checkpoint(tmp_path / "ck", engine="x")
    assert ck.format_version == 2
    for name, arr in arrays.items():
        assert ck.arrays[name].dtype == arr.dtype and ck.arrays[name].shape == arr.shape
        np.testing.assert_array_equal(ck.arrays[name], arr)
    # views of the one buffer, each aligned for its dtype
    assert not ck.arrays["w"].flags.owndata and ck.arrays["u64"].ctypes.data % 8 == 0
    # all arrays empty: still a valid bundle
    save_checkpoint(tmp_path / "e", engine="x", params={}, arrays={"z": np.zeros(0)}, bundle=True)
    assert load_checkpoint(tmp_path / "e").arrays["z"].shape == (0,)


def test_corrupt_bundle_is_detected(tmp_path):
    save_checkpoint(tmp_path / "ck", engine="x", params={}, arrays=_arrays(), bundle=True)
    path = tmp_path / "ck" / "arrays.arrow"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(tmp_path / "ck")


@pytest.mark.parametrize(
    "change",
    [
        {"offset": 10**6},  # outside the file
        {"offset": -64},
        {"nbytes": 4},  # not the shape's size
        {"offset": 1},  # misaligned for float32
        {"offset": "0"},
    ],
)
def test_bundle_entries_out_of_bounds_are_refused(tmp_path, change):
    save_checkpoint(tmp_path / "ck", engine="x", params={}, arrays=_arrays(), bundle=True)
    mpath = tmp_path / "ck" / "manifest.json"
    manifest = json.loads(mpath.read_text())
    manifest["arrays"]["w"].update(change)
    mpath.write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="w|offset"):
        load_checkpoint(tmp_path / "ck", verify=False)


def test_unknown_format_version_is_refused(tmp_path):
    save_checkpoint(tmp_path / "ck", engine="x", params={}, arrays=_arrays())
    mpath = tmp_path / "ck" / "manifest.json"
    manifest = json.loads(mpath.read_text())
    manifest["format_version"] = 3
    mpath.write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="format_version 3 is not supported"):
        load_checkpoint(tmp_path / "ck")
