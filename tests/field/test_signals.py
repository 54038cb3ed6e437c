"""The signals fields are fitted to: the torus SDF scaled to [0, 1], its IoU, the slice."""

import numpy as np
import pytest

from neurofabric.core.errors import ConfigError, ShapeError
from neurofabric.field.signals import (
    image_signal,
    plane_points,
    psnr,
    sdf_iou,
    torus_sdf,
    torus_signal,
    torus_surface,
    torus_values,
)


def test_torus_values_are_the_distance_scaled_over_the_cube():
    """Known points: on the core circle (distance -minor, value 0), on the surface (value at
    torus_surface()), at a cube corner (the largest distance in the cube, value 1) and at the
    centre (distance major - minor)."""
    major, minor = 0.3, 0.1
    corner_d = np.hypot(np.sqrt(0.5) - major, 0.5) - minor  # 0.5448: the cube's farthest point
    span = corner_d + minor
    pts = np.array(
        [
            [0.5 + major, 0.5, 0.5],  # core circle
            [0.5 + major + minor, 0.5, 0.5],  # outer equator of the tube: the surface
            [0.0, 0.0, 0.0],  # a corner
            [1.0, 1.0, 1.0],  # the opposite corner
            [0.5, 0.5, 0.5],  # the centre: major - minor from the tube
        ]
    )
    v = torus_values(pts, major=major, minor=minor)[:, 0]
    want = np.array([0.0, minor, span, span, major]) / span  # (d + minor) / span
    np.testing.assert_allclose(v, want, rtol=0, atol=1e-6)
    assert torus_surface(major, minor) == pytest.approx(minor / span)
    # every point of the cube maps into [0, 1]: the range is the cube's
    x = np.random.default_rng(0).random((200_000, 3))
    v = torus_values(x)
    assert 0.0 <= v.min() and v.max() <= 1.0 and v.max() > 0.97


def test_torus_signal_splits_one_stream_and_matches_the_sdf():
    x, y, xe, ye = torus_signal(1000, 200, seed=3)
    assert x.shape == (1000, 3) and y.shape == (1000, 1) and xe.shape == (200, 3)
    assert x.dtype == y.dtype == np.float32
    pts, d = torus_sdf(1200, seed=3)  # the same stream of points, as distances
    np.testing.assert_array_equal(np.vstack([x, xe]), pts)
    span = np.hypot(np.sqrt(0.5) - 0.3, 0.5)  # (corner distance) + minor
    np.testing.assert_allclose(np.vstack([y, ye]), (d + 0.1) / span, atol=1e-6)
    # inside the tube exactly where the distance is negative
    assert np.array_equal(np.vstack([y, ye])[:, 0] < torus_surface(), d[:, 0] < 0)
    with pytest.raises(ConfigError, match="n_eval"):
        torus_signal(10, 0)
    with pytest.raises(ConfigError, match="minor < major"):
        torus_signal(10, 10, major=0.1, minor=0.2)
    with pytest.raises(ShapeError, match=r"\(n, 3\)"):
        torus_values(np.zeros((4, 2)))


def test_sdf_iou_counts_the_insides():
    target = np.array([0.0, 0.1, 0.2, 0.5, 0.9])  # inside below 0.3: the first three
    assert sdf_iou(target, target, 0.3) == 1.0
    pred = np.array([0.0, 0.4, 0.2, 0.1, 0.9])  # inside: 0, 2, 3; both: 0, 2; either: 0-3
    assert sdf_iou(pred, target, 0.3) == pytest.approx(2 / 4)
    assert sdf_iou(np.ones(5), target, 0.3) == 0.0  # nothing predicted inside
    assert sdf_iou(np.ones(5), np.ones(5), 0.3) == 1.0  # nothing inside anywhere: no error


def test_plane_points_are_the_image_grid_at_a_height():
    p = plane_points(4, z=0.25)
    xy, _, _ = image_signal(np.zeros((4, 4)))
    assert p.shape == (16, 3) and p.dtype == np.float32
    np.testing.assert_array_equal(p[:, :2], xy)
    assert np.all(p[:, 2] == 0.25)
    # a slice of the torus through its plane shows the ring: inside at the core circle only
    v = torus_values(plane_points(64)).reshape(64, 64)
    assert v[32, 32 + 19] < torus_surface() < v[32, 32]  # near r = 0.3: inside; centre: out
    assert psnr(v, v) == pytest.approx(200.0)  # the MSE floor of psnr, 1e-20
