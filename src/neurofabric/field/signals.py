"""Signals to fit a field to: images as (pixel centre, value) pairs, a 3-D signed distance.

>>> import numpy as np
>>> coords, values, shape = image_signal(np.zeros((2, 3)))
>>> coords[0].tolist(), shape
([0.1666666716337204, 0.25], (2, 3, 1))

Pixel (row, col) of an H x W image sits at x = (col + 0.5) / W, y = (row + 0.5) / H, so a
field queried at those coordinates reconstructs the image (``values.reshape(shape)``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from neurofabric.core.errors import ConfigError, ShapeError
from neurofabric.core.rng import make_rng
from neurofabric.core.validation import check_int

__all__ = [
    "image_signal",
    "psnr",
    "sample_image",
    "plane_points",
    "sdf_iou",
    "torus_sdf",
    "torus_signal",
    "torus_surface",
    "torus_values",
]

#: ITU-R BT.601 luma weights
_GREY = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def sample_image(name: str = "china.jpg", *, grey: bool = True) -> np.ndarray:
    """One of scikit-learn's sample images (``china.jpg``, ``flower.jpg``) as float32 in
    [0, 1]: (H, W) in grey (BT.601 luma), (H, W, 3) in colour."""
    try:
        from sklearn.datasets import load_sample_image
    except ImportError as exc:  # pragma: no cover - scikit-learn is a dev dependency
        raise ConfigError("sample_image needs scikit-learn: pip install scikit-learn") from exc
    img = load_sample_image(name).astype(np.float32) / 255.0
    return img @ _GREY if grey else img


def image_signal(image: Any) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int]]:
    """(coords (H*W, 2) float32 in [0, 1], values (H*W, C) float32, (H, W, C)) of an image
    (H, W) or (H, W, C)."""
    img = np.asarray(image, dtype=np.float32)
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3 or min(img.shape) < 1:
        raise ShapeError(f"an image must have shape (H, W) or (H, W, C), got {img.shape}")
    H, W, C = img.shape
    yy, xx = np.mgrid[0:H, 0:W]
    coords = np.stack([(xx.ravel() + 0.5) / W, (yy.ravel() + 0.5) / H], axis=1)
    return coords.astype(np.float32), img.reshape(-1, C), (H, W, C)


def psnr(pred: Any, target: Any) -> float:
    """10 log10(1 / MSE) in dB, predictions clipped to [0, 1] (signals in [0, 1])."""
    p = np.clip(np.asarray(pred, dtype=np.float64), 0.0, 1.0)
    mse = float(np.mean((p - np.asarray(target, dtype=np.float64)) ** 2))
    return 10.0 * np.log10(1.0 / max(mse, 1e-20))


def torus_sdf(
    n: int, *, major: float = 0.3, minor: float = 0.1, seed: Any = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points uniform in [0, 1]^3 and the exact signed distance (negative inside) to a
    torus centred at (0.5, 0.5, 0.5) in the z = 0.5 plane: sqrt((r_xy - major)^2 + z^2) - minor,
    with r_xy the distance to the centre in the plane."""
    x = make_rng(seed).random((n, 3)).astype(np.float32)
    return x, _torus_distance(x, major, minor).astype(np.float32)


def _torus_distance(x: np.ndarray, major: float, minor: float) -> np.ndarray:
    """(n, 1) float64 signed distances of points (n, 3) to :func:`torus_sdf`'s torus."""
    c = np.asarray(x, dtype=np.float64) - 0.5
    ring = np.hypot(c[:, 0], c[:, 1]) - major
    return (np.hypot(ring, c[:, 2]) - minor)[:, None]


def _torus_range(major: float, minor: float) -> tuple[float, float]:
    """The least and the largest signed distance to the torus over the unit cube: -minor on
    its core circle; at a cube corner (in-plane radius sqrt(0.5), height 0.5) or on the axis
    (radius 0), whichever is further from the core circle."""
    ring = max(abs(np.sqrt(0.5) - major), major)
    return -minor, float(np.hypot(ring, 0.5)) - minor


def torus_signal(
    n_train: int, n_eval: int, *, major: float = 0.3, minor: float = 0.1, seed: Any = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The torus SDF (:func:`torus_sdf`) as a signal in [0, 1], like an image's values:
    (train points (n_train, 3), their values, held-out points (n_eval, 3), their values),
    all float32, from one stream of ``n_train + n_eval`` uniform points.

    A value is ``(d - lo) / (hi - lo)``, with ``lo = -minor`` and ``hi`` the largest distance
    in the unit cube, so :func:`psnr` is the distance's PSNR over its range there and the
    surface sits at ``-lo / (hi - lo)`` (:func:`sdf_iou`)."""
    n_train = check_int("n_train", n_train, min_value=1)
    n_eval = check_int("n_eval", n_eval, min_value=1)
    if not 0.0 < minor < major:
        raise ConfigError(
            f"the torus needs 0 < minor < major, got major={major!r}, minor={minor!r}"
        )
    x = make_rng(seed).random((int(n_train) + int(n_eval), 3)).astype(np.float32)
    y = torus_values(x, major=major, minor=minor)
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def torus_values(points: Any, *, major: float = 0.3, minor: float = 0.1) -> np.ndarray:
    """:func:`torus_signal`'s values (n, 1) float32 at any points (n, 3) in the unit cube."""
    x = np.asarray(points, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != 3:
        raise ShapeError(f"`points` must have shape (n, 3), got {x.shape}")
    lo, hi = _torus_range(major, minor)
    return ((_torus_distance(x, major, minor) - lo) / (hi - lo)).astype(np.float32)


def plane_points(resolution: int, z: float = 0.5) -> np.ndarray:
    """(resolution^2, 3) float32 pixel centres of the plane at height ``z`` of the unit cube,
    row by row as :func:`image_signal` orders an image: a slice of a 3-D field to look at."""
    xy, _, _ = image_signal(np.zeros((resolution, resolution), np.float32))
    return np.column_stack([xy, np.full(len(xy), z, np.float32)])


def sdf_iou(pred: Any, target: Any, surface: float) -> float:
    """Intersection over union of the insides (values below ``surface``) of a predicted and a
    target SDF sampled at the same points: 1 when every point is on the right side."""
    p = np.asarray(pred, dtype=np.float64).ravel() < surface
    t = np.asarray(target, dtype=np.float64).ravel() < surface
    union = int(np.count_nonzero(p | t))
    return 1.0 if union == 0 else int(np.count_nonzero(p & t)) / union


def torus_surface(major: float = 0.3, minor: float = 0.1) -> float:
    """Where :func:`torus_signal`'s values cross the torus's surface (distance 0)."""
    lo, hi = _torus_range(major, minor)
    return -lo / (hi - lo)
