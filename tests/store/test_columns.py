"""Arrow column files: every row written exactly once, whatever the record batches."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neurofabric.core.errors import StorageError
from neurofabric.store import read_columns, write_columns


def _columns(n):
    return {"a": np.arange(n, dtype=np.int64), "b": np.arange(n, dtype=np.float32) * 0.5}


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(n=st.integers(0, 60), cuts=st.lists(st.integers(0, 60), max_size=6))
def test_contiguous_batches_round_trip_every_row_once(tmp_path, n, cuts):
    edges = [0, *sorted(c for c in cuts if c <= n), n]
    spans = list(zip(edges[:-1], edges[1:], strict=True))
    path = tmp_path / f"c{n}.arrow"
    write_columns(path, _columns(n), batches=spans)
    f = read_columns(path)
    assert f.num_batches == len(spans)
    for k, (start, stop) in enumerate(spans):
        np.testing.assert_array_equal(f.batch(k)["a"], np.arange(start, stop))
    np.testing.assert_array_equal(f.columns()["a"], np.arange(n))
    np.testing.assert_array_equal(f.columns()["b"], np.arange(n, dtype=np.float32) * 0.5)


@pytest.mark.parametrize(
    "spans,match",
    [
        ([(0, 4), (6, 10)], r"batches\[1\] = \(6, 10\) should start at 4"),  # a gap drops rows
        ([(0, 6), (4, 10)], r"batches\[1\] = \(4, 10\) should start at 6"),  # overlap duplicates
        ([(0, 6), (6, 4), (4, 10)], r"batches\[1\]"),  # a reversed range
        ([(0, 4), (4, 8)], r"must end at row 10"),
        ([(2, 10)], r"batches\[0\] = \(2, 10\) should start at 0"),
        ([], r"must end at row 10"),
        ([(0, "x")], r"batches\[0\]` must be a \(start, stop\) pair"),
    ],
)
def test_batches_that_drop_or_repeat_rows_are_refused(tmp_path, spans, match):
    path = tmp_path / "c.arrow"
    write_columns(path, _columns(3))
    before = path.read_bytes()
    with pytest.raises(StorageError, match=match):
        write_columns(path, _columns(10), batches=spans)
    assert path.read_bytes() == before  # the previous file is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["c.arrow"]  # no temporary left
