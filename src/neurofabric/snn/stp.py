r"""Tsodyks-Markram short-term plasticity (Tsodyks, Pawelzik & Markram 1998, Neural Comput.
10:821; Markram, Wang & Tsodyks 1998, PNAS 95:5323).

Each presynaptic neuron of a projection group carries a utilization ``u`` and a fraction of
available resources ``x``. Between its spikes they evolve exactly (no time stepping)::

    u(t) = u(t0) exp(-(t - t0) / tau_facil)            (u = 0 at rest; tau_facil = 0: u -> 0)
    x(t) = 1 - (1 - x(t0)) exp(-(t - t0) / tau_rec)

and at each spike, in this order: 1. ``u <- u + U (1 - u)`` (facilitation), 2. release
``r = u x``, 3. ``x <- x - r`` (depression), 4. the spike is transmitted with efficacy
``w r`` (``mode="release"``) or ``w + k w r`` (``mode="modulate"``: weights kept, efficacy
modulated, the post-training mode). For a regular train of period T the release converges to

    u* = U / (1 - (1 - U) e^{-T/tau_facil}),   x* = (1 - e^{-T/tau_rec}) / (1 - (1 - u*) e^{-T/tau_rec}),
    r* = u* x*.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import numpy as np

from neurofabric.core.errors import ConfigError
from neurofabric.core.validation import (
    check_choice,
    check_nonnegative,
    check_positive,
    check_probability,
)
from neurofabric.snn.kernels.layout import STP, no_stp


@dataclass(frozen=True)
class ShortTermPlasticity:
    """Tsodyks-Markram depression (tau_rec) and facilitation (tau_facil) per source."""

    U: float = 0.5
    tau_rec: float = 0.8
    tau_facil: float = 0.0
    mode: str = "release"
    k: float = 1.0

    def __post_init__(self) -> None:
        check_probability("U", self.U)
        check_positive("U", self.U)  # in (0, 1]
        check_nonnegative("tau_rec", self.tau_rec, "s")
        check_nonnegative("tau_facil", self.tau_facil, "s")
        check_choice("mode", self.mode, ("release", "modulate"))
        check_nonnegative("k", self.k)

    def vector(self) -> np.ndarray:
        """[U, tau_rec, tau_facil, mode (0 release, 1 modulate), k] for the kernels."""
        return np.array(
            [self.U, self.tau_rec, self.tau_facil, 1.0 if self.mode == "modulate" else 0.0, self.k]
        )

    def steady_state_release(self, rate_hz: float) -> float:
        """The analytic release ``r*`` of a regular train at ``rate_hz``."""
        period = 1.0 / rate_hz
        ef = math.exp(-period / self.tau_facil) if self.tau_facil > 0 else 0.0
        er = math.exp(-period / self.tau_rec) if self.tau_rec > 0 else 0.0
        u = self.U / (1.0 - (1.0 - self.U) * ef)
        x = (1.0 - er) / (1.0 - (1.0 - u) * er)
        return u * x


def stp_to_json(stp: ShortTermPlasticity) -> dict[str, Any]:
    return asdict(stp)


def stp_state(stp: ShortTermPlasticity | None, n_sources: int) -> STP:
    """(parameters, u, x, last spike step) arrays; empty when the group has no STP."""
    if stp is None:
        return no_stp()
    return STP(
        stp.vector(), np.zeros(n_sources), np.ones(n_sources), np.full(n_sources, -1, np.int64)
    )


class STPState(NamedTuple):
    """The short-term plasticity state of the recurrent and the input group."""

    rec: STP
    ext: STP

    def arrays(self) -> dict[str, np.ndarray]:
        """``{"rec.u": ..., "ext.last": ...}`` of the groups with STP."""
        return {
            f"{group}.{name}": getattr(side, name)
            for group, side in (("rec", self.rec), ("ext", self.ext))
            if side.prm.size
            for name in _VARIABLES
        }

    def restore(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Copy saved variables (as :meth:`arrays` names them) into the state."""
        for group, side in (("rec", self.rec), ("ext", self.ext)):
            for name in _VARIABLES:
                if f"{group}.{name}" in arrays:
                    getattr(side, name)[:] = arrays[f"{group}.{name}"]


_VARIABLES = ("u", "x", "last")


def single_stp(projections: list[Any], what: str) -> ShortTermPlasticity | None:
    """The one STP of a synapse group; all its projections must share it (or none has it)."""
    stps = {id(p.stp): p.stp for p in projections if p.stp is not None}
    if len(stps) > 1 or (stps and any(p.stp is None for p in projections)):
        raise ConfigError(
            f"short-term plasticity applies to a whole source group: give all "
            f"{what} projections the same ShortTermPlasticity object, or none"
        )
    return next(iter(stps.values()), None)
