"""Figures saved atomically (matplotlib with the Agg backend: no display needed)."""

from __future__ import annotations

import os
from pathlib import Path

from neurofabric.core.checkpoint import atomic_file


def pyplot():
    """matplotlib.pyplot on the Agg backend (imported lazily)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | os.PathLike[str], *, dpi: int = 110) -> Path:
    """Write ``fig`` to ``path`` through a temporary sibling and a rename, then close it."""
    plt = pyplot()
    path = Path(path)
    try:
        with atomic_file(path) as tmp:
            fig.savefig(tmp, dpi=dpi)
    finally:
        plt.close(fig)
    return path


def plot_confusion(cm, path: str | os.PathLike[str], *, title: str = "", labels=None) -> Path:
    """Confusion matrix heatmap (rows true, columns predicted) with counts, as a PNG."""
    import numpy as np

    plt = pyplot()
    cm = np.asarray(cm)
    k = cm.shape[0]
    size = max(3.0, 0.45 * k + 2)
    fig, ax = plt.subplots(figsize=(size + 0.8, size))
    im = ax.imshow(cm, cmap="Blues")
    if k <= 30:
        for i in range(k):
            for j in range(k):
                ax.text(
                    j,
                    i,
                    str(cm[i, j]),
                    ha="center",
                    va="center",
                    fontsize=7 if k <= 12 else 5,
                    color="white" if cm[i, j] > cm.max() / 2 else "black",
                )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ticks = list(range(k))
    names = [str(x) for x in labels] if labels is not None else [str(i) for i in ticks]
    ax.set_xticks(ticks, names, rotation=90 if labels is not None else 0, fontsize=7)
    ax.set_yticks(ticks, names, fontsize=7)
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return save_figure(fig, path)
