"""Tests added for mutants that survived mutation testing (docs/testing.md): each checks an
invariant or a reference the earlier suite left open."""

import numpy as np
import pytest

from neurofabric.field import DemandPagedField, HashGridSpec, TierConfig

SPEC = HashGridSpec(
    n_dims=2, n_levels=4, n_features=2, log2_table=10, base_resolution=4, per_level_scale=1.5
)


def _field(path, **kwargs):
    return DemandPagedField.create(
        path, spec=SPEC, hidden=(8, 8), seed=0, logical_bytes=1 << 30, shard_bytes=1 << 24, **kwargs
    )


def test_one_point_and_a_batch_of_n_dims_points_are_queried_like_rows(tmp_path):
    # (D,) is one point; (D, D) is D points, not one point with a batch axis
    pts = np.random.default_rng(0).random((2, 2)).astype(np.float32)
    with _field(tmp_path / "f") as field:
        for _ in range(20):
            field.learn(pts, [[1.0], [-1.0]], lr=0.1)
        rows = np.concatenate([field.query(pts[i : i + 1]) for i in range(2)])
        assert abs(rows[0, 0] - rows[1, 0]) > 0.1  # the two points differ
        np.testing.assert_allclose(field.query(pts), rows, rtol=1e-6)
        np.testing.assert_allclose(field.query(pts[0]), rows[:1], rtol=1e-6)


def test_the_tier_config_and_prefetcher_reach_the_pages(tmp_path):
    tiers = TierConfig(dram_pages=64, cxl_pages=8)
    x = np.random.default_rng(1).random((64, 2)).astype(np.float32)
    with _field(tmp_path / "f", tiers=tiers, prefetcher="stride") as field:
        assert field.pages.config == tiers
        field.query(x)
        summary = field.stats()["prefetch"]
        assert summary["prefetcher"] == "stride"
        assert summary["accesses"] > 0  # every first touch of a page is a miss it sees
    with DemandPagedField.open(tmp_path / "f", tiers=tiers, prefetcher="markov") as again:
        assert again.pages.config == tiers
        again.query(x)
        assert again.stats()["prefetch"]["accesses"] > 0


def test_latency_summary_and_layer_loads_match_their_definitions(tmp_path):
    x = np.random.default_rng(2).random((8, 2)).astype(np.float32)
    with _field(tmp_path / "f") as field:
        for i in range(8):
            field.query(x[i : i + 1])
        lat = np.asarray(field.latencies) * 1e6
        summary = field.latency_summary()
        for q in (50, 95, 99):
            assert summary[f"p{q}_us"] == np.percentile(lat, q)
        assert summary["mean_us"] == lat.mean() and summary["queries"] == 8
        # the decoder's layers are paged in once and then served from the layer cache
        assert field.stats()["decoder_layers"]["loads"] == len(field.layers) == 3


def test_latency_histogram_bins_the_recorded_latencies_log_spaced(tmp_path):
    x = np.random.default_rng(3).random((8, 2)).astype(np.float32)
    with _field(tmp_path / "f") as field:
        counts, edges = field.latency_histogram()
        assert counts.size == 0 and edges.size == 0  # nothing recorded yet
        for i in range(8):
            field.query(x[i : i + 1])
        lat = np.asarray(field.latencies) * 1e6
        counts, edges = field.latency_histogram(bins=5)
        assert len(counts) == 5 and len(edges) == 6
        assert edges[0] == pytest.approx(lat.min(), rel=1e-12) and edges[-1] > lat.max()
        np.testing.assert_allclose(np.diff(np.log(edges)), np.log(edges[-1] / edges[0]) / 5)
        # three latencies a decade apart, two bins: the edges are 1, sqrt(1 * 100.1) and
        # 100.1 us, so 1 and 10 us fall in the first bin and 100 us in the second
        field.latencies.clear()
        field.latencies.extend([1e-6, 1e-5, 1e-4])
        counts, edges = field.latency_histogram(bins=2)
        np.testing.assert_allclose(edges, [1.0, np.sqrt(100.1), 100.1])
        assert counts.tolist() == [2, 1]


def test_latency_histogram_keeps_the_fastest_query(tmp_path):
    with _field(tmp_path / "f") as field:
        field.latencies.extend([5e-6, 1e-3])
        counts, _ = field.latency_histogram()
        assert counts.sum() == 2
