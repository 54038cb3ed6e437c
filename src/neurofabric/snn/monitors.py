"""What a run records: spikes, sampled state, population rate; and the run's result."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from neurofabric.core.checkpoint import atomic_file
from neurofabric.core.errors import ConfigError
from neurofabric.core.validation import check_choice, check_indices, check_int

STATE_VARIABLES = ("v", "ge", "gi")


@dataclass(frozen=True)
class SpikeMonitor:
    """Record the spikes (index, time) of ``neurons`` (all when None)."""

    neurons: Any = None

    def mask(self, n: int) -> np.ndarray:
        m = np.zeros(n, np.bool_)
        if self.neurons is None:
            m[:] = True
            return m
        m[check_indices("SpikeMonitor.neurons", self.neurons, n)] = True
        return m


@dataclass(frozen=True)
class StateMonitor:
    """Record ``variables`` (of "v", "ge", "gi") of ``neurons`` every ``every`` steps."""

    neurons: Any = (0,)
    variables: tuple[str, ...] = ("v",)
    every: int = 1

    def indices(self, n: int) -> np.ndarray:
        idx = check_indices("StateMonitor.neurons", self.neurons, n, nonempty=True)
        for var in self.variables:
            check_choice("StateMonitor.variables", var, STATE_VARIABLES)
        check_int("StateMonitor.every", self.every, min_value=1)
        return idx


@dataclass(frozen=True)
class RateMonitor:
    """Record the population rate (spikes per neuron per second) in bins of ``bin_steps``."""

    bin_steps: int = 10


@dataclass
class RunResult:
    """The outcome of :meth:`SpikingNetwork.run` (``stopped``: its callback ended it early;
    ``duration`` and the records then cover the steps that were run)."""

    n_neurons: int
    n_synapses: int
    dt: float
    t_start: float
    duration: float
    n_spikes: int
    wall_s: float
    backend: str
    event_steps: int
    dense_steps: int
    spike_indices: np.ndarray = field(default_factory=lambda: np.empty(0, np.int32))
    spike_times: np.ndarray = field(default_factory=lambda: np.empty(0))
    state_times: np.ndarray = field(default_factory=lambda: np.empty(0))
    state: dict[str, np.ndarray] = field(default_factory=dict)
    state_neurons: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    rate_times: np.ndarray = field(default_factory=lambda: np.empty(0))
    rate_hz: np.ndarray = field(default_factory=lambda: np.empty(0))
    stopped: bool = False

    @property
    def mean_rate_hz(self) -> float:
        """Spikes per neuron per second of biological time."""
        if self.duration <= 0:
            return 0.0
        return self.n_spikes / self.n_neurons / self.duration

    @property
    def realtime_factor(self) -> float:
        """Wall seconds per biological second."""
        return self.wall_s / self.duration if self.duration > 0 else float("nan")

    def summary(self) -> dict[str, Any]:
        return {
            "neurons": self.n_neurons,
            "synapses": self.n_synapses,
            "duration_s": self.duration,
            "spikes": self.n_spikes,
            "mean_rate_hz": self.mean_rate_hz,
            "wall_s": self.wall_s,
            "wall_s_per_bio_s": self.realtime_factor,
            "backend": self.backend,
            "event_steps": self.event_steps,
            "dense_steps": self.dense_steps,
        }

    def spikes_table(self):  # -> pyarrow.Table
        import pyarrow as pa

        return pa.table(
            {
                "neuron": pa.array(self.spike_indices.astype(np.int32)),
                "time_s": pa.array(self.spike_times.astype(np.float64)),
            }
        )

    def export_spikes(self, path: str | os.PathLike[str]) -> None:
        """Write the spikes to ``.parquet`` or Arrow IPC (``.arrow``/``.feather``), atomically."""
        import pyarrow.feather as feather
        import pyarrow.parquet as pq

        path = os.fspath(path)
        if not path.endswith((".parquet", ".arrow", ".feather", ".ipc")):
            raise ConfigError(
                f"export path must end in .parquet, .arrow, .feather or .ipc, got {path!r}"
            )
        table = self.spikes_table()
        with atomic_file(path) as tmp:
            if path.endswith(".parquet"):
                pq.write_table(table, tmp)
            else:
                feather.write_feather(table, tmp, compression="uncompressed")


def bin_rate(
    counts: np.ndarray, n_neurons: int, dt: float, bin_steps: int
) -> tuple[np.ndarray, np.ndarray]:
    """Population rate in Hz per bin of ``bin_steps`` from per-step spike counts."""
    nb = len(counts) // bin_steps
    if nb == 0:
        return np.empty(0), np.empty(0)
    binned = counts[: nb * bin_steps].reshape(nb, bin_steps).sum(axis=1)
    times = (np.arange(nb) + 0.5) * bin_steps * dt
    return times, binned / (n_neurons * bin_steps * dt)
