"""A save killed at any step leaves the old or the new checkpoint; corrupt content (even with
matching checksums) raises CheckpointError and never crashes the interpreter."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neurofabric.core import checkpoint as ckmod
from neurofabric.core.checkpoint import (
    atomic_directory,
    load_checkpoint,
    save_checkpoint,
    sha256_file,
)
from neurofabric.core.errors import CheckpointError, StorageError


def _version(v):
    rng = np.random.default_rng(v)
    return {
        "w": rng.random((50, 40)).astype(np.float32),
        "idx": rng.integers(0, 100, 300).astype(np.int32),
        "flag": rng.random(17) < 0.5,
    }


# The child saves version 2 over version 1 and SIGKILLs itself just before step `kill_at`
# (each array write, fsync, rename and removal is a step); kill_at=0 counts the steps.
_CHILD = textwrap.dedent(
    """
    import os, shutil, signal, sys
    import numpy as np
    from neurofabric.core import checkpoint as ck

    path, kill_at = sys.argv[1], int(sys.argv[2])
    steps = [0]

    def counted(fn):
        def wrapper(*a, **k):
            steps[0] += 1
            if steps[0] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return fn(*a, **k)
        return wrapper

    ck._write_array = counted(ck._write_array)
    os.fsync = counted(os.fsync)
    os.replace = counted(os.replace)
    shutil.rmtree = counted(shutil.rmtree)
    rng = np.random.default_rng(2)
    arrays = {
        "w": rng.random((50, 40)).astype(np.float32),
        "idx": rng.integers(0, 100, 300).astype(np.int32),
        "flag": rng.random(17) < 0.5,
    }
    ck.save_checkpoint(path, engine="x", params={"v": 2}, arrays=arrays)
    print(steps[0])
    """
)


def _run_child(path, kill_at):
    return subprocess.run(
        [sys.executable, "-c", _CHILD, str(path), str(kill_at)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_save_killed_at_every_step_leaves_the_old_or_the_new_checkpoint(tmp_path):
    ck_path = tmp_path / "ck"
    save_checkpoint(ck_path, engine="x", params={"v": 1}, arrays=_version(1))
    done = _run_child(ck_path, 0)  # a complete save over version 1 counts the steps
    assert done.returncode == 0, done.stderr
    n_steps = int(done.stdout.strip())
    assert n_steps >= 10  # 3 array writes, fsyncs of files and directories, 2 renames
    outcomes, missing_seen = set(), 0
    for kill_at in range(1, n_steps + 2):
        save_checkpoint(ck_path, engine="x", params={"v": 1}, arrays=_version(1))
        proc = _run_child(ck_path, kill_at)
        killed = kill_at <= n_steps
        assert (proc.returncode == -9) == killed, (kill_at, proc.returncode, proc.stderr)
        missing_seen += not ck_path.exists()
        ck = load_checkpoint(ck_path, engine="x")  # recovers an interrupted swap
        v = ck.params["v"]
        outcomes.add(v)
        for name, arr in _version(v).items():
            np.testing.assert_array_equal(ck.arrays[name], arr, err_msg=f"kill at {kill_at}")
        if not killed:
            assert v == 2
    assert outcomes == {1, 2}
    assert missing_seen >= 1  # the window between the two renames was hit and recovered
    # a later save cleans every leftover of the interrupted ones
    save_checkpoint(ck_path, engine="x", params={"v": 3}, arrays=_version(3))
    assert [p.name for p in tmp_path.iterdir()] == ["ck"]


def test_atomic_directory_fsyncs_files_and_directories(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def spy(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}") if os.path.exists("/proc") else fd)
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    save_checkpoint(tmp_path / "ck", engine="x", params={}, arrays=_version(1))
    save_checkpoint(tmp_path / "ck", engine="x", params={}, arrays=_version(2))
    if not os.path.exists("/proc"):
        pytest.skip("needs /proc to name the synced files")
    names = {Path(p).name for p in synced}
    assert {"w.arrow", "idx.arrow", "flag.arrow", "manifest.json"} <= names
    assert tmp_path.name in names  # the parent directory, after the renames


def test_interrupted_swap_inside_a_saved_directory_is_recovered(tmp_path):
    # a checkpoint nested in a directory that was itself saved atomically (as Diehl & Cook's)
    outer = tmp_path / "run"
    with atomic_directory(outer) as tmp:
        save_checkpoint(tmp / "inner", engine="x", params={"v": 1}, arrays=_version(1))
    os.replace(outer, tmp_path / ".run.new-deadbeef")  # crash between the two renames
    assert load_checkpoint(outer / "inner").params == {"v": 1}


# ----------------------------------------------------------------------------- array checks


def test_checked_arrays_name_the_file_and_the_field(tmp_path):
    save_checkpoint(
        tmp_path / "ck",
        engine="x",
        params={},
        arrays={"ptr": np.array([0, 3, 2, 4]), "idx": np.array([0, 9, 1, 2], np.int32)},
    )
    ck = load_checkpoint(tmp_path / "ck")
    with pytest.raises(CheckpointError, match=r"'ptr' \(file ptr.arrow\) must be non-decreasing"):
        ck.indptr("ptr", 3, 4)
    with pytest.raises(CheckpointError, match=r"'ptr'.*shape \(5,\)"):
        ck.indptr("ptr", 4)
    with pytest.raises(CheckpointError, match=r"'idx'.*<= 4, got 9"):
        ck.array("idx", kinds="i", lo=0, hi=4)
    with pytest.raises(CheckpointError, match=r"'idx'.*kind 'f'"):
        ck.array("idx", kinds="f")
    with pytest.raises(CheckpointError, match=r"'nope' is missing"):
        ck.array("nope")
    assert ck.array("idx", kinds="i", shape=(4,), lo=0, hi=9).tolist() == [0, 9, 1, 2]


def _rewrite(folder: Path, name: str, arr: np.ndarray, *, dtype=None, shape=None) -> None:
    """Replace array ``name`` with ``arr`` and fix its checksum (a consistent-looking file)."""
    manifest = json.loads((folder / "manifest.json").read_text())
    entry = manifest["arrays"][name]
    ckmod._write_array(folder / entry["file"], arr)
    entry["sha256"] = sha256_file(folder / entry["file"])
    entry["dtype"] = dtype or np.asarray(arr).dtype.str
    entry["shape"] = list(np.shape(arr)) if shape is None else shape
    (folder / "manifest.json").write_text(json.dumps(manifest))


_MANIFEST_EDITS = st.sampled_from(
    [
        ("arrays", "not a dict"),
        ("arrays.w.shape", [-1]),
        ("arrays.w.shape", [3, 3]),
        ("arrays.w.shape", "50"),
        ("arrays.w.shape", [True, 2000]),
        ("arrays.w.dtype", "O"),
        ("arrays.w.dtype", "<U4"),
        ("arrays.w.dtype", ">f4"),
        ("arrays.w.dtype", "no such dtype"),
        ("arrays.w.dtype", "<i4"),
        ("arrays.w.file", "../w.arrow"),
        ("arrays.w.file", "/etc/passwd"),
        ("arrays.w.file", 7),
        ("arrays.w.file", ""),
        ("arrays.w", None),
        ("arrays.w.sha256", None),
        ("engine", 5),
        ("params", []),
        ("meta", "x"),
        ("format_version", "1"),
    ]
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(edit=_MANIFEST_EDITS)
def test_fuzzed_manifests_raise_checkpoint_error(tmp_path_factory, edit):
    folder = tmp_path_factory.mktemp("ck") / "ck"
    save_checkpoint(folder, engine="x", params={}, arrays=_version(1))
    manifest = json.loads((folder / "manifest.json").read_text())
    key, value = edit
    *parents, leaf = key.split(".")
    node = manifest
    for part in parents:
        node = node[part]
    node[leaf] = value
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError):
        load_checkpoint(folder, engine="x")


@settings(max_examples=60, deadline=None)
@given(data=st.binary(min_size=0, max_size=2000), cut=st.integers(0, 4000))
def test_fuzzed_array_files_raise_checkpoint_error(tmp_path_factory, data, cut):
    """Truncated or garbage array files, checksums fixed to match: an error, never a crash."""
    folder = tmp_path_factory.mktemp("ck") / "ck"
    save_checkpoint(folder, engine="x", params={}, arrays=_version(1))
    path = folder / "w.arrow"
    raw = path.read_bytes()
    path.write_bytes(raw[: cut % (len(raw) + 1)] + data)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["arrays"]["w"]["sha256"] = sha256_file(path)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    try:
        ck = load_checkpoint(folder, engine="x")
    except CheckpointError:
        return
    # whatever was accepted must be exactly what the manifest says
    assert ck.arrays["w"].shape == (50, 40) and ck.arrays["w"].dtype == np.float32


def test_atomic_write_replaces_whole_and_leaves_no_temporary(tmp_path):
    from neurofabric.core.checkpoint import atomic_write, write_json

    target = tmp_path / "sub" / "f.json"
    write_json(target, {"a": 1})
    atomic_write(target, b"xyz")
    assert target.read_bytes() == b"xyz"
    assert sorted(p.name for p in target.parent.iterdir()) == ["f.json"]
    with pytest.raises(ValueError):
        write_json(target, {"a": float("nan")})
    assert target.read_bytes() == b"xyz"
    assert sorted(p.name for p in target.parent.iterdir()) == ["f.json"]


def test_atomic_file_streams_keeps_the_suffix_and_leaves_the_old_file_on_error(tmp_path):
    from neurofabric.core.checkpoint import atomic_file

    target = tmp_path / "spikes.parquet"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_file(target) as tmp:
        assert tmp.suffix == ".parquet" and tmp.parent == tmp_path
        with open(tmp, "wb") as fh:
            fh.write(b"half")
        raise RuntimeError("the writer died")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["spikes.parquet"]
    with atomic_file(target) as tmp:
        for chunk in (b"ne", b"w"):
            with open(tmp, "ab") as fh:
                fh.write(chunk)
        assert target.read_bytes() == b"old"  # nothing visible until the block ends
    assert target.read_bytes() == b"new"
    with pytest.raises(StorageError, match="nothing was written"), atomic_file(target):
        pass
    assert target.read_bytes() == b"new"


def test_column_and_spike_exports_go_through_atomic_file(tmp_path, monkeypatch):
    """A writer that dies half-way leaves no partial Arrow, Parquet or spike file behind."""
    import pyarrow.parquet as pq

    from neurofabric.store.columns import write_columns, write_parquet

    cols = {"a": np.arange(10, dtype=np.int64)}
    write_columns(tmp_path / "c.arrow", cols)
    write_parquet(tmp_path / "c.parquet", cols)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def dies(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", dies)
    with pytest.raises(OSError, match="disk full"):
        write_parquet(tmp_path / "c.parquet", {"a": np.arange(3, dtype=np.int64)})
    from neurofabric.store import columns as colmod

    real, calls = colmod._table, []

    def dies_on_the_second_batch(*args, **kwargs):
        calls.append(1)
        if len(calls) > 2:  # the schema, the first batch, then death mid-stream
            raise OSError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(colmod, "_table", dies_on_the_second_batch)
    with pytest.raises(OSError, match="disk full"):
        write_columns(tmp_path / "c.arrow", {"a": np.arange(20)}, batches=[(0, 10), (10, 20)])
    assert len(calls) == 3
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_read_manifest_checks_any_file_name_and_version(tmp_path):
    from neurofabric.core.checkpoint import read_manifest, write_json

    write_json(tmp_path / "config.json", {"format": "x", "format_version": 3})
    assert read_manifest(tmp_path, format_name="x", version=3, filename="config.json")["format"]
    assert read_manifest(tmp_path, format_name="x", version=None, filename="config.json")
    with pytest.raises(CheckpointError, match="format_version 3"):
        read_manifest(tmp_path, format_name="x", version=2, filename="config.json")
    with pytest.raises(CheckpointError, match="not a y manifest"):
        read_manifest(tmp_path, format_name="y", version=3, filename="config.json")
    with pytest.raises(CheckpointError, match="no manifest.json"):
        read_manifest(tmp_path, format_name="x", version=3)
