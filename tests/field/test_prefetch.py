"""Prefetchers on the workloads: precision and coverage against what each stream allows."""

import numpy as np
import pytest

from neurofabric.core.errors import ConfigError
from neurofabric.field.prefetch import (
    PREFETCHERS,
    HoeffdingTreePrefetcher,
    MarkovPrefetcher,
    PrefetchTracker,
    StridePrefetcher,
    make_prefetcher,
)
from neurofabric.field.workloads import make_workload


def run(prefetcher, pages, k=4):
    tracker = PrefetchTracker(prefetcher, k=k)
    for p in pages.tolist():
        tracker.access(p)
    return tracker


@pytest.mark.parametrize("name", sorted(PREFETCHERS))
def test_every_prefetcher_follows_one_sequential_stream(name):
    t = run(make_prefetcher(name), make_workload("sequential", 5000))
    assert t.precision >= 0.99 and t.coverage >= 0.99


def test_stride_detector_separates_interleaved_streams():
    pages = make_workload("interleaved", 20000, random_fraction=0.2, seed=1)
    t = run(StridePrefetcher(), pages)
    assert t.coverage >= 0.78  # the ceiling is 0.8: a fifth of the accesses are random
    assert t.coverage <= 0.81
    assert t.precision >= 0.95
    # a plain next-n read-ahead wastes half of what it issues on the same stream
    assert run(make_prefetcher("next-n"), pages).precision < 0.6


def test_hoeffding_tree_splits_on_a_strided_pattern():
    pages = np.cumsum([0] + [(1, 1, 5)[i % 3] for i in range(6000)])
    ht = HoeffdingTreePrefetcher()
    t = run(ht, pages, k=1)
    assert ht.model.height >= 1  # it split (the proof of concept's tree never did usefully)
    assert t.coverage > 0.99
    # an order-1 Markov chain over deltas cannot tell the two 1-steps apart
    assert run(MarkovPrefetcher(), pages, k=1).coverage < 0.7


def test_random_streams_are_not_covered_and_tracking_counts_add_up():
    t = run(StridePrefetcher(), make_workload("uniform", 3000, n_pages=1 << 30, seed=2))
    assert t.coverage < 0.01
    assert t.useful <= t.issued and t.covered <= t.accesses == 3000


def test_bad_names_are_refused():
    with pytest.raises(
        ConfigError, match=r"`prefetcher` must be one of \(.*'stride'.*\), got 'oracle'"
    ):
        make_prefetcher("oracle")
    with pytest.raises(
        ConfigError, match=r"`workload` must be one of \(.*'zipf'.*\), got 'bursty'"
    ):
        make_workload("bursty", 10)
