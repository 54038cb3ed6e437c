"""Corrupt guard checkpoints (checksums fixed to match) load with CheckpointError or as a
model that predicts; never a crash."""

import shutil

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neurofabric.core.checkpoint import load_checkpoint
from neurofabric.core.errors import CheckpointError
from neurofabric.data import load_digits_split
from neurofabric.guard import GuardClassifier
from tests._corrupt import corrupted_copy, rewrite_array


@pytest.fixture(scope="module", params=["float32", "int8"])
def saved(request, tmp_path_factory):
    xtr, xte, ytr, _ = load_digits_split(seed=0)
    clf = GuardClassifier(rule="pa1", epochs=2, seed=0).fit(xtr / 16.0, ytr)
    folder = tmp_path_factory.mktemp("guard") / "model"
    clf.save(folder, weights=request.param)
    return folder, load_checkpoint(folder).arrays, xte[:50] / 16.0


def test_negative_fan_out_length_is_refused(saved, tmp_path):
    folder, arrays, _ = saved
    bad = tmp_path / "m"
    shutil.copytree(folder, bad)
    fan_len = np.array(arrays["fan_len"], dtype=np.int64)  # a file may hold any int type
    fan_len[0] += 5
    fan_len[1] -= 5  # the sum still matches: only the sign check catches it
    if fan_len[1] >= 0:
        fan_len[1] = -1
        fan_len[0] = int(arrays["fan_len"][0]) + int(arrays["fan_len"][1]) + 1
    rewrite_array(bad, "fan_len", fan_len)
    with pytest.raises(CheckpointError, match="negative fan-out lengths"):
        GuardClassifier.load(bad)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    which=st.integers(0, 10**6),
    choice=st.integers(0, 4),
    pos=st.integers(0, 10**6),
    value=st.sampled_from([-(2**31), -7, -1, 0, 1, 9, 10, 63, 64, 74, 2**32 - 1, 10**12]),
)
def test_corrupted_arrays_never_crash(saved, tmp_path_factory, which, choice, pos, value):
    folder, arrays, x = saved
    bad = corrupted_copy(
        folder, arrays, tmp_path_factory.mktemp("bad") / "m", which, choice, pos, value
    )
    try:
        clf = GuardClassifier.load(bad)
    except CheckpointError:
        return
    assert clf.predict(x).shape == (len(x),)
