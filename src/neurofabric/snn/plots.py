"""Figures of a run, saved to files (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from neurofabric.core.errors import ConfigError
from neurofabric.core.figures import plot_confusion, pyplot, save_figure
from neurofabric.snn.monitors import RunResult, bin_rate


def _figure(rows: int, height: float = 2.6):
    plt = pyplot()
    fig, axes = plt.subplots(rows, 1, figsize=(9, height * rows), sharex=True, squeeze=False)
    return plt, fig, axes[:, 0]


def _save(plt, fig, path: str | os.PathLike[str]) -> Path:
    return save_figure(fig, path)


def plot_raster(
    result: RunResult,
    path: str | os.PathLike[str],
    *,
    max_neurons: int = 1000,
    bin_s: float = 1e-3,
    title: str | None = None,
) -> Path:
    """Raster (the first ``max_neurons`` neurons) above the population rate; saves a PNG."""
    if result.spike_times.size == 0 and result.n_spikes > 0:
        raise ConfigError("the run recorded no spikes: run it with monitors=[SpikeMonitor()]")
    plt, fig, (ax_r, ax_p) = _figure(2)
    keep = result.spike_indices < max_neurons
    ax_r.plot(result.spike_times[keep] * 1e3, result.spike_indices[keep], ",k", rasterized=True)
    ax_r.set_ylabel(
        "neuron"
        if result.n_neurons <= max_neurons
        else f"neuron (first {max_neurons} of {result.n_neurons})"
    )
    ax_r.set_title(
        title
        or f"{result.n_neurons} neurons, {result.n_spikes} spikes, {result.mean_rate_hz:.2f} Hz"
    )
    steps = max(1, int(round(bin_s / result.dt)))
    n_steps = int(round(result.duration / result.dt))
    counts = np.bincount(
        np.rint((result.spike_times - result.t_start) / result.dt).astype(np.int64),
        minlength=n_steps,
    )[:n_steps]
    t, rate = bin_rate(counts, result.n_neurons, result.dt, steps)
    ax_p.plot((t + result.t_start) * 1e3, rate, lw=0.8)
    ax_p.set_ylabel("rate (Hz)")
    ax_p.set_xlabel("time (ms)")
    fig.tight_layout()
    return _save(plt, fig, path)


def plot_raster_groups(
    result: RunResult,
    groups,
    path: str | os.PathLike[str],
    *,
    t_start: float | None = None,
    t_stop: float | None = None,
    max_per_group: int | None = None,
    colours: tuple[str, ...] = ("#595289", "#af143c"),
    title: str | None = None,
) -> Path:
    """Raster of named neuron groups ``(name, start, stop)``, stacked in the order given from
    the top (the cortical microcircuit's layers as in Potjans & Diesmann 2014, Fig. 6), in
    alternating ``colours``, each group's name at its centre; ``max_per_group``: its first
    neurons only. Saves a PNG."""
    from neurofabric.snn.analysis import select

    idx, t, lo, hi, groups = select(result, groups, t_start, t_stop)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 6))
    top, ticks, labels = 0, [], []
    for k, (name, a, b) in enumerate(groups):
        n = b - a if max_per_group is None else min(b - a, max_per_group)
        sel = (idx >= a) & (idx < a + n) & (t >= lo) & (t < hi)
        ax.plot(
            t[sel] * 1e3,
            -(top + idx[sel] - a),
            ".",
            ms=1.2,
            c=colours[k % len(colours)],
            rasterized=True,
        )
        ticks.append(-(top + n / 2))
        labels.append(name)
        top += n
    ax.set_yticks(ticks, labels)
    ax.set_xlim(lo * 1e3, hi * 1e3)
    ax.set_ylim(-top, 1)
    ax.set_xlabel("time (ms)")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return _save(plt, fig, path)


def plot_voltage(
    result: RunResult, path: str | os.PathLike[str], *, v_th: float | None = None
) -> Path:
    """Membrane potential traces recorded by a StateMonitor; saves a PNG."""
    if "v" not in result.state:
        raise ConfigError("the run recorded no voltage: use StateMonitor(variables=('v',))")
    plt, fig, (ax,) = _figure(1, 3.2)
    for q, neuron in enumerate(result.state_neurons):
        ax.plot(
            result.state_times * 1e3,
            result.state["v"][:, q] * 1e3,
            lw=0.8,
            label=f"neuron {neuron}",
        )
    if v_th is not None:
        ax.axhline(v_th * 1e3, color="k", ls=":", lw=0.8, label="threshold")
    ax.set_xlabel("time (ms)")
    ax.set_ylabel("V (mV)")
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    return _save(plt, fig, path)


def plot_receptive_fields(
    weights: np.ndarray,
    path: str | os.PathLike[str],
    *,
    image_shape: tuple[int, int],
    labels: np.ndarray | None = None,
    max_neurons: int = 400,
) -> Path:
    """Grid of the input weights of each neuron drawn as an image (PNG)."""
    w = np.asarray(weights)[:max_neurons]
    n = len(w)
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    plt, fig, _ = _figure(1, 1)
    plt.close(fig)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 0.9, rows * 0.9), squeeze=False)
    for k, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if k < n:
            ax.imshow(w[k].reshape(image_shape), cmap="hot_r", interpolation="nearest")
            if labels is not None:
                ax.set_title(str(labels[k]), fontsize=6, pad=1)
    fig.tight_layout(pad=0.2)
    return _save(plt, fig, path)


__all__ = ["plot_confusion", "plot_raster", "plot_receptive_fields", "plot_voltage"]
