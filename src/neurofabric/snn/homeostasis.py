r"""Threshold homeostasis: the effective threshold is ``v_th + theta`` per neuron.

``AdaptiveThreshold`` (Diehl & Cook 2015): ``theta += theta_plus`` at each spike of the
neuron and decays exactly, ``theta <- theta exp(-dt / tau_theta)`` every step; ``frozen``
keeps theta fixed (evaluation). ``RateTargetThreshold``: every step ``theta += eta (s - r dt)``
with ``s`` = 1 if the neuron spiked, so theta settles where the neuron fires at ``target_hz``
(a spike raises it by ``eta``, silence lowers it by ``eta r dt`` per step); ``theta`` is kept
>= ``theta_min``. Updates follow the threshold test of the step, so a spike is judged by the
theta of the step before.

``neurons=(lo, hi)`` limits the rule to neurons ``lo..hi-1`` (e.g. the excitatory layer of
Diehl & Cook: their inhibitory neurons keep a fixed threshold); the default is all neurons.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from neurofabric.core.errors import ConfigError
from neurofabric.core.validation import (
    check_nonnegative,
    check_number,
    check_positive,
    check_span,
)


@dataclass(frozen=True)
class AdaptiveThreshold:
    """Spike-triggered threshold increase with slow exponential decay (volts, seconds)."""

    theta_plus: float = 0.05e-3
    tau_theta: float = 1e4
    frozen: bool = False
    neurons: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        check_nonnegative("theta_plus", self.theta_plus, "V")
        check_positive("tau_theta", self.tau_theta, "s")
        _check_neurons(self.neurons)

    def vector(self, dt: float, n_neurons: int) -> np.ndarray:
        """[kind 0, per-spike step, per-step decay, 0, 0, frozen, theta_min, lo, hi]."""
        return np.array(
            [
                0.0,
                self.theta_plus,
                math.exp(-dt / self.tau_theta),
                0.0,
                0.0,
                float(self.frozen),
                -np.inf,
                *_range(self.neurons, n_neurons),
            ]
        )


@dataclass(frozen=True)
class RateTargetThreshold:
    """Threshold adapted so each neuron fires at ``target_hz`` on average."""

    target_hz: float = 5.0
    eta: float = 0.1e-3
    theta_min: float = -10e-3
    frozen: bool = False
    neurons: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        check_nonnegative("target_hz", self.target_hz, "Hz")
        check_positive("eta", self.eta, "V")
        check_number("theta_min", self.theta_min, "V")
        _check_neurons(self.neurons)

    def vector(self, dt: float, n_neurons: int) -> np.ndarray:
        """[kind 1, eta, 1 (no decay), eta * target * dt, 0, frozen, theta_min, lo, hi]."""
        return np.array(
            [
                1.0,
                self.eta,
                1.0,
                self.eta * self.target_hz * dt,
                0.0,
                float(self.frozen),
                self.theta_min,
                *_range(self.neurons, n_neurons),
            ]
        )


def _check_neurons(neurons: tuple[int, int] | None) -> None:
    """None (all neurons) or a (start, stop) range."""
    if neurons is not None:
        check_span("neurons", neurons)


def _range(neurons: tuple[int, int] | None, n_neurons: int) -> tuple[float, float]:
    if neurons is None:
        return 0.0, float(n_neurons)
    if neurons[1] > n_neurons:
        raise ConfigError(
            f"homeostasis `neurons` {tuple(neurons)} reaches past the {n_neurons} neurons "
            "of the network"
        )
    return float(neurons[0]), float(neurons[1])


Homeostasis = AdaptiveThreshold | RateTargetThreshold
_KINDS = {"AdaptiveThreshold": AdaptiveThreshold, "RateTargetThreshold": RateTargetThreshold}


def homeostasis_to_json(h: Homeostasis) -> dict[str, Any]:
    return {"type": type(h).__name__, **asdict(h)}


def homeostasis_from_json(data: dict[str, Any]) -> Homeostasis:
    data = dict(data)
    name = data.pop("type", None)
    if name not in _KINDS:
        raise ConfigError(f"unknown homeostasis {name!r}; known: {sorted(_KINDS)}")
    if data.get("neurons") is not None:
        data["neurons"] = tuple(int(v) for v in data["neurons"])
    return _KINDS[name](**data)
