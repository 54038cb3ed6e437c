"""MNIST and Fashion-MNIST: the four IDX files of each split.

>>> from neurofabric.data import load_mnist
>>> images, labels = load_mnist("train", data_dir="../shared/datasets")  # doctest: +SKIP
>>> images.shape, labels.shape                                           # doctest: +SKIP
((60000, 28, 28), (60000,))

The loader reads ``<data_dir>/<name>/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``; with
``download=True`` a missing file is fetched from the canonical mirror first. Every file is
checked for its structure and the canonical counts (60,000 / 10,000 images of 28 x 28,
labels 0..9), so a truncated or foreign file gives a ``DataError``, never a silent shortfall.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from neurofabric.core.errors import DataError
from neurofabric.core.validation import check_choice
from neurofabric.data.datadir import download, resolve_data_dir
from neurofabric.data.idx import read_idx


@dataclass(frozen=True)
class MnistSet:
    folder: str
    mirrors: tuple[str, ...]
    counts: tuple[int, int] = (60000, 10000)


MNIST_SETS = {
    "mnist": MnistSet(
        "mnist",
        ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
    ),
    "fashion_mnist": MnistSet(
        "fashion_mnist", ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
    ),
}
_PREFIX = {"train": "train", "test": "t10k"}


def _find(folder: Path, stem: str, spec: MnistSet, download_missing: bool) -> Path:
    for name in (f"{stem}.gz", stem):
        if (folder / name).is_file():
            return folder / name
    if not download_missing:
        raise DataError(
            f"{folder / (stem + '.gz')} not found; point data_dir (or "
            "NEUROFABRIC_DATA) at the folder that holds "
            f"{spec.folder}/, or pass download=True"
        )
    errors = []
    for mirror in spec.mirrors:
        try:
            return download(mirror + stem + ".gz", folder / f"{stem}.gz")
        except DataError as exc:
            errors.append(str(exc))
    raise DataError(f"could not download {stem}.gz: " + "; ".join(errors))


def load_mnist(
    split: str = "train",
    *,
    dataset: str = "mnist",
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = False,
    expected_count: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [n, 28, 28], labels uint8 [n]) of ``split`` ("train" or "test")."""
    check_choice("split", split, tuple(_PREFIX))
    check_choice("dataset", dataset, tuple(MNIST_SETS))
    spec = MNIST_SETS[dataset]
    folder = resolve_data_dir(data_dir, spec.folder)
    prefix = _PREFIX[split]
    img_path = _find(folder, f"{prefix}-images-idx3-ubyte", spec, download)
    lbl_path = _find(folder, f"{prefix}-labels-idx1-ubyte", spec, download)
    images, labels = read_idx(img_path), read_idx(lbl_path)
    want = expected_count if expected_count is not None else spec.counts[split == "test"]
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise DataError(
            f"{img_path}: expected uint8 images of 28 x 28, got {images.dtype} {images.shape}"
        )
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise DataError(
            f"{lbl_path}: expected a vector of uint8 labels, got {labels.dtype} {labels.shape}"
        )
    if len(images) != want or len(labels) != want:
        raise DataError(
            f"{img_path.parent}: {split} split should hold {want} images and "
            f"labels, found {len(images)} and {len(labels)}"
        )
    if labels.size and labels.max() > 9:
        bad = int(np.argmax(labels > 9))
        raise DataError(f"{lbl_path}: label {labels[bad]} at record {bad} is outside 0..9")
    return images, labels
