"""Frozen parameter sets of the spiking simulator, validated once, in SI units (s, V, ohm, A)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from neurofabric.core.errors import ConfigError
from neurofabric.core.validation import (
    broadcast_param,
    check_choice,
    check_nonnegative_array,
    check_positive,
)

SYNAPSE_MODELS = ("cuba", "coba", "delta")


def _as_json(value: Any) -> Any:
    arr = np.asarray(value)
    return float(arr) if arr.ndim == 0 else arr.astype(float).tolist()


@dataclass(frozen=True)
class LIFParams:
    """Leaky integrate-and-fire neuron. Each field is a scalar or one value per neuron.

    ``tau_m dV/dt = (V_rest - V) + R I_ext + synaptic input``; a spike when ``V > v_th``,
    then ``V = v_reset`` for ``t_ref`` seconds. ``t_lock`` (None: ``t_ref``) is a longer
    lockout: ``V`` integrates again after ``t_ref`` but the neuron cannot fire before
    ``t_lock`` has passed since its last spike (Diehl & Cook's published code behaves so).
    """

    v_rest: Any = -70e-3
    v_th: Any = -55e-3
    v_reset: Any = -70e-3
    tau_m: Any = 20e-3
    t_ref: Any = 2e-3
    r_m: Any = 10e6
    i_ext: Any = 0.0
    t_lock: Any = None

    def arrays(self, n: int) -> dict[str, np.ndarray]:
        """Per-neuron float64 arrays, validated."""
        out = {
            "v_rest": broadcast_param("v_rest", self.v_rest, n, unit="V"),
            "v_th": broadcast_param("v_th", self.v_th, n, unit="V"),
            "v_reset": broadcast_param("v_reset", self.v_reset, n, unit="V"),
            "tau_m": broadcast_param("tau_m", self.tau_m, n, positive=True, unit="s"),
            "r_m": broadcast_param("r_m", self.r_m, n, positive=True, unit="ohm"),
            "i_ext": broadcast_param("i_ext", self.i_ext, n, unit="A"),
        }
        t_ref = broadcast_param("t_ref", self.t_ref, n, unit="s")
        out["t_ref"] = check_nonnegative_array("t_ref", t_ref, "s")
        if self.t_lock is None:
            out["t_lock"] = t_ref
        else:
            t_lock = broadcast_param("t_lock", self.t_lock, n, unit="s")
            if np.any(t_lock < t_ref):
                raise ConfigError(
                    "`t_lock` must be >= `t_ref` (the lockout includes the refractory time), "
                    f"got t_lock={float(np.min(t_lock))} s; use None for no lockout"
                )
            out["t_lock"] = t_lock
        if np.any(out["v_reset"] >= out["v_th"]):
            i = int(np.argmax(out["v_reset"] >= out["v_th"]))
            raise ConfigError(
                f"`v_reset` must be below `v_th`, got v_reset={out['v_reset'][i]} >= "
                f"v_th={out['v_th'][i]} (neuron {i})"
            )
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            f.name: None if getattr(self, f.name) is None else _as_json(getattr(self, f.name))
            for f in fields(self)
        }


@dataclass(frozen=True)
class SynapseParams:
    """Synapse model shared by a network: exponential currents, conductances or jumps.

    ``cuba``: exponentially decaying currents, in volts (current times R).
    ``coba``: conductances relative to the leak conductance, reversal potentials ``e_exc``,
    ``e_inh``. ``delta``: each spike makes ``V`` jump by the weight (volts).
    """

    model: str = "cuba"
    tau_e: float = 5e-3
    tau_i: float = 10e-3
    e_exc: float = 0.0
    e_inh: float = -80e-3

    def __post_init__(self) -> None:
        check_choice("synapse model", self.model, SYNAPSE_MODELS)
        check_positive("tau_e", self.tau_e, "s")
        check_positive("tau_i", self.tau_i, "s")

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}
