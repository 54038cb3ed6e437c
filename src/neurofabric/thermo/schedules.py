"""Annealing schedules: the temperature of each generation.

A schedule is called as ``schedule(frac, t_prev, uphill_acceptance)`` with ``frac`` in [0, 1]
the fraction of the run done, ``t_prev`` the previous generation's temperature (None at the
start) and the fraction of uphill proposals (dE > 0) the previous generation accepted (None at
the start); it returns the next temperature (> 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from neurofabric.core.errors import ConfigError
from neurofabric.core.validation import (
    check_choice,
    check_int,
    check_interval,
    check_positive,
    check_probability,
)


def _check_range(t_start: float, t_end: float) -> None:
    check_positive("t_start", t_start)
    check_positive("t_end", t_end)


@dataclass(frozen=True)
class Constant:
    """A fixed temperature: sampling, not annealing (T = 1 samples the Bayesian posterior
    when the error term is the negative log-likelihood of the training set)."""

    temperature: float = 1.0

    def __post_init__(self) -> None:
        check_positive("temperature", self.temperature)

    def __call__(self, frac: float, t_prev: float | None, uphill: float | None) -> float:
        return self.temperature


@dataclass(frozen=True)
class Geometric:
    """T = t_start * (t_end / t_start) ** frac: the classic exponential cooling."""

    t_start: float = 1.0
    t_end: float = 1e-3

    def __post_init__(self) -> None:
        _check_range(self.t_start, self.t_end)

    def __call__(self, frac: float, t_prev: float | None, uphill: float | None) -> float:
        return self.t_start * (self.t_end / self.t_start) ** frac


@dataclass(frozen=True)
class Linear:
    """T = t_start + (t_end - t_start) * frac."""

    t_start: float = 1.0
    t_end: float = 1e-3

    def __post_init__(self) -> None:
        _check_range(self.t_start, self.t_end)

    def __call__(self, frac: float, t_prev: float | None, uphill: float | None) -> float:
        return self.t_start + (self.t_end - self.t_start) * frac


@dataclass(frozen=True)
class Adaptive:
    """Steer the uphill acceptance ratio chi (accepted / proposed moves with dE > 0) along a
    geometric path from ``chi_start`` to ``chi_end``: after each generation
    T <- T * (chi_target / chi) ** rate (each step at most x2 or /2), kept in [t_end, t_start].

    The uphill ratio is the classic measure of how hot an annealer runs (Kirkpatrick et al.
    1983 start at chi ~ 0.8); unlike the overall acceptance it is not held fixed by the step
    size adaptation, which targets all weight moves.
    """

    t_start: float = 1.0
    t_end: float = 1e-4
    chi_start: float = 0.5
    chi_end: float = 0.005
    rate: float = 0.5

    def __post_init__(self) -> None:
        _check_range(self.t_start, self.t_end)
        for name in ("chi_start", "chi_end"):
            if check_probability(name, getattr(self, name)) == 0.0:
                raise ConfigError(f"`{name}` must be > 0, got 0")
        check_positive("rate", self.rate)

    def __call__(self, frac: float, t_prev: float | None, uphill: float | None) -> float:
        if t_prev is None or uphill is None:
            return self.t_start
        target = self.chi_start * (self.chi_end / self.chi_start) ** frac
        factor = (target / max(uphill, 1e-6)) ** self.rate
        t = t_prev * min(2.0, max(0.5, factor))
        return min(self.t_start, max(self.t_end, t))


SCHEDULES = {"geometric": Geometric, "linear": Linear, "adaptive": Adaptive, "constant": Constant}


def make_schedule(name: str, **kwargs: float):
    """A schedule by name ("geometric", "linear", "adaptive", "constant")."""
    return SCHEDULES[check_choice("schedule", name, SCHEDULES)](**kwargs)


def ladder(n: int, ratio: float) -> list[float]:
    """Replica temperature multipliers 1, ratio, ratio^2, ... for parallel tempering."""
    n = check_int("replicas", n, min_value=1)
    check_interval("replica_ratio", ratio, 1.0, math.inf, low_open=True, high_open=True)
    return [ratio**k for k in range(n)]
