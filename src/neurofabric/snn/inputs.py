"""Input groups: sources of spikes that drive the network (Poisson or given arrays)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from neurofabric.core.errors import ConfigError, ShapeError
from neurofabric.core.validation import (
    check_array,
    check_indices,
    check_int,
    check_nonnegative_array,
)
from neurofabric.snn.kernels.layout import Poisson

MAX_SPIKES_PER_STEP = 500  # exp(-rate dt) must stay well inside double precision


@dataclass(frozen=True, eq=False)
class PoissonInput:
    """``n`` independent Poisson sources firing at ``rate`` Hz (scalar or one per source).

    Each step a source emits a Poisson-distributed number of spikes with mean ``rate * dt``
    (so a source may stand for many independent afferents, as in Brunel 2000). The counts are
    drawn inside the kernels from a counter-based stream keyed by (seed, group, step, source).
    """

    n: int
    rate: Any = 10.0

    def __post_init__(self) -> None:
        check_int("n", self.n, min_value=1)
        rate = check_nonnegative_array("PoissonInput.rate", self.rate, "Hz")
        if rate.ndim not in (0, 1) or (rate.ndim == 1 and rate.shape != (self.n,)):
            raise ShapeError(
                f"`PoissonInput.rate` must be a scalar or have shape ({self.n},), got {rate.shape}"
            )

    def validate(self, dt: float) -> None:
        top = float(np.max(self.rate))
        if top * dt > MAX_SPIKES_PER_STEP:
            raise ConfigError(
                f"PoissonInput `rate` * dt must be <= {MAX_SPIKES_PER_STEP} spikes per step, "
                f"got {top} Hz with dt={dt} s; lower the rate or dt, or use more sources"
            )

    def expected_counts(self, dt: float) -> np.ndarray:
        """Mean spikes per step of each source (``rate * dt``), float64."""
        return np.broadcast_to(np.asarray(self.rate, dtype=np.float64) * dt, (self.n,)).copy()

    def to_json(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        rate = np.asarray(self.rate, dtype=np.float64)
        if rate.ndim == 0:
            return {"type": "PoissonInput", "n": self.n, "rate": float(rate)}, {}
        return {"type": "PoissonInput", "n": self.n, "rate": "array"}, {"rate": rate}


@dataclass(frozen=True, eq=False)
class SpikeArrayInput:
    """``n`` sources that fire at given times: ``indices[k]`` fires at ``times[k]`` seconds."""

    n: int
    indices: Any = field(default_factory=lambda: np.empty(0, np.int64))
    times: Any = field(default_factory=lambda: np.empty(0, np.float64))

    def __post_init__(self) -> None:
        check_int("n", self.n, min_value=1)
        check_array("SpikeArrayInput.indices", self.indices, shape=(None,))
        idx = check_indices("SpikeArrayInput.indices", self.indices, self.n)
        times = check_array("SpikeArrayInput.times", self.times, shape=(None,), dtype=np.float64)
        check_nonnegative_array("SpikeArrayInput.times", times, "s")
        if idx.shape != times.shape:
            raise ShapeError(
                f"SpikeArrayInput `indices` and `times` must have the same length, "
                f"got {idx.shape[0]} and {times.shape[0]}"
            )
        object.__setattr__(self, "indices", idx)
        object.__setattr__(self, "times", times)

    def validate(self, dt: float) -> None:
        return None

    def spikes(
        self, t0: int, n_steps: int, dt: float, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        steps = np.rint(self.times / dt).astype(np.int64)
        keep = (steps >= t0) & (steps < t0 + n_steps)
        order = np.lexsort((self.indices[keep], steps[keep]))
        return (steps[keep][order], self.indices[keep][order], np.ones(int(keep.sum()), np.int32))

    def to_json(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return (
            {"type": "SpikeArrayInput", "n": self.n},
            {"indices": self.indices, "times": self.times},
        )


InputGroup = PoissonInput | SpikeArrayInput


def input_from_json(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> InputGroup:
    kind = meta.get("type")
    if kind == "PoissonInput":
        rate = arrays["rate"] if meta.get("rate") == "array" else meta["rate"]
        return PoissonInput(n=meta["n"], rate=rate)
    if kind == "SpikeArrayInput":
        return SpikeArrayInput(n=meta["n"], indices=arrays["indices"], times=arrays["times"])
    raise ConfigError(f"unknown input group type {kind!r}")


def merge_input_spikes(
    groups: list[tuple[InputGroup, int]], t0: int, n_steps: int, dt: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Step pointers, global source indices and spike counts of all groups' events in
    [t0, t0 + n_steps), step-major, groups in the order they were added."""
    all_steps, all_idx, all_cnt = [], [], []
    for group, offset in groups:
        if isinstance(group, PoissonInput):
            continue  # drawn inside the kernels
        s, i, c = group.spikes(t0, n_steps, dt, rng)
        all_steps.append(s - t0)
        all_idx.append(i + offset)
        all_cnt.append(c)
    if not all_steps:
        return np.zeros(n_steps + 1, np.int64), np.empty(0, np.int64), np.empty(0, np.int32)
    steps = np.concatenate(all_steps)
    idx = np.concatenate(all_idx)
    cnt = np.concatenate(all_cnt)
    if len(groups) > 1:
        order = np.argsort(steps, kind="stable")
        steps, idx, cnt = steps[order], idx[order], cnt[order]
    ptr = np.zeros(n_steps + 1, np.int64)
    np.cumsum(np.bincount(steps, minlength=n_steps), out=ptr[1:])
    return ptr, idx, cnt


def poisson_table(
    inputs: dict[str, InputGroup], offsets: dict[str, int], seed: int, dt: float
) -> Poisson:
    """Kernel table of the Poisson groups (first global source, first rate entry, size,
    stream key, mean count per step, its exp(-.))."""
    from neurofabric.snn.connectivity import projection_key

    first, start, size, keys, lam = [], [], [], [], []
    at = 0
    for index, (name, group) in enumerate(inputs.items()):
        if isinstance(group, PoissonInput):
            first.append(offsets[name])
            start.append(at)
            size.append(group.n)
            keys.append(projection_key((seed >> 32) ^ 0x5BD1E995, 1_000_000 + index))
            lam.append(group.expected_counts(dt))
            at += group.n
    lam_all = np.concatenate(lam) if lam else np.empty(0)
    ints = [np.array(x, np.int64) for x in (first, start, size, keys)]
    return Poisson(*ints, lam_all, np.exp(-lam_all))


def empty_poisson() -> Poisson:
    """The table without Poisson groups."""
    empty = [np.empty(0, np.int64)] * 4
    return Poisson(*empty, np.empty(0), np.empty(0))
