"""Per-population statistics of a run's spikes: mean rates, irregularity (ISI CV) and
synchrony, as Potjans & Diesmann (2014) report them for the cortical microcircuit.

A population is a named range of neurons, ``(name, start, stop)``; the spikes come from a
:class:`RunResult` recorded with a ``SpikeMonitor`` (or any arrays of indices and times).

- **rate**: spikes per neuron per second over ``[t_start, t_stop)``, silent neurons included
  (as NEST's ``helpers.firing_rates``);
- **irregularity**: the coefficient of variation of the inter-spike intervals of each neuron
  with at least ``min_spikes`` spikes, averaged over those neurons (1 for a Poisson train,
  0 for a regular one);
- **synchrony**: the variance over the mean (Fano factor) of the population's spike count in
  bins of ``bin_s`` (3 ms), over at most ``max_neurons`` neurons (the first ones): 1 for
  independent Poisson neurons, about the number of neurons when they all fire together.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from neurofabric.core.errors import ConfigError, ShapeError
from neurofabric.core.validation import check_int, check_positive

__all__ = ["population_stats", "population_rates", "isi_cv", "synchrony", "select", "Group"]

Group = tuple[str, int, int]


def _spikes(result: Any) -> tuple[np.ndarray, np.ndarray]:
    idx = np.asarray(result.spike_indices, dtype=np.int64).reshape(-1)
    t = np.asarray(result.spike_times, dtype=np.float64).reshape(-1)
    if idx.shape != t.shape:
        raise ShapeError(f"spike_indices {idx.shape} and spike_times {t.shape} differ in length")
    if not len(t) and getattr(result, "n_spikes", 0) > 0:
        raise ConfigError("the run recorded no spikes: run it with monitors=[SpikeMonitor()]")
    return idx, t


def _window(result: Any, t_start: float | None, t_stop: float | None) -> tuple[float, float]:
    lo = float(getattr(result, "t_start", 0.0)) if t_start is None else float(t_start)
    if t_stop is None:
        t_stop = float(getattr(result, "t_start", 0.0)) + float(getattr(result, "duration", 0.0))
    if not t_stop > lo:
        raise ConfigError(f"the window [t_start, t_stop) = [{lo}, {t_stop}) is empty")
    return lo, float(t_stop)


def _check_groups(groups: Sequence[Group]) -> list[Group]:
    out = []
    for k, g in enumerate(groups):
        try:
            name, start, stop = g
        except (TypeError, ValueError):
            raise ConfigError(f"groups[{k}] must be (name, start, stop), got {g!r}") from None
        check_int(f"groups[{k}] start", start, min_value=0)
        check_int(f"groups[{k}] stop", stop, min_value=int(start) + 1)
        out.append((str(name), int(start), int(stop)))
    return out


def select(
    result: Any, groups: Sequence[Group], t_start: float | None, t_stop: float | None
) -> tuple[np.ndarray, np.ndarray, float, float, list[Group]]:
    """The checked inputs of every statistic here: (spike indices, spike times, window start,
    window stop, groups)."""
    idx, t = _spikes(result)
    lo, hi = _window(result, t_start, t_stop)
    return idx, t, lo, hi, _check_groups(groups)


def population_rates(
    result: Any, groups: Sequence[Group], *, t_start: float | None = None, t_stop=None
) -> dict[str, float]:
    """Mean rate (Hz) of each group over ``[t_start, t_stop)``, silent neurons included."""
    idx, t, lo, hi, groups = select(result, groups, t_start, t_stop)
    inside = (t >= lo) & (t < hi)
    out = {}
    for name, a, b in groups:
        n = int(np.count_nonzero(inside & (idx >= a) & (idx < b)))
        out[name] = n / (b - a) / (hi - lo)
    return out


def isi_cv(
    result: Any,
    groups: Sequence[Group],
    *,
    t_start: float | None = None,
    t_stop=None,
    min_spikes: int = 3,
) -> dict[str, float]:
    """Mean ISI coefficient of variation of each group's neurons with >= ``min_spikes``
    spikes in the window (NaN where none has)."""
    check_int("min_spikes", min_spikes, min_value=3)
    idx, t, lo, hi, groups = select(result, groups, t_start, t_stop)
    keep = (t >= lo) & (t < hi)
    idx, t = idx[keep], t[keep]
    order = np.lexsort((t, idx))  # by neuron, then time
    idx, t = idx[order], t[order]
    out = {}
    for name, a, b in groups:
        sel = (idx >= a) & (idx < b)
        gi, gt = idx[sel], t[sel]
        if not len(gi):
            out[name] = float("nan")
            continue
        starts = np.flatnonzero(np.r_[True, gi[1:] != gi[:-1]])
        counts = np.diff(np.r_[starts, len(gi)])
        isi = np.diff(gt)
        same = gi[1:] == gi[:-1]  # intervals within one neuron
        owner = np.searchsorted(starts, np.arange(1, len(gi)), side="right") - 1
        n_isi = np.bincount(owner[same], minlength=len(starts))
        s1 = np.bincount(owner[same], weights=isi[same], minlength=len(starts))
        s2 = np.bincount(owner[same], weights=isi[same] ** 2, minlength=len(starts))
        ok = counts >= min_spikes
        if not ok.any():
            out[name] = float("nan")
            continue
        mean = s1[ok] / n_isi[ok]
        var = np.maximum(s2[ok] / n_isi[ok] - mean**2, 0.0)
        out[name] = float(np.mean(np.sqrt(var) / mean))
    return out


def synchrony(
    result: Any,
    groups: Sequence[Group],
    *,
    t_start: float | None = None,
    t_stop=None,
    bin_s: float = 3e-3,
    max_neurons: int = 1000,
) -> dict[str, float]:
    """Variance / mean of each group's spike count per ``bin_s`` bin (its first
    ``max_neurons`` neurons); NaN for a group that did not spike."""
    check_positive("bin_s", bin_s)
    check_int("max_neurons", max_neurons, min_value=1)
    idx, t, lo, hi, groups = select(result, groups, t_start, t_stop)
    n_bins = int(np.floor((hi - lo) / bin_s + 1e-9))
    if n_bins < 2:
        raise ConfigError(
            f"the window ({hi - lo:g} s) holds fewer than 2 bins of bin_s {bin_s:g} s; "
            "use a longer window or a smaller bin_s"
        )
    out = {}
    for name, a, b in groups:
        sel = (idx >= a) & (idx < min(b, a + max_neurons)) & (t >= lo)
        k = np.floor((t[sel] - lo) / bin_s).astype(np.int64)
        counts = np.bincount(k[k < n_bins], minlength=n_bins).astype(np.float64)
        m = counts.mean()
        out[name] = float(counts.var() / m) if m > 0 else float("nan")
    return out


def population_stats(
    result: Any,
    groups: Sequence[Group],
    *,
    t_start: float | None = None,
    t_stop=None,
    bin_s: float = 3e-3,
    max_neurons: int = 1000,
) -> dict[str, dict[str, float]]:
    """``{group: {"rate_hz", "isi_cv", "synchrony"}}``: the three statistics above."""
    kw = {"t_start": t_start, "t_stop": t_stop}
    rates = population_rates(result, groups, **kw)
    cv = isi_cv(result, groups, **kw)
    sync = synchrony(result, groups, bin_s=bin_s, max_neurons=max_neurons, **kw)
    return {
        name: {"rate_hz": rates[name], "isi_cv": cv[name], "synchrony": sync[name]}
        for name in rates
    }
