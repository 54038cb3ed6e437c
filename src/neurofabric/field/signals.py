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

__all__ = ["image_signal", "psnr", "sample_image", "torus_sdf"]

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
    c = x.astype(np.float64) - 0.5
    ring = np.hypot(c[:, 0], c[:, 1]) - major
    d = np.hypot(ring, c[:, 2]) - minor
    return x, d[:, None].astype(np.float32)
