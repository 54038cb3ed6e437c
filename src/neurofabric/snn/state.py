"""What a :class:`~neurofabric.snn.network.SpikingNetwork` holds beyond its parameters.

:class:`NetworkState` is everything that evolves in time (``step`` returns a new one);
:class:`Snapshot` is what a checkpoint restores: the synapses as stored, the learning state
and the dynamic state, handed to ``SpikingNetwork.build(saved=...)`` instead of generating
them. Neither knows about files: :mod:`neurofabric.snn.persistence` maps them to a checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from neurofabric.core.errors import ConfigError
from neurofabric.core.validation import check_choice

#: the arrays of a :class:`NetworkState`, in the order the kernels take them
STATE_ARRAYS = ("v", "ge", "gi", "refrac", "buf_e", "buf_i")


@dataclass
class NetworkState:
    """Everything that evolves in time; ``step`` returns a new one and never mutates its input.

    ``t`` is the step count; ``v``, ``ge``, ``gi`` the potentials and synaptic variables,
    ``refrac`` the refractory counters (steps), ``buf_e``/``buf_i`` the ring buffers of
    scheduled inputs (one row per delay slot), ``rng`` the stream of the input groups.
    """

    t: int
    v: np.ndarray
    ge: np.ndarray
    gi: np.ndarray
    refrac: np.ndarray
    buf_e: np.ndarray
    buf_i: np.ndarray
    rng: np.random.Generator

    def copy(self) -> NetworkState:
        rng = np.random.Generator(type(self.rng.bit_generator)())
        rng.bit_generator.state = self.rng.bit_generator.state
        return NetworkState(
            self.t,
            self.v.copy(),
            self.ge.copy(),
            self.gi.copy(),
            self.refrac.copy(),
            self.buf_e.copy(),
            self.buf_i.copy(),
            rng,
        )


@dataclass(frozen=True)
class Snapshot:
    """A built network's learned and dynamic contents, as :meth:`SpikingNetwork.snapshot`
    gives them and ``build(saved=...)`` takes them back.

    ``csr``/``input_csr``: the stored synapses (``indptr``, ``indices``, ``weights``,
    ``delays``, ``flags``, ``mask`` of :class:`~neurofabric.snn.connectivity.CSR`);
    ``theta``: adapted thresholds; ``traces``: the plasticity traces
    (:meth:`~neurofabric.snn.plasticity.PlasticState.arrays`); ``stp``: the short-term
    plasticity state by group and variable (``"rec.u"``, ``"ext.last"``...; groups without
    STP are absent); ``state``: the dynamic state.
    """

    csr: Mapping[str, np.ndarray]
    input_csr: Mapping[str, np.ndarray]
    theta: np.ndarray
    state: NetworkState
    traces: Mapping[str, np.ndarray] = field(default_factory=dict)
    stp: Mapping[str, np.ndarray] = field(default_factory=dict)


def initial_potentials(v_init: Any, v_rest: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Initial membrane potentials: ``"rest"`` (``v_rest``), a (low, high) pair (uniform
    draws from ``rng``) or one value per neuron."""
    n = len(v_rest)
    if isinstance(v_init, str):
        check_choice("v_init", v_init, ("rest",))
        return v_rest.copy()
    arr = np.asarray(v_init, dtype=np.float64)
    if arr.shape == (2,):
        return arr[0] + rng.random(n) * (arr[1] - arr[0])
    if arr.shape == (n,):
        return arr.copy()
    raise ConfigError(
        f"`v_init` must be 'rest', a (low, high) pair or {n} values, got shape {arr.shape}"
    )
