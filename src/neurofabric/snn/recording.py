"""The buffers a run records into (spike buffer, sampled state, spikes per step) and the
:class:`~neurofabric.snn.monitors.RunResult` assembled from them.

``SpikingNetwork.run`` advances in chunks of steps; a :class:`Recorder` hands the kernel its
:class:`~neurofabric.snn.kernels.layout.Monitors` for each call, drains the spike buffer when
the kernel asks, and keeps what the monitors asked for, so the result holds exactly the steps
that were run (fewer than asked when the run was stopped).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from neurofabric.core.errors import ConfigError
from neurofabric.snn.kernels.layout import (
    C_MONITORED,
    C_RECORD_EVERY,
    C_RECORDED,
    C_WRITTEN,
    Monitors,
)
from neurofabric.snn.monitors import (
    RateMonitor,
    RunResult,
    SpikeMonitor,
    StateMonitor,
    bin_rate,
)


def _ceil_to(t: int, every: int) -> int:
    """The first multiple of ``every`` at or after ``t`` (``t`` when ``every`` is 0)."""
    return -(-t // every) * every if every else t


def step_monitors(n: int, dtype: np.dtype, steps: int = 1, capacity: int | None = None) -> Monitors:
    """Buffers that record every spike of ``n`` neurons over calls of up to ``steps`` steps
    (``spk_t``/``spk_i`` hold ``capacity`` spikes, default ``n``: one step of all of them;
    the kernel returns early to be drained before they fill)."""
    cap = n if capacity is None else capacity
    return Monitors(
        np.ones(n, np.bool_),
        np.empty(cap, np.int64),
        np.empty(cap, np.int32),
        np.zeros(steps, np.int32),
        np.zeros(0, np.int64),
        np.zeros((0, 0), dtype),
        np.zeros((0, 0), dtype),
        np.zeros((0, 0), dtype),
        np.empty(n, np.int32),
        np.zeros(n, np.uint8),
    )


class Recorder:
    """What one run records, for ``n_steps`` steps from step ``t_start``."""

    def __init__(
        self, monitors: Sequence[Any], n: int, dtype: np.dtype, n_steps: int, t_start: int
    ) -> None:
        self.spike_mon = self.state_mon = self.rate_mon = None
        for m in reversed(monitors):  # the first of each kind counts
            if isinstance(m, SpikeMonitor):
                self.spike_mon = m
            elif isinstance(m, StateMonitor):
                self.state_mon = m
            elif isinstance(m, RateMonitor):
                self.rate_mon = m
            else:
                raise ConfigError(
                    f"unknown monitor {m!r}; use SpikeMonitor, StateMonitor or RateMonitor"
                )
        self.n, self.dtype, self.t_start = n, dtype, t_start
        self.mask = self.spike_mon.mask(n) if self.spike_mon else np.zeros(n, np.bool_)
        self.n_monitored = int(self.mask.sum())
        cap = max(4 * self.n_monitored, 1 << 16) if self.n_monitored else 0
        self.spk_t, self.spk_i = np.empty(cap, np.int64), np.empty(cap, np.int32)
        self.rec_idx = self.state_mon.indices(n) if self.state_mon else np.zeros(0, np.int64)
        self.every = self.state_mon.every if self.state_mon else 0
        self.counts = np.zeros(n_steps, np.int32)  # spikes per step
        self.spiked, self.flag = np.empty(n, np.int32), np.zeros(n, np.uint8)
        self._times: list[np.ndarray] = []
        self._indices: list[np.ndarray] = []
        self._samples: list[list[np.ndarray]] = []
        self._chunk: list[np.ndarray] = []

    def configure(self, counters: np.ndarray) -> None:
        """Write the sampling interval and the monitored count into the kernel's counters."""
        counters[C_RECORD_EVERY] = self.every
        counters[C_MONITORED] = self.n_monitored

    def begin_chunk(self, t: int, k: int, counters: np.ndarray) -> None:
        """Room for the state samples of steps ``t .. t + k - 1``."""
        every = self.every
        n_rows = len(range(_ceil_to(t, every), t + k, every)) if every else 0
        self._chunk = [np.zeros((n_rows, len(self.rec_idx)), self.dtype) for _ in range(3)]
        self._samples.append(self._chunk)
        counters[C_RECORDED] = 0

    def monitors(self, done: int) -> Monitors:
        """The kernel's buffers for a call that starts ``done`` steps into the run."""
        return Monitors(
            self.mask,
            self.spk_t,
            self.spk_i,
            self.counts[done:],
            self.rec_idx,
            *self._chunk,
            self.spiked,
            self.flag,
        )

    def drain(self, counters: np.ndarray) -> None:
        """Move the spikes in the buffer out (the kernel fills it again from the start)."""
        w = int(counters[C_WRITTEN])
        self._times.append(self.spk_t[:w].copy())
        self._indices.append(self.spk_i[:w].copy())
        counters[C_WRITTEN] = 0

    def fill(self, result: RunResult, steps: int, dt: float) -> RunResult:
        """Put the records of the first ``steps`` steps into ``result``."""
        t_start, every = self.t_start, self.every
        if self.spike_mon:
            result.spike_times = np.concatenate(self._times) * dt
            result.spike_indices = np.concatenate(self._indices)
        if self.state_mon:
            result.state_neurons = self.rec_idx
            result.state_times = np.arange(_ceil_to(t_start, every), t_start + steps, every) * dt
            for q, var in enumerate(("v", "ge", "gi")):
                if var in self.state_mon.variables:
                    result.state[var] = np.concatenate([s[q] for s in self._samples])
        if self.rate_mon:
            times, rate = bin_rate(self.counts[:steps], self.n, dt, self.rate_mon.bin_steps)
            result.rate_times, result.rate_hz = times + t_start * dt, rate
        return result
