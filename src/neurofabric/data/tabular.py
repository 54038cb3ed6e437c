"""Small tabular datasets as (X_train, X_test, y_train, y_test) float arrays."""

from __future__ import annotations

import os

import numpy as np

from neurofabric.core.errors import BackendUnavailableError
from neurofabric.core.validation import check_choice
from neurofabric.data.mnist import load_mnist

CLASSIFICATION_SETS = ("digits", "mnist", "fashion_mnist")


def load_digits_split(*, test_size: float = 0.25, seed: int = 0):
    """scikit-learn's 8x8 digits (1,797 images, shipped with scikit-learn), pixels scaled to
    [0, 1], split stratified with ``seed`` (the split every digits figure here uses)."""
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as exc:  # pragma: no cover - scikit-learn is in the dev extra
        raise BackendUnavailableError(
            "the digits dataset ships with scikit-learn: `pip install scikit-learn`"
        ) from exc
    X, y = load_digits(return_X_y=True)
    return train_test_split(X / 16.0, y, test_size=test_size, random_state=seed, stratify=y)


def load_classification(
    dataset: str,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    n_train: int | None = None,
    n_test: int | None = None,
):
    """(X_train, X_test, y_train, y_test) of "digits", "mnist" or "fashion_mnist" with pixels
    in [0, 1] and images flattened; MNIST-style sets use their canonical train/test split."""
    check_choice("dataset", dataset, CLASSIFICATION_SETS)
    if dataset == "digits":
        Xtr, Xte, ytr, yte = load_digits_split()
    else:
        xtr, ytr = load_mnist("train", dataset=dataset, data_dir=data_dir)
        xte, yte = load_mnist("test", dataset=dataset, data_dir=data_dir)
        Xtr = xtr.reshape(len(xtr), -1).astype(np.float64) / 255.0
        Xte = xte.reshape(len(xte), -1).astype(np.float64) / 255.0
        ytr, yte = ytr.astype(np.int64), yte.astype(np.int64)
    return Xtr[:n_train], Xte[:n_test], ytr[:n_train], yte[:n_test]
