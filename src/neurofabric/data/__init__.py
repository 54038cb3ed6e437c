"""Dataset loaders: local copies first (the data dir), the canonical download code beside."""

from neurofabric.data.datadir import resolve_data_dir
from neurofabric.data.idx import read_idx
from neurofabric.data.mnist import MNIST_SETS, load_mnist
from neurofabric.data.tabular import (
    CLASSIFICATION_SETS,
    load_classification,
    load_digits_split,
)

__all__ = [
    "CLASSIFICATION_SETS",
    "MNIST_SETS",
    "load_classification",
    "load_digits_split",
    "load_mnist",
    "read_idx",
    "resolve_data_dir",
]
