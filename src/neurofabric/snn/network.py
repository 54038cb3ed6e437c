"""The public shell of the spiking simulator: :class:`SpikingNetwork`.

>>> from neurofabric.snn import SpikingNetwork, Random, SpikeMonitor
>>> net = SpikingNetwork(1000, seed=1)
>>> net = net.connect(Random(p=0.05), weight=0.5e-3)
>>> result = net.run(0.1, monitors=[SpikeMonitor()])
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from neurofabric.core import backend as backends
from neurofabric.core.config import get_config
from neurofabric.core.errors import ConfigError, NotFittedError
from neurofabric.core.progress import ProgressCallback, ProgressReporter, check_callback
from neurofabric.core.rng import SeedLike, make_rng, seed_to_int
from neurofabric.core.validation import (
    check_choice,
    check_indices,
    check_instance,
    check_int,
    check_nonnegative,
    check_number,
    check_positive,
    check_probability,
    check_span,
)
from neurofabric.snn.connectivity import (
    Normal,
    ProceduralTable,
    Projection,
    check_partner_overlap,
    delay_steps,
    normal_delay,
    procedural_table,
)
from neurofabric.snn.homeostasis import (
    AdaptiveThreshold,
    Homeostasis,
    RateTargetThreshold,
    homeostasis_to_json,
)
from neurofabric.snn.inputs import (
    InputGroup,
    PoissonInput,
    empty_poisson,
    merge_input_spikes,
    poisson_table,
)
from neurofabric.snn.kernels import layout as L
from neurofabric.snn.monitors import RunResult
from neurofabric.snn.params import LIFParams, SynapseParams
from neurofabric.snn.plasticity import (
    Rule,
    check_plastic_projection,
    normalize_incoming,
)
from neurofabric.snn.recording import Recorder, step_monitors
from neurofabric.snn.runtime import (
    dense_limit,
    generate_synapses,
    group_rules,
    homogeneous,
    input_offsets,
    keyed_projections,
    neuron_constants,
    plastic_state,
    stored_csr,
    stp_groups,
)
from neurofabric.snn.state import NetworkState, Snapshot, initial_potentials
from neurofabric.snn.stp import ShortTermPlasticity
from neurofabric.snn.topology import Explicit, Topology

log = logging.getLogger(__name__)

_CHUNK_STEPS = 2000  # steps per kernel call between progress reports


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
        backend: ``"auto"`` (numba), ``"numba"``, ``"reference"`` or ``"torch"`` (the step on
            torch tensors; :mod:`neurofabric.snn.kernels.torch_step`).
        device: where the torch backend runs: ``"cpu"`` (default), ``"cuda"`` or
            ``"cuda:N"``; the other backends run on the CPU only.
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
        device: str = "cpu",
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
        self.device = device
        if device != "cpu" and backend != "torch":
            raise ConfigError(
                f"`device` {device!r} needs backend='torch' (backend {backend!r} runs on the "
                "CPU only)"
            )
        self.seed = seed_to_int(seed)
        if homeostasis is not None:
            check_instance(
                "homeostasis",
                homeostasis,
                (AdaptiveThreshold, RateTargetThreshold),
                "AdaptiveThreshold or RateTargetThreshold from neurofabric.snn.homeostasis",
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
        expected = "a non-empty string other than 'neurons'"
        check_instance("name", name, str, expected)
        if not name or name == "neurons":
            raise ConfigError(f"input `name` must be {expected}, got {name!r}")
        if name in self.inputs:
            raise ConfigError(f"an input named {name!r} exists already")
        group.validate(self.dt)
        self.inputs[name] = group
        self._built = False
        return self

    def connect(
        self,
        topology: Topology,
        *,
        weight: float,
        source: str = "neurons",
        weight_std: float = 0.0,
        inh_weight: float | None = None,
        inh_weight_std: float = 0.0,
        delay: float | tuple[float, float] | Normal | None = None,
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
        range for uniformly drawn per-synapse delays, or a :class:`connectivity.Normal`
        (normal per-synapse delays, redrawn outside its bounds, rounded to steps); default
        one step. ``plasticity`` (a rule
        of :mod:`neurofabric.snn.plasticity`) makes the projection's weights learn; it needs
        CSR storage and excitatory (non-negative) weights within the rule's bounds. ``stp``
        (:class:`neurofabric.snn.stp.ShortTermPlasticity`) scales each spike of a source by
        its Tsodyks-Markram release; all projections from one source group share it.
        """
        n_src = self._source_size(source)
        src = self._range("source_range", source_range, n_src)
        tgt = self._range("target_range", target_range, self.n_neurons)
        check_number("weight", weight)
        check_nonnegative("weight_std", weight_std)
        if inh_weight is not None:
            check_number("inh_weight", inh_weight)
        check_nonnegative("inh_weight_std", inh_weight_std)
        topology.check_sizes(src[1] - src[0], tgt[1] - tgt[0], allow_self)
        check_partner_overlap(topology, source == "neurons", src, tgt, allow_self)
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
        explicit_steps = None
        if isinstance(topology, Explicit):
            explicit_steps, delay = self._explicit_checks(topology, delay, use_dale, plasticity)
        if isinstance(delay, Normal):
            steps, normal = normal_delay(delay, self.dt, self.max_delay, self.max_delay_steps)
        elif explicit_steps is not None:
            steps = (int(explicit_steps.min(initial=1)), int(explicit_steps.max(initial=1)))
            normal = None
        else:
            steps = delay_steps(delay, self.dt, self.max_delay, self.max_delay_steps)
            normal = None
        proj = Projection(
            source=source,
            topology=topology,
            src_range=src,
            tgt_range=tgt,
            weight=float(weight),
            weight_std=float(weight_std),
            inh_weight=None if inh_weight is None else float(inh_weight),
            inh_weight_std=float(inh_weight_std),
            delay_steps=steps,
            delay_normal=normal,
            allow_self=bool(allow_self),
            # the first inhibitory source (absolute index), -1 without Dale's principle
            dale_split=-1
            if not use_dale
            else (self.n_excitatory if source == "neurons" else n_src),
            procedural=self.storage == "procedural",
            plasticity=plasticity,
            stp=stp,
            explicit_steps=explicit_steps,
        )
        self.projections.append(proj)
        self._built = False
        return self

    def _explicit_checks(
        self, topology: Explicit, delay: Any, use_dale: bool, plasticity: Rule | None
    ) -> tuple[np.ndarray | None, Any]:
        """What ``connect`` accepts with given synapses: CSR storage, signed weights (no
        Dale's principle), one delay or the topology's; returns the per-synapse delays in
        steps (None: ``delay``, one value) and the delay left for the usual conversion."""
        if self.storage != "csr":
            raise ConfigError(f"Explicit synapses need storage='csr', got storage={self.storage!r}")
        if use_dale:
            raise ConfigError(
                "Explicit synapses carry their signs: pass dale=False to connect (Dale's "
                "principle would overwrite them)"
            )
        if plasticity is not None:
            raise ConfigError("Explicit synapses cannot be plastic; pass plasticity=None")
        if topology.delay is None:
            if delay is not None and np.ndim(delay) != 0:
                raise ConfigError(
                    f"`delay` of Explicit synapses must be one value or None (the "
                    f"topology's delays), got {delay!r}; give per-synapse delays in Explicit"
                )
            return None, delay
        if delay is not None:
            raise ConfigError(
                "`delay` must be None when Explicit(delay=...) gives the synapses' delays"
            )
        steps = np.rint(topology.delay / self.dt).astype(np.int64)
        if steps.size and (steps.min() < 1 or steps.max() > self.max_delay_steps):
            raise ConfigError(
                f"Explicit delays must lie in [dt, max_delay] = [{self.dt}, {self.max_delay}]"
                f" s, got {float(topology.delay.min())} to {float(topology.delay.max())} s; "
                "raise max_delay or lengthen the short delays"
            )
        return steps, None

    def _source_size(self, source: str) -> int:
        if source == "neurons":
            return self.n_neurons
        if source in self.inputs:
            return self.inputs[source].n
        raise ConfigError(
            f"`source` must be 'neurons' or one of the inputs {sorted(self.inputs)}, "
            f"got {source!r}; add it with add_input"
        )

    @staticmethod
    def _range(name: str, value: tuple[int, int] | None, n: int) -> tuple[int, int]:
        return (0, n) if value is None else check_span(name, value, n)

    # ------------------------------------------------------------------ build
    def build(self, *, saved: Snapshot | None = None) -> SpikingNetwork:
        """Resolve the backend and assemble everything the kernels run on: the synapses
        (generated from the seed, or the stored ones of ``saved``), plasticity and STP
        state, and the initial state (``init_state()``, or ``saved.state``).

        ``saved`` is a :class:`~neurofabric.snn.state.Snapshot` of a network with the same
        parameters, projections and inputs (:meth:`load` passes the checkpoint's)."""
        t0 = time.perf_counter()
        self.backend_, self._k = backends.resolve("snn", self.backend)
        self._kernel_options = {}
        if self.backend_ == "torch":
            self._kernel_options["device"] = backends.torch_device(self.device)
        if saved is not None:
            self.theta_[:] = saved.theta
        else:
            self.compile_ahead()
        self._build_parts(saved)
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

    def compile_ahead(self) -> bool:
        """Have the step loop that ``run`` needs compiled in a helper process while this
        one builds the synapses (and compiles the kernels that generate them), when numba's
        disk cache lacks it: a first run with an empty cache then takes the longer of the
        two compiles instead of their sum (measured in docs/benchmarks.md).

        ``build`` calls it; call it before ``build`` when other threads run then (a progress
        spinner, say): the helper is a fork of this process, started only while this is its
        one thread (and on Linux, with two or more cores, with the numba backend, for a step
        loop on one thread, and unless the ``compile_ahead`` setting is off). Returns True
        when a helper was started."""
        if not get_config().compile_ahead:
            return False
        backend, kernels = backends.resolve("snn", self.backend)
        if not hasattr(kernels, "compile_ahead") or kernels.threads(self.n_neurons) > 1:
            return False  # numba caches no threaded step loop on disk: nothing to hand over
        return bool(kernels.compile_ahead(*self._probe_run_args(backend, kernels)))

    def _probe_run_args(self, backend: str, kernels: Any) -> tuple:
        """The arguments ``run`` will pass ``kernels`` for its first step, from a copy of
        this network built without a synapse (no kernel runs): the kernels can compile for
        their types while the synapses are generated."""
        probe = copy.copy(self)
        probe.backend_, probe._k = backend, kernels
        probe._build_parts(None, dry=True)
        rec = Recorder((), probe.n_neurons, np.dtype(probe.dtype), 1, 0)
        counters = probe._counters(probe._k.threads(probe.n_neurons))
        rec.configure(counters)
        rec.begin_chunk(0, 1, counters)
        st = probe.state_
        arrays = L.State(st.v, st.ge, st.gi, st.refrac, st.buf_e, st.buf_i)
        spikes = probe._input_spikes(0, 1, st.rng)
        return 1, 0, probe._kernel_network(), arrays, spikes, rec.monitors(0), counters

    def _build_parts(self, saved: Snapshot | None, dry: bool = False) -> None:
        """Everything ``build`` assembles; ``dry``: no synapse (see ``_probe_run_args``)."""
        self._input_offsets, self.n_input_sources_ = input_offsets(self.inputs)
        self._poisson = poisson_table(self.inputs, self._input_offsets, self.seed, self.dt)
        self._neurons = self._neuron_constants()
        rules = group_rules(self.projections)
        with_csc = self.propagation != "event" or rules[0] is not None
        n, n_in, k = self.n_neurons, self.n_input_sources_, self._k
        if saved is None:
            stored = keyed_projections(self.projections, self.seed, self._input_offsets, False)
            self.csr_, self.input_csr_ = generate_synapses(stored, n, n_in, k, with_csc, dry)
        else:
            with_csc = with_csc and saved.csr["indptr"].size > 1
            self.csr_ = stored_csr(saved.csr, n, k, with_csc, rules[0] is not None)
            self.input_csr_ = stored_csr(saved.input_csr, n, k, False, rules[1] is not None)
        procedural = keyed_projections(self.projections, self.seed, self._input_offsets, True)
        self.procedural_: ProceduralTable = procedural_table(procedural)
        self.plastic_ = plastic_state(rules, self.csr_, self.input_csr_, n, n_in, k)
        self.stp_ = stp_groups(self.projections, n, n_in)
        if saved is None:
            self.state_ = self.init_state()
        else:
            self.plastic_.load_traces(saved.traces)
            self.stp_.restore(saved.stp)
            self.state_ = saved.state
        self._assemble()

    def _neuron_constants(self) -> L.Neurons:
        return neuron_constants(self._neuron_arrays, self.synapse, self.dt, self.dtype, self.theta_)

    def _homeostasis_args(self) -> L.Homeostasis:
        if self.homeostasis is None:
            return L.Homeostasis(np.empty(0), self.theta_)
        return L.Homeostasis(self.homeostasis.vector(self.dt, self.n_neurons), self.theta_)

    def _assemble(self) -> None:
        """The kernels' :class:`~neurofabric.snn.kernels.layout.Network`, from the parts
        built above (the setters that change a part replace it)."""
        csr, ext = self.csr_, self.input_csr_
        self._homogeneous = homogeneous(self._neurons, self.homeostasis is not None)
        limit = dense_limit(
            self.propagation,
            csr.csc is not None,
            self.stp_.rec.prm.size > 0,
            int(self.dense_threshold * self.n_neurons),
        )
        self._kernel_net = L.Network(
            model=L.MODEL_CODES[self.synapse.model],
            neurons=self._neurons,
            rec=csr.kernel_args(),
            rec_csc=csr.csc if csr.csc is not None else L.no_incoming(),
            dense_limit=limit,
            ext=ext.kernel_args(),
            ext_csc=self.plastic_.ext_csc,
            procedural=self.procedural_.kernel_args(),
            poisson=self._poisson,
            rec_plastic=self.plastic_.rec,
            ext_plastic=self.plastic_.ext,
            rec_stp=self.stp_.rec,
            ext_stp=self.stp_.ext,
            homeostasis=self._homeostasis_args(),
        )

    def _kernel_network(self, poisson: bool = True) -> L.Network:
        """What the kernels run on now: without plasticity while learning is off, without
        the Poisson groups when ``step`` is given the input spikes."""
        net = self._kernel_net
        if not self.learning:
            net = net._replace(rec_plastic=L.no_plasticity(), ext_plastic=L.no_plasticity())
        if not poisson:
            net = net._replace(poisson=empty_poisson())
        return net

    # ------------------------------------------------------------------ changes after build
    def _check_stp(self, stp: Any) -> None:
        if stp is None:
            return
        check_instance("stp", stp, ShortTermPlasticity, "a ShortTermPlasticity (or None)")
        if self.storage != "csr":
            raise ConfigError(f"`stp` needs storage='csr', got storage={self.storage!r}")

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
        if self._built:
            self.stp_ = stp_groups(self.projections, self.n_neurons, self.n_input_sources_)
            self._assemble()  # STP also decides the dense limit

    def set_learning(self, enabled: bool) -> None:
        """Turn synaptic plasticity on or off (weights and traces stay as they are)."""
        self.learning = bool(enabled)

    def freeze_homeostasis(self, frozen: bool = True) -> None:
        """Keep the adapted thresholds fixed (e.g. for evaluation) or let them adapt again."""
        if self.homeostasis is None:
            raise ConfigError("the network has no homeostasis to freeze")
        self.homeostasis = replace(self.homeostasis, frozen=bool(frozen))
        if self._built:
            self._kernel_net = self._kernel_net._replace(homeostasis=self._homeostasis_args())

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
            self._poisson = poisson_table(self.inputs, self._input_offsets, self.seed, self.dt)
            self._kernel_net = self._kernel_net._replace(poisson=self._poisson)

    def normalize_weights(self, source: str, total: float) -> None:
        """Scale the plastic synapses from ``source`` so each target's incoming weights sum to
        ``total`` (targets without such synapses are left alone)."""
        self._require_built()
        total = check_positive("total", total)
        check_choice("source", source, ("neurons", *self.inputs))
        if source == "neurons":
            csr, lo, hi = self.csr_, 0, self.n_neurons
        else:
            csr = self.input_csr_
            lo = self._input_offsets[source]
            hi = lo + self.inputs[source].n
        normalize_incoming(csr, lo, hi, total, self.n_neurons, source, self._k)

    def set_current(self, i_ext: Any) -> None:
        """Change the injected current (amps; scalar or one per neuron) from now on."""
        self.neuron = replace(self.neuron, i_ext=i_ext)
        self._neuron_arrays = self.neuron.arrays(self.n_neurons)
        if self._built:
            self._neurons = self._neurons._replace(params=self._neuron_constants().params)
            self._assemble()  # the parameters may no longer be homogeneous

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
        rng = make_rng(self.seed + 1 if seed is None else seed)
        n, dt = self.n_neurons, np.dtype(self.dtype)
        v = initial_potentials(self.v_init, self._neuron_arrays["v_rest"], rng).astype(dt)
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

    # ------------------------------------------------------------------ running
    def _counters(self, threads: int) -> np.ndarray:
        counters = np.zeros(L.N_COUNTERS, np.int64)
        counters[L.C_HOMOGENEOUS] = self._homogeneous
        counters[L.C_THREADS] = threads
        return counters

    def _simulate(
        self,
        net: L.Network,
        state: NetworkState,
        n_steps: int,
        inputs: L.InputSpikes,
        mon: L.Monitors,
        counters: np.ndarray,
    ) -> tuple[int, int]:
        """``n_steps`` steps of the kernel from ``state`` (mutated, but for ``t``)."""
        arrays = L.State(state.v, state.ge, state.gi, state.refrac, state.buf_e, state.buf_i)
        return self._k.simulate(
            n_steps, state.t, net, arrays, inputs, mon, counters, **self._kernel_options
        )

    def _input_spikes(self, t0: int, n_steps: int, rng: np.random.Generator) -> L.InputSpikes:
        groups = [(g, self._input_offsets[name]) for name, g in self.inputs.items()]
        return L.InputSpikes(*merge_input_spikes(groups, t0, n_steps, self.dt, rng))

    def _given_spikes(self, inputs: Mapping[str, Sequence[int]]) -> L.InputSpikes:
        """One step's input events from local indices per input name."""
        parts = []
        for name, local in inputs.items():
            check_choice("inputs", name, tuple(self.inputs))
            local = check_indices(f"inputs[{name!r}]", local, self.inputs[name].n)
            parts.append(local + self._input_offsets[name])
        idx = np.concatenate(parts) if parts else np.empty(0, np.int64)
        return L.InputSpikes(np.array([0, idx.size], np.int64), idx, np.ones(idx.size, np.int32))

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
            spikes = self._input_spikes(new.t, 1, new.rng)
        else:
            spikes = self._given_spikes(inputs)
        mon = step_monitors(self.n_neurons, np.dtype(self.dtype))
        counters = self._counters(threads=1)
        counters[L.C_MONITORED] = self.n_neurons
        net = self._kernel_network(poisson=inputs is None)
        self._simulate(net, new, 1, spikes, mon, counters)
        new.t += 1
        return mon.spk_i[: counters[L.C_WRITTEN]].copy(), new

    def run(
        self,
        duration: float,
        *,
        monitors: Sequence[Any] = (),
        callback: ProgressCallback | None = None,
    ) -> RunResult:
        """Simulate ``duration`` seconds from the current state (a second call resumes).

        ``callback`` receives a :class:`~neurofabric.core.progress.Progress` (task
        ``"snn.run"``, unit ``"step"``, metrics ``spikes`` and ``rate_hz`` so far) after each
        chunk of up to 2,000 steps. When it returns True the run stops after that chunk: the
        network is left at the last step run and the result (``stopped=True``) holds those
        steps, the same as a run of that duration."""
        duration = check_positive("duration", duration, "s")
        check_callback(callback)
        self._require_built()
        n_steps = int(round(duration / self.dt))
        if n_steps < 1:
            raise ConfigError(
                f"`duration` must be at least one step (dt={self.dt}), got {duration}"
            )
        reporter = ProgressReporter("snn.run", n_steps, "step", callback)
        rec = Recorder(monitors, self.n_neurons, np.dtype(self.dtype), n_steps, self.state_.t)
        counters = self._counters(self._k.threads(self.n_neurons))
        rec.configure(counters)
        net = self._kernel_network()
        wall0 = time.perf_counter()
        done = 0
        while done < n_steps:
            done += self._run_chunk(net, min(_CHUNK_STEPS, n_steps - done), done, rec, counters)
            spikes = int(counters[L.C_SPIKES])
            rate = spikes / (self.n_neurons * done * self.dt)
            if reporter.update(done, spikes=spikes, rate_hz=rate):
                log.info("snn.run stopped by the callback after %d of %d steps", done, n_steps)
                break
        result = RunResult(
            n_neurons=self.n_neurons,
            n_synapses=self.n_synapses,
            dt=self.dt,
            t_start=rec.t_start * self.dt,
            duration=done * self.dt,
            n_spikes=int(counters[L.C_SPIKES]),
            wall_s=time.perf_counter() - wall0,
            backend=self.backend_,
            event_steps=int(counters[L.C_EVENT_STEPS]),
            dense_steps=int(counters[L.C_DENSE_STEPS]),
            stopped=reporter.stopped,
        )
        return rec.fill(result, done, self.dt)

    def _run_chunk(
        self, net: L.Network, k: int, done: int, rec: Recorder, counters: np.ndarray
    ) -> int:
        """``k`` steps of a run, ``done`` steps into it (the kernel returns early when the
        spike buffer needs draining). Returns ``k``."""
        st = self.state_
        spikes = self._input_spikes(st.t, k, st.rng)
        rec.begin_chunk(st.t, k, counters)
        j = 0
        while j < k:
            chunk = spikes._replace(ptr=spikes.ptr[j:])
            steps, status = self._simulate(net, st, k - j, chunk, rec.monitors(done + j), counters)
            st.t += steps
            j += steps
            if status == L.STATUS_DRAIN or j == k:
                rec.drain(counters)
        return k

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

    def snapshot(self) -> Snapshot:
        """The synapses, learning state and dynamic state (views, not copies), as
        ``build(saved=...)`` takes them back."""
        self._require_built()
        return Snapshot(
            csr=self.csr_.arrays(),
            input_csr=self.input_csr_.arrays(),
            theta=self.theta_,
            state=self.state_,
            traces=self.plastic_.arrays(),
            stp=self.stp_.arrays(),
        )

    def save(self, path: str | Path) -> Path:
        """Save structure, parameters, synapses and state (a run can resume after load)."""
        from neurofabric.snn.persistence import save_network  # pyarrow loads on first use

        return save_network(self, path)

    @classmethod
    def load(cls, path: str | Path, *, backend: str | None = None) -> SpikingNetwork:
        """Load a network saved by :meth:`save`; raises ``CheckpointError`` if it is corrupt."""
        from neurofabric.snn.persistence import load_network  # pyarrow loads on first use

        return load_network(cls, path, backend=backend)
