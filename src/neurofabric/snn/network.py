"""The public shell of the spiking simulator: :class:`SpikingNetwork`.

>>> from neurofabric.snn import SpikingNetwork, Random, SpikeMonitor
>>> net = SpikingNetwork(1000, seed=1)
>>> net = net.connect(Random(p=0.05), weight=0.5e-3)
>>> result = net.run(0.1, monitors=[SpikeMonitor()])
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from neurofabric.core import backend as backends
from neurofabric.core.config import get_config
from neurofabric.core.errors import ConfigError, NotFittedError
from neurofabric.core.rng import SeedLike, make_rng, seed_to_int
from neurofabric.core.validation import (
    check_choice,
    check_int,
    check_nonnegative,
    check_number,
    check_positive,
    check_probability,
)
from neurofabric.snn.connectivity import (
    ProceduralTable,
    Projection,
    build_csc,
    build_csr,
    empty_csr,
    procedural_table,
    projection_key,
)
from neurofabric.snn.homeostasis import (
    Homeostasis,
    homeostasis_to_json,
)
from neurofabric.snn.inputs import (
    InputGroup,
    PoissonInput,
    merge_input_spikes,
    poisson_table,
)
from neurofabric.snn.monitors import (
    RateMonitor,
    RunProgress,
    RunResult,
    SpikeMonitor,
    StateMonitor,
    bin_rate,
)
from neurofabric.snn.params import LIFParams, SynapseParams
from neurofabric.snn.plasticity import (
    PlasticState,
    Rule,
    check_plastic_projection,
    normalize_incoming,
    single_rule,
)
from neurofabric.snn.stp import ShortTermPlasticity, single_stp, stp_state
from neurofabric.snn.topology import Topology

log = logging.getLogger(__name__)

backends.register("snn", "reference", "neurofabric.snn.kernels.reference")
backends.register("snn", "numba", "neurofabric.snn.kernels.numba_cpu", requires="numba")

_MODEL_CODE = {"cuba": 0, "coba": 1, "delta": 2}
_CHUNK_STEPS = 2000


@dataclass
class NetworkState:
    """Everything that evolves in time; ``step`` returns a new one and never mutates its input."""

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


class SpikingNetwork:
    """A population of LIF neurons with recurrent projections and input groups.

    Parameters (all keyword-only but ``n_neurons``; times in seconds):
        neuron: :class:`LIFParams` (scalars or one value per neuron).
        synapse: :class:`SynapseParams` (``cuba``, ``coba`` or ``delta``).
        dt: time step; must be smaller than every time constant.
        storage: ``"csr"`` (materialized, <= 8 bytes/synapse plus 1-2 for per-synapse delays)
            or ``"procedural"`` (regenerated from the seed on each spike, O(neurons) memory).
        propagation: ``"auto"`` (event-driven push, dense pull when more than
            ``dense_threshold`` of the neurons spike in a step), ``"event"`` or ``"dense"``.
            The dense path needs a transposed index (8 more bytes per synapse), built only
            for ``auto``/``dense`` with CSR storage.
        max_delay: the longest synaptic delay the ring buffer holds.
        excitatory_ratio: the first ``round(ratio * n)`` neurons are excitatory (Dale's law).
        v_init: ``"rest"``, a (low, high) pair for uniform initial potentials, or an array.
        dtype: ``"float64"`` (default; bit-reproducible across backends) or ``"float32"``.
        backend: ``"auto"``, ``"numba"`` or ``"reference"``.
        seed: int or Generator; fixes connectivity, initial state and Poisson inputs.
        homeostasis: optional threshold adaptation (:mod:`neurofabric.snn.homeostasis`);
            the learned offsets are ``theta_`` (volts, one per neuron).
    """

    def __init__(
        self,
        n_neurons: int,
        *,
        neuron: LIFParams | None = None,
        synapse: SynapseParams | None = None,
        dt: float = 1e-4,
        storage: str = "csr",
        propagation: str = "auto",
        dense_threshold: float = 0.05,
        max_delay: float = 20e-3,
        excitatory_ratio: float = 0.8,
        v_init: Any = "rest",
        dtype: str = "float64",
        backend: str = "auto",
        seed: SeedLike = 0,
        homeostasis: Homeostasis | None = None,
    ) -> None:
        self.n_neurons = check_int("n_neurons", n_neurons, min_value=1)
        self.neuron = neuron if neuron is not None else LIFParams()
        self.synapse = synapse if synapse is not None else SynapseParams()
        self.dt = check_positive("dt", dt, "s")
        self.storage = check_choice("storage", storage, ("csr", "procedural"))
        self.propagation = check_choice("propagation", propagation, ("auto", "event", "dense"))
        self.dense_threshold = check_probability("dense_threshold", dense_threshold)
        self.max_delay = check_positive("max_delay", max_delay, "s")
        self.excitatory_ratio = check_probability("excitatory_ratio", excitatory_ratio)
        self.v_init = v_init
        self.dtype = check_choice("dtype", dtype, ("float64", "float32"))
        self.backend = backend
        self.seed = seed_to_int(seed)
        if homeostasis is not None and not hasattr(homeostasis, "vector"):
            raise ConfigError(
                f"`homeostasis` must be AdaptiveThreshold or RateTargetThreshold "
                f"from neurofabric.snn.homeostasis, got {homeostasis!r}"
            )
        self.homeostasis = homeostasis
        self.theta_ = np.zeros(self.n_neurons)
        self.learning = True
        self.projections: list[Projection] = []
        self.inputs: dict[str, InputGroup] = {}
        self._neuron_arrays = self.neuron.arrays(self.n_neurons)
        self._check_dt()
        self.max_delay_steps = int(round(self.max_delay / self.dt))
        if self.max_delay_steps < 1:
            raise ConfigError(f"`max_delay` must be >= dt ({self.dt} s), got {self.max_delay}")
        self._built = False

    # ------------------------------------------------------------------ structure
    @property
    def n_excitatory(self) -> int:
        return int(round(self.excitatory_ratio * self.n_neurons))

    def _check_dt(self) -> None:
        taus = {
            "tau_m": float(self._neuron_arrays["tau_m"].min()),
            "tau_e": self.synapse.tau_e,
            "tau_i": self.synapse.tau_i,
        }
        name, shortest = min(taus.items(), key=lambda kv: kv[1])
        if self.dt >= shortest:
            raise ConfigError(
                f"`dt` must be smaller than the shortest time constant "
                f"({name} = {shortest} s), got dt={self.dt} s; use dt <= "
                f"{shortest / 10:g}"
            )

    def add_input(self, name: str, group: InputGroup) -> SpikingNetwork:
        """Add an input group that projections can take as ``source=name``."""
        if not isinstance(name, str) or not name or name == "neurons":
            raise ConfigError(
                f"input `name` must be a non-empty string other than 'neurons', got {name!r}"
            )
        if name in self.inputs:
            raise ConfigError(f"an input named {name!r} exists already")
        group.validate(self.dt)
        self.inputs[name] = group
        self._built = False
        return self

    def _delay_steps(self, delay: float | tuple[float, float] | None) -> tuple[int, int]:
        if delay is None:
            return 1, 1
        lo, hi = (delay, delay) if np.ndim(delay) == 0 else tuple(delay)  # type: ignore[misc]
        lo = check_positive("delay", lo, "s")
        hi = check_positive("delay", hi, "s")
        steps = (int(round(lo / self.dt)), int(round(hi / self.dt)))
        if steps[0] < 1:
            raise ConfigError(f"`delay` must be >= dt ({self.dt} s), got {lo} s")
        if steps[1] > self.max_delay_steps:
            raise ConfigError(
                f"`delay` must be <= max_delay ({self.max_delay} s, the ring "
                f"buffer), got {hi} s; raise max_delay"
            )
        if steps[1] < steps[0]:
            raise ConfigError(f"`delay` range must be (low, high) with low <= high, got {delay}")
        return steps

    def connect(
        self,
        topology: Topology,
        *,
        weight: float,
        source: str = "neurons",
        weight_std: float = 0.0,
        inh_weight: float | None = None,
        inh_weight_std: float = 0.0,
        delay: float | tuple[float, float] | None = None,
        source_range: tuple[int, int] | None = None,
        target_range: tuple[int, int] | None = None,
        allow_self: bool = False,
        dale: bool | None = None,
        plasticity: Rule | None = None,
        stp: ShortTermPlasticity | None = None,
    ) -> SpikingNetwork:
        """Add a projection from ``source`` (``"neurons"`` or an input's name) to the neurons.

        ``weight`` and ``weight_std`` (volts for cuba/delta, relative conductance for coba)
        give the normal weight distribution; with Dale's principle (default for recurrent
        projections) the sign comes from the source: excitatory sources get ``|w|``,
        inhibitory ones ``-|w'|`` with ``w'`` drawn from ``inh_weight``/``inh_weight_std``
        (default: the same as the excitatory ones). ``delay`` is seconds, or a (low, high)
        range for uniformly drawn per-synapse delays; default one step. ``plasticity`` (a rule
        of :mod:`neurofabric.snn.plasticity`) makes the projection's weights learn; it needs
        CSR storage and excitatory (non-negative) weights within the rule's bounds. ``stp``
        (:class:`neurofabric.snn.stp.ShortTermPlasticity`) scales each spike of a source by
        its Tsodyks-Markram release; all projections from one source group share it.
        """
        if source == "neurons":
            n_src = self.n_neurons
        elif source in self.inputs:
            n_src = self.inputs[source].n
        else:
            raise ConfigError(
                f"`source` must be 'neurons' or one of the inputs "
                f"{sorted(self.inputs)}, got {source!r}; add it with add_input"
            )
        src = self._range("source_range", source_range, n_src)
        tgt = self._range("target_range", target_range, self.n_neurons)
        check_number("weight", weight)
        check_nonnegative("weight_std", weight_std)
        if inh_weight is not None:
            check_number("inh_weight", inh_weight)
        check_nonnegative("inh_weight_std", inh_weight_std)
        topology.check_sizes(src[1] - src[0], tgt[1] - tgt[0], allow_self)
        overlap = source == "neurons" and src[0] < tgt[1] and tgt[0] < src[1]
        if getattr(topology, "skip_partner", False) and overlap and src != tgt and not allow_self:
            raise ConfigError(
                "AllToAll(skip_partner=True) on overlapping but different source and target "
                f"ranges {src} and {tgt} would keep self connections; use equal or disjoint "
                "ranges, or pass allow_self=True"
            )
        use_dale = (source == "neurons") if dale is None else bool(dale)
        if plasticity is not None:
            check_plastic_projection(
                plasticity,
                self.storage,
                weight,
                weight_std,
                src,
                source,
                use_dale,
                self.n_excitatory,
            )
        self._check_stp(stp)
        proj = Projection(
            source=source,
            topology=topology,
            src_range=src,
            tgt_range=tgt,
            weight=float(weight),
            weight_std=float(weight_std),
            inh_weight=None if inh_weight is None else float(inh_weight),
            inh_weight_std=float(inh_weight_std),
            delay_steps=self._delay_steps(delay),
            allow_self=bool(allow_self),
            dale_split=self.n_excitatory
            if use_dale and source == "neurons"
            else (n_src if use_dale else -1),
            procedural=self.storage == "procedural",
            plasticity=plasticity,
            stp=stp,
        )
        self.projections.append(proj)
        self._built = False
        return self

    @staticmethod
    def _range(name: str, value: tuple[int, int] | None, n: int) -> tuple[int, int]:
        if value is None:
            return 0, n
        lo, hi = int(value[0]), int(value[1])
        if not 0 <= lo < hi <= n:
            raise ConfigError(
                f"`{name}` must be (start, stop) with 0 <= start < stop <= {n}, got {value!r}"
            )
        return lo, hi

    # ------------------------------------------------------------------ build
    def build(self) -> SpikingNetwork:
        """Resolve the backend, generate the synapses and the initial state."""
        t0 = time.perf_counter()
        self.backend_, self._k = backends.resolve("snn", self.backend)
        self._index_inputs()
        self._nparam, self._ref_steps, self._sc = self._neuron_constants()
        rec, ext = [], []
        for index, proj in enumerate(self.projections):
            key = projection_key(self.seed & 0xFFFFFFFF, index)
            if proj.source == "neurons" and not proj.procedural:
                rec.append((proj, key, 0))
            elif not proj.procedural:
                ext.append((proj, key, self._input_offsets[proj.source]))
        rec_rule = single_rule([p for p, _, _ in rec], "recurrent")
        ext_rule = single_rule([p for p, _, _ in ext], "input")
        with_csc = self.propagation != "event" or rec_rule is not None
        self.csr_ = build_csr(rec, self.n_neurons, self._k, with_csc) if rec else empty_csr()
        self.input_csr_ = (
            build_csr(ext, max(self.n_input_sources_, 1), self._k) if ext else empty_csr()
        )
        self.procedural_: ProceduralTable = self._procedural_table()
        self._make_plastic_state(rec_rule, ext_rule)
        self._make_stp_state()
        self.state_ = self.init_state()
        self.build_s_ = time.perf_counter() - t0
        self._built = True
        log.info(
            "built %d neurons, %d synapses (%s, %s backend) in %.2f s",
            self.n_neurons,
            self.n_synapses,
            self.storage,
            self.backend_,
            self.build_s_,
        )
        return self

    def _procedural_table(self) -> ProceduralTable:
        """Row parameters of the procedural projections (same keys as CSR mode)."""
        proc = []
        for index, proj in enumerate(self.projections):
            if proj.procedural:
                is_input = proj.source != "neurons"
                offset = self._input_offsets[proj.source] if is_input else 0
                proc.append((proj, projection_key(self.seed & 0xFFFFFFFF, index), offset, is_input))
        return procedural_table(proc)

    def _index_inputs(self) -> None:
        """Global source offsets of the input groups and the kernels' Poisson table."""
        self._input_offsets, offset = {}, 0
        for name, group in self.inputs.items():
            self._input_offsets[name] = offset
            offset += group.n
        self.n_input_sources_ = offset
        self._poisson, self._no_poisson = poisson_table(
            self.inputs, self._input_offsets, self.seed, self.dt
        )

    def _neuron_constants(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        a = self._neuron_arrays
        dt, syn = self.dt, self.synapse
        tau = a["tau_m"]
        dm = np.exp(-dt / tau)

        def coupling(tau_s: float) -> np.ndarray:
            ds = math.exp(-dt / tau_s)
            same = np.isclose(tau, tau_s, rtol=1e-12, atol=0.0)
            with np.errstate(divide="ignore", invalid="ignore"):
                c = tau_s / (tau_s - tau) * (ds - dm)
            return np.where(same, dt / tau * dm, c)

        v_inf = a["v_rest"] + a["r_m"] * a["i_ext"]
        nparam = np.stack(
            [v_inf, a["v_reset"], a["v_th"], dm, coupling(syn.tau_e), coupling(syn.tau_i), dt / tau]
        ).astype(self.dtype)
        nparam[2] += self.theta_.astype(nparam.dtype)  # adapted thresholds (homeostasis)
        hold = np.rint(a["t_ref"] / dt).astype(np.int64)
        lock = np.rint(a["t_lock"] / dt).astype(np.int64)
        if hold.max(initial=0) >= 65536 or lock.max(initial=0) >= 32768:
            raise ConfigError(
                f"`t_ref` must be < 65536 steps and `t_lock` < 32768 steps of dt={dt} s, got "
                f"{hold.max()} and {lock.max()} steps; use a larger dt or shorter times"
            )
        # packed: refractory steps in the low 16 bits, lockout steps above (0: none)
        ref_steps = (hold | np.where(lock > hold, lock, 0) << 16).astype(np.int32)
        sc = np.array(
            [
                math.exp(-dt / syn.tau_e),
                math.exp(-dt / syn.tau_i),
                syn.e_exc,
                syn.e_inh,
                -1.0 if syn.model == "coba" else 1.0,
                dt,
            ]
        )
        return nparam, ref_steps, sc

    def _threads(self) -> int:
        """Threads for the neuron update: the configured number (default: all cores) for
        networks of at least ``PARALLEL_MIN_NEURONS``, else one."""
        if self.backend_ != "numba":
            return 1
        from neurofabric.snn.kernels.numba_cpu import PARALLEL_MIN_NEURONS

        if self.n_neurons < PARALLEL_MIN_NEURONS:
            return 1
        import numba

        wanted = get_config().threads or numba.config.NUMBA_NUM_THREADS
        numba.set_num_threads(min(wanted, numba.config.NUMBA_NUM_THREADS))
        return numba.get_num_threads()

    def _make_plastic_state(self, rec_rule: Rule | None, ext_rule: Rule | None) -> None:
        ext_csc = (
            build_csc(self.input_csr_, self.n_neurons, self._k) if ext_rule is not None else None
        )
        self.plastic_ = PlasticState.create(
            rec_rule,
            self.csr_.mask,
            self.n_neurons,
            ext_rule,
            self.input_csr_.mask,
            max(self.n_input_sources_, 1),
            ext_csc,
        )

    def _homeo_args(self) -> tuple[np.ndarray, np.ndarray]:
        if self.homeostasis is None:
            return np.empty(0), self.theta_
        return self.homeostasis.vector(self.dt, self.n_neurons), self.theta_

    def _check_stp(self, stp: Any) -> None:
        if stp is not None and (not isinstance(stp, ShortTermPlasticity) or self.storage != "csr"):
            raise ConfigError(
                "`stp` must be a ShortTermPlasticity (or None) and needs storage='csr', "
                f"got {stp!r} with storage={self.storage!r}"
            )

    def set_stp(self, stp: ShortTermPlasticity | None, *, source: str = "inputs") -> None:
        """Give every projection of a source group (``"inputs"``: all input groups, or
        ``"neurons"``) this short-term plasticity, or remove it with ``None``; works after
        :meth:`build` too, which is how the post-training mode is switched on
        (``ShortTermPlasticity(mode="modulate")``: weights kept, efficacy ``w + k w r``).
        The utilization and resources of the group restart from rest."""
        check_choice("source", source, ("inputs", "neurons"))
        self._check_stp(stp)
        recurrent = source == "neurons"
        self.projections = [
            replace(p, stp=stp) if (p.source == "neurons") == recurrent else p
            for p in self.projections
        ]
        if hasattr(self, "stp_"):
            self._make_stp_state()

    def set_learning(self, enabled: bool) -> None:
        """Turn synaptic plasticity on or off (weights and traces stay as they are)."""
        self.learning = bool(enabled)

    def _frozen_plasticity(self) -> tuple[np.ndarray, ...]:
        from neurofabric.snn.plasticity import PlasticState

        return PlasticState.create(
            None, np.empty(0, np.uint8), self.n_neurons, None, np.empty(0, np.uint8), 1, None
        ).kernel_args()

    def freeze_homeostasis(self, frozen: bool = True) -> None:
        """Keep the adapted thresholds fixed (e.g. for evaluation) or let them adapt again."""
        if self.homeostasis is None:
            raise ConfigError("the network has no homeostasis to freeze")
        self.homeostasis = replace(self.homeostasis, frozen=bool(frozen))

    def set_input_rates(self, name: str, rate: Any) -> None:
        """New firing rates (Hz, scalar or one per source) of Poisson input ``name``."""
        group = self.inputs.get(name)
        if not isinstance(group, PoissonInput):
            raise ConfigError(
                f"`name` must be a PoissonInput of this network "
                f"({[k for k, g in self.inputs.items() if isinstance(g, PoissonInput)]}),"
                f" got {name!r}"
            )
        new = PoissonInput(group.n, rate=rate)
        new.validate(self.dt)
        self.inputs[name] = new
        if self._built:
            self._poisson, self._no_poisson = poisson_table(
                self.inputs, self._input_offsets, self.seed, self.dt
            )

    def normalize_weights(self, source: str, total: float) -> None:
        """Scale the plastic synapses from ``source`` so each target's incoming weights sum to
        ``total`` (targets without such synapses are left alone)."""
        self._require_built()
        total = check_positive("total", total)
        if source == "neurons":
            csr, lo, hi = self.csr_, 0, self.n_neurons
        elif source in self.inputs:
            csr = self.input_csr_
            lo = self._input_offsets[source]
            hi = lo + self.inputs[source].n
        else:
            raise ConfigError(f"`source` must be 'neurons' or an input name, got {source!r}")
        normalize_incoming(csr, lo, hi, total, self.n_neurons, source, self._k)

    def _make_stp_state(self) -> None:
        rec = single_stp([p for p in self.projections if p.source == "neurons"], "recurrent")
        ext = single_stp([p for p in self.projections if p.source != "neurons"], "input")
        self.stp_ = (
            *stp_state(rec, self.n_neurons),
            *stp_state(ext, max(self.n_input_sources_, 1)),
        )

    def _homogeneous(self) -> int:
        """1 when every neuron has the same parameters (the kernels then read scalars)."""
        if self.homeostasis is not None:
            return 0  # thresholds adapt per neuron
        p, r = self._nparam, self._ref_steps
        return int(bool(np.all(p == p[:, :1])) and bool(np.all(r == r[0])))

    def set_current(self, i_ext: Any) -> None:
        """Change the injected current (amps; scalar or one per neuron) from now on."""
        self.neuron = replace(self.neuron, i_ext=i_ext)
        self._neuron_arrays = self.neuron.arrays(self.n_neurons)
        if self._built:
            self._nparam, _, _ = self._neuron_constants()

    def _require_built(self) -> None:
        if not self._built:
            self.build()

    @property
    def n_synapses(self) -> int:
        """Synapses in the network (procedural ones counted by regenerating their rows)."""
        if not self._built:
            raise NotFittedError("the network is not built yet: call build() or run()")
        if not hasattr(self, "_n_synapses"):
            n = self.csr_.n_synapses + self.input_csr_.n_synapses
            table = self.procedural_
            for p in range(table.ip.shape[0]):
                sources = np.arange(table.ip[p, 1], table.ip[p, 2], dtype=np.int64)
                counts, *_ = self._k.build_rows(
                    table.ip[p], table.fp[p], int(table.keys[p]), sources, table.max_row, True
                )
                n += int(counts.sum())
            self._n_synapses = n
        return self._n_synapses

    def synapse_memory_bytes(self) -> int:
        """Bytes held for synapses: CSR arrays (and the CSC index) or the procedural table."""
        self._require_built()
        return (
            self.csr_.nbytes()
            + self.input_csr_.nbytes()
            + self.procedural_.nbytes()
            + self.plastic_.nbytes()
        )

    # ------------------------------------------------------------------ state
    def init_state(self, seed: SeedLike = None) -> NetworkState:
        """A fresh state at t = 0 (initial potentials drawn with ``seed``, default the net's)."""
        if not hasattr(self, "_nparam"):
            self._nparam, self._ref_steps, self._sc = self._neuron_constants()
        rng = make_rng(self.seed + 1 if seed is None else seed)
        n, dt = self.n_neurons, np.dtype(self.dtype)
        v = self._initial_v(rng).astype(dt)
        d = self.max_delay_steps + 1
        return NetworkState(
            0,
            v,
            np.zeros(n, dt),
            np.zeros(n, dt),
            np.zeros(n, np.int32),
            np.zeros((d, n), dt),
            np.zeros((d, n), dt),
            rng,
        )

    def _initial_v(self, rng: np.random.Generator) -> np.ndarray:
        n, init = self.n_neurons, self.v_init
        if isinstance(init, str):
            check_choice("v_init", init, ("rest",))
            return self._neuron_arrays["v_rest"].copy()
        arr = np.asarray(init, dtype=np.float64)
        if arr.shape == (2,):
            return arr[0] + rng.random(n) * (arr[1] - arr[0])
        if arr.shape == (n,):
            return arr.copy()
        raise ConfigError(
            f"`v_init` must be 'rest', a (low, high) pair or {n} values, got shape {arr.shape}"
        )

    # ------------------------------------------------------------------ running
    def _kernel_call(
        self,
        state: NetworkState,
        n_steps: int,
        inputs: tuple,
        mon: tuple,
        counters: np.ndarray,
        poisson: bool = True,
    ) -> tuple[int, int]:
        csr = self.csr_
        csc = (
            csr.csc
            if csr.csc is not None
            else (np.zeros(1, np.int64), np.empty(0, np.int32), np.empty(0, np.int32))
        )
        if self.propagation == "event" or csr.csc is None or self.stp_[0].size:
            dense_limit = -1  # (STP scales each source's row: push only)
        elif self.propagation == "dense":
            dense_limit = 0
        else:
            dense_limit = int(self.dense_threshold * self.n_neurons)
        ext = self.input_csr_
        return self._k.simulate(
            n_steps,
            state.t,
            _MODEL_CODE[self.synapse.model],
            (state.v, state.ge, state.gi, state.refrac, state.buf_e, state.buf_i),
            self._nparam,
            self._ref_steps,
            self._sc,
            (csr.indptr, csr.indices, csr.weights, csr.delays, csr.flags),
            csc,
            dense_limit,
            (ext.indptr, ext.indices, ext.weights, ext.delays, ext.flags),
            (*inputs, *(self._poisson if poisson else self._no_poisson)),
            self.procedural_.kernel_args(),
            mon,
            counters,
            self.plastic_.kernel_args() if self.learning else self._frozen_plasticity(),
            self.stp_,
            self._homeo_args(),
        )

    def _input_spikes(self, t0: int, n_steps: int, rng: np.random.Generator):
        groups = [(g, self._input_offsets[name]) for name, g in self.inputs.items()]
        return merge_input_spikes(groups, t0, n_steps, self.dt, rng)

    def step(
        self, inputs: Mapping[str, Sequence[int]] | None = None, state: NetworkState | None = None
    ) -> tuple[np.ndarray, NetworkState]:
        """One time step from ``state`` (default: the network's own) without mutating it.

        ``inputs`` maps input names to the local indices spiking in this step; when None the
        input groups generate their spikes from the state's random stream.
        Returns (indices of the neurons that spiked, the new state).
        """
        self._require_built()
        new = (state if state is not None else self.state_).copy()
        if inputs is None:
            ptr, idx, cnt = self._input_spikes(new.t, 1, new.rng)
        else:
            parts = []
            for name, local in inputs.items():
                if name not in self.inputs:
                    raise ConfigError(f"unknown input {name!r}; inputs are {sorted(self.inputs)}")
                local = np.asarray(local, dtype=np.int64)
                if local.size and (local.min() < 0 or local.max() >= self.inputs[name].n):
                    raise ConfigError(
                        f"input {name!r} indices must be in [0, {self.inputs[name].n})"
                    )
                parts.append(local + self._input_offsets[name])
            idx = np.concatenate(parts) if parts else np.empty(0, np.int64)
            ptr = np.array([0, idx.size], np.int64)
            cnt = np.ones(idx.size, np.int32)
        n = self.n_neurons
        dt = np.dtype(self.dtype)
        mon = (
            np.ones(n, np.bool_),
            np.empty(n, np.int64),
            np.empty(n, np.int32),
            np.zeros(1, np.int32),
            np.zeros(0, np.int64),
            np.zeros((0, 0), dt),
            np.zeros((0, 0), dt),
            np.zeros((0, 0), dt),
            np.empty(n, np.int32),
            np.zeros(n, np.uint8),
        )
        counters = np.array([0, 0, 0, 0, 0, 0, n, self._homogeneous(), 1], np.int64)
        self._kernel_call(new, 1, (ptr, idx, cnt), mon, counters, poisson=inputs is None)
        new.t += 1
        return mon[2][: counters[0]].copy(), new

    def run(
        self,
        duration: float,
        *,
        monitors: Sequence[Any] = (),
        callback: Callable[[RunProgress], None] | None = None,
    ) -> RunResult:
        """Simulate ``duration`` seconds from the current state (a second call resumes)."""
        duration = check_positive("duration", duration, "s")
        self._require_built()
        n_steps = int(round(duration / self.dt))
        if n_steps < 1:
            raise ConfigError(
                f"`duration` must be at least one step (dt={self.dt}), got {duration}"
            )
        spike_mon = next((m for m in monitors if isinstance(m, SpikeMonitor)), None)
        state_mon = next((m for m in monitors if isinstance(m, StateMonitor)), None)
        rate_mon = next((m for m in monitors if isinstance(m, RateMonitor)), None)
        for m in monitors:
            if not isinstance(m, (SpikeMonitor, StateMonitor, RateMonitor)):
                raise ConfigError(
                    f"unknown monitor {m!r}; use SpikeMonitor, StateMonitor or RateMonitor"
                )
        n, dt = self.n_neurons, np.dtype(self.dtype)
        mask = spike_mon.mask(n) if spike_mon else np.zeros(n, np.bool_)
        n_mon = int(mask.sum())
        cap = max(4 * n_mon, 1 << 16) if n_mon else 0
        spk_t, spk_i = np.empty(cap, np.int64), np.empty(cap, np.int32)
        rec_idx = state_mon.indices(n) if state_mon else np.zeros(0, np.int64)
        every = state_mon.every if state_mon else 0
        counts = np.zeros(n_steps, np.int32)
        spiked, flag = np.empty(n, np.int32), np.zeros(n, np.uint8)
        counters = np.array(
            [0, 0, 0, 0, 0, every, n_mon, self._homogeneous(), self._threads()], np.int64
        )
        st = self.state_
        t_start, out_t, out_i, rec_parts = st.t, [], [], []
        wall0 = time.perf_counter()
        done = 0
        while done < n_steps:
            k = min(_CHUNK_STEPS, n_steps - done)
            ptr, idx, cnt = self._input_spikes(st.t, k, st.rng)
            n_rec = len(range(_ceil_to(st.t, every), st.t + k, every)) if every else 0
            rec = [np.zeros((n_rec, len(rec_idx)), dt) for _ in range(3)]
            counters[4] = 0
            j = 0
            while j < k:
                mon = (mask, spk_t, spk_i, counts[done + j :], rec_idx, *rec, spiked, flag)
                steps, status = self._kernel_call(st, k - j, (ptr[j:], idx, cnt), mon, counters)
                st.t += steps
                j += steps
                if status == 1 or j == k:  # drain the spike buffer
                    w = int(counters[0])
                    out_t.append(spk_t[:w].copy())
                    out_i.append(spk_i[:w].copy())
                    counters[0] = 0
            rec_parts.append(rec)
            done += k
            if callback is not None:
                callback(RunProgress(done, n_steps, int(counters[1]), time.perf_counter() - wall0))
        wall = time.perf_counter() - wall0
        result = RunResult(
            n_neurons=n,
            n_synapses=self.n_synapses,
            dt=self.dt,
            t_start=t_start * self.dt,
            duration=n_steps * self.dt,
            n_spikes=int(counters[1]),
            wall_s=wall,
            backend=self.backend_,
            event_steps=int(counters[2]),
            dense_steps=int(counters[3]),
        )
        if spike_mon:
            result.spike_times = np.concatenate(out_t) * self.dt
            result.spike_indices = np.concatenate(out_i)
        if state_mon:
            result.state_neurons = rec_idx
            result.state_times = (
                np.arange(_ceil_to(t_start, every), t_start + n_steps, every) * self.dt
            )
            for q, var in enumerate(("v", "ge", "gi")):
                if var in state_mon.variables:
                    result.state[var] = np.concatenate([r[q] for r in rec_parts])
        if rate_mon:
            result.rate_times, result.rate_hz = bin_rate(counts, n, self.dt, rate_mon.bin_steps)
            result.rate_times = result.rate_times + t_start * self.dt
        return result

    # ------------------------------------------------------------------ persistence
    def get_params(self) -> dict[str, Any]:
        return {
            "homeostasis": None
            if self.homeostasis is None
            else homeostasis_to_json(self.homeostasis),
            "n_neurons": self.n_neurons,
            "neuron": self.neuron.to_json(),
            "synapse": self.synapse.to_json(),
            "dt": self.dt,
            "storage": self.storage,
            "propagation": self.propagation,
            "dense_threshold": self.dense_threshold,
            "max_delay": self.max_delay,
            "excitatory_ratio": self.excitatory_ratio,
            "dtype": self.dtype,
            "backend": self.backend,
            "seed": self.seed,
        }

    def save(self, path: str | Path) -> Path:
        """Save structure, parameters, synapses and state (a run can resume after load)."""
        from neurofabric.snn.persistence import save_network

        return save_network(self, path)

    @classmethod
    def load(cls, path: str | Path, *, backend: str | None = None) -> SpikingNetwork:
        """Load a network saved by :meth:`save`; raises ``CheckpointError`` if it is corrupt."""
        from neurofabric.snn.persistence import load_network

        return load_network(cls, path, backend=backend)


def _ceil_to(t: int, every: int) -> int:
    return -(-t // every) * every if every else t
