"""The training history of a ThermoClassifier as a PNG (matplotlib, Agg backend)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from neurofabric.core.errors import ConfigError
from neurofabric.core.figures import pyplot, save_figure
from neurofabric.thermo.thermo import History


def plot_history(
    history: History, path: str | os.PathLike[str], *, title: str | None = None
) -> Path:
    """Energy, accuracy, temperature, acceptance and sparsity per generation, in one figure."""
    if len(history) == 0:
        raise ConfigError("the history is empty: fit the model before plotting its history")
    plt = pyplot()
    x = history.column("proposals")
    fig, axes = plt.subplots(5, 1, figsize=(8, 11), sharex=True)
    axes[0].plot(x, history.column("energy"), label="E (total)")
    axes[0].plot(x, history.column("error"), label="error term")
    axes[0].set_ylabel("energy (nats)")
    axes[0].legend(loc="upper right")
    axes[1].plot(x, history.column("train_accuracy"), label="train (batch)")
    val = history.column("val_accuracy")
    if np.any(np.isfinite(val)):
        axes[1].plot(x, val, label="validation")
    axes[1].set_ylabel("accuracy")
    axes[1].legend(loc="lower right")
    axes[2].semilogy(x, history.column("temperature"))
    axes[2].set_ylabel("temperature")
    for name in ("weight", "birth", "death"):
        axes[3].plot(x, history.column(f"accept_{name}"), label=name)
    axes[3].plot(x, history.column("uphill_acceptance"), label="uphill (dE > 0)", ls="--")
    axes[3].set_ylabel("acceptance")
    axes[3].set_ylim(0, 1)
    axes[3].legend(loc="upper right", ncol=4, fontsize=8)
    axes[4].plot(x, history.column("sparsity"))
    axes[4].set_ylabel("sparsity")
    axes[4].set_ylim(0, 1)
    axes[4].set_xlabel("proposals")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path, dpi=100)
