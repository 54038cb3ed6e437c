"""Frozen parameter records of the thermodynamic trainer."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from neurofabric.core.errors import ConfigError
from neurofabric.core.validation import check_nonnegative
from neurofabric.thermo.kernels.common import MOVE_NAMES


@dataclass(frozen=True)
class Moves:
    """Probabilities of the five proposal kinds; they must sum to 1.

    ``weight`` perturbs one connection, ``bias`` one bias, ``birth`` grows a connection between
    a co-active unconnected pair, ``death`` prunes a near-zero connection, ``all`` moves every
    weight and bias by a small step at once (a full forward pass, so keep it rare).
    """

    weight: float = 0.86
    bias: float = 0.04
    birth: float = 0.05
    death: float = 0.05
    all: float = 0.0

    def __post_init__(self) -> None:
        values = self.as_array()
        for name in MOVE_NAMES:
            check_nonnegative(f"moves.{name}", getattr(self, name))
        total = float(values.sum())
        if abs(total - 1.0) > 1e-9:
            raise ConfigError(
                f"move probabilities must sum to 1, got {total:.6g} ({asdict(self)}); rescale them"
            )
        if (self.birth > 0) != (self.death > 0):
            raise ConfigError(
                "`birth` and `death` must both be > 0 or both 0: each is the other's reverse "
                f"move, so one alone is never accepted (got birth={self.birth}, death={self.death})"
            )

    def as_array(self) -> np.ndarray:
        return np.array([getattr(self, n) for n in MOVE_NAMES], dtype=np.float64)

    def cumulative(self) -> np.ndarray:
        c = np.cumsum(self.as_array())
        c[-1] = 1.0
        return c

    @classmethod
    def coerce(cls, value: Moves | dict | None) -> Moves:
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, dict):
            unknown = set(value) - set(MOVE_NAMES)
            if unknown:
                raise ConfigError(f"unknown move(s) {sorted(unknown)}; moves are {MOVE_NAMES}")
            return cls(**{n: float(value.get(n, 0.0)) for n in MOVE_NAMES})
        raise ConfigError(f"`moves` must be a Moves, a dict or None, got {type(value).__name__}")
