r"""NIR interchange: run networks from snnTorch, Norse and other NIR producers, and export ours.

The `Neuromorphic Intermediate Representation <https://neuroir.org>`_ describes a network as a
graph of continuous-time nodes: neurons (``LIF``, ``CubaLIF``, ``IF``, ``LI``, ``CubaLI``,
``I``), weights (``Affine``, ``Linear``, ``Scale``), ``Delay`` and the ``Input``/``Output``
ports. :func:`from_nir` turns such a graph into one :class:`~neurofabric.snn.SpikingNetwork`
(each neuron node a range of neurons, each path of weights and delays between two neuron
nodes an :class:`~neurofabric.snn.Explicit` projection) wrapped in a :class:`NIRNetwork`
whose :meth:`NIRNetwork.run` takes input spikes per step and returns each output's spikes
(or membrane potential, for the non-spiking ``LI``/``CubaLI``/``I``). :func:`to_nir` writes
one of our networks as a graph.

**Conventions.** NIR fixes the equations, not how a framework discretizes them, so
:func:`from_nir` takes the time step ``dt`` and a ``convention``:

* ``"exact"``: NIR's ODEs integrated exactly over each step; a spike is a Dirac delta of unit
  area (it moves ``v``, or ``I``, by ``r w / tau``). :func:`to_nir` writes our networks in this
  convention, so ``from_nir(to_nir(net), dt=net.dt)`` runs exactly as ``net``.
* ``"euler"``: forward Euler at ``dt`` with a spike as a unit current for one step and the
  state driven by the input of the same step,
  ``I_t = (1 - dt/tau_syn) I_{t-1} + dt/tau_syn w_in S_t`` and
  ``v_t = (1 - dt/tau) v_{t-1} + dt/tau (v_leak + r I_t)``, then the threshold and the reset
  to ``v_reset``. This is snnTorch's ``Leaky``, ``RLeaky`` and ``Synaptic`` (with
  ``reset_mechanism="zero", reset_delay=False``; its default reset subtracts the threshold
  one step late, which NIR cannot say) and Norse's ``LIFBoxCell``, ``LIFCell`` and
  ``LIBoxCell``.

With ``"euler"`` our exact integrator reproduces the Euler step: the membrane
time constant becomes ``-dt / ln(1 - dt/tau)`` (the same one-step decay) and each weight is
scaled so a spike moves ``v`` as the Euler step does; spikes then match step for step (float64
rounding aside). Ours delivers a spike one step later at the earliest, where a discrete
framework feeds a layer's spikes to the next layer in the same step: each node's output
therefore trails the framework's by its depth (``NIRNetwork.latency``), and :meth:`run`
shifts it back. An edge that closes a loop (a recurrent weight) reads the previous step's
spikes, as in the frameworks. What cannot be expressed is refused with an error that names
the node: convolutions, pooling, thresholds without a neuron, different synaptic time
constants in one graph (our synapse constants are network-wide), LIF and CubaLIF mixed,
a bias into an ``IF``/``I`` node.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neurofabric.core.checkpoint import atomic_file
from neurofabric.core.errors import BackendUnavailableError, ConfigError, ShapeError
from neurofabric.core.validation import check_choice, check_positive
from neurofabric.snn.inputs import SpikeArrayInput
from neurofabric.snn.monitors import SpikeMonitor, StateMonitor
from neurofabric.snn.network import SpikingNetwork
from neurofabric.snn.params import LIFParams, SynapseParams
from neurofabric.snn.runtime import cuba_coupling
from neurofabric.snn.topology import Explicit

log = logging.getLogger(__name__)

CONVENTIONS = ("exact", "euler")
_SPIKING = ("LIF", "CubaLIF", "IF")
_NEURONS = (*_SPIKING, "LI", "CubaLI", "I")
_CUBA = ("CubaLIF", "CubaLI")
_WEIGHTS = ("Affine", "Linear", "Scale")
# a threshold no potential reaches: the non-spiking nodes (LI, CubaLI, I) never fire
_NEVER = 1e300
# an IF/I node's membrane time constant in steps: exp(-2**-60) is 1.0 in float64, no leak
_NO_LEAK_STEPS = 2.0**60


def _nir() -> Any:
    try:
        import nir
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise BackendUnavailableError(
            "NIR interchange needs the `nir` package: pip install 'neurofabric[nir]'"
        ) from exc
    return nir


def _arr(value: Any) -> np.ndarray:
    """A node parameter as float64 numpy (NIR producers store numpy or torch tensors)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float64)


# ---------------------------------------------------------------------------- the graph
@dataclass
class _Path:
    """The signal from one source node into a node: ``W`` (channels x source size), the
    delay of each entry in seconds, and a constant ``bias`` per channel."""

    source: str
    weight: np.ndarray
    delay: np.ndarray
    bias: np.ndarray


def _flatten(graph: Any, prefix: str = "") -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Nodes and edges of ``graph`` with its subgraphs inlined (``sub.node``); a subgraph's
    own Input and Output nodes stay as pass-through nodes."""
    nir = _nir()
    nodes: dict[str, Any] = {}
    edges: list[tuple[str, str]] = []
    ports: dict[str, tuple[str, str]] = {}  # subgraph -> (its input, its output)
    for name, node in graph.nodes.items():
        full = prefix + name
        if isinstance(node, nir.NIRGraph):
            inner, inner_edges = _flatten(node, full + ".")
            nodes.update(inner)
            edges.extend(inner_edges)
            ins = [k for k, v in node.nodes.items() if isinstance(v, nir.Input)]
            outs = [k for k, v in node.nodes.items() if isinstance(v, nir.Output)]
            ports[full] = (
                f"{full}.{ins[0]}" if len(ins) == 1 else "",
                f"{full}.{outs[0]}" if len(outs) == 1 else "",
            )
        else:
            nodes[full] = node
    for a, b in graph.edges:
        a, b = prefix + a, prefix + b
        if a in ports:
            a = ports[a][1]
        if b in ports:
            b = ports[b][0]
        if not a or not b:
            raise ConfigError(
                f"an edge into or out of subgraph {a or b!r} needs the subgraph to have one "
                "Input and one Output node; name the port in the edge instead"
            )
        edges.append((a, b))
    return nodes, edges


def _kind(node: Any) -> str:
    return type(node).__name__


class _Graph:
    """A flattened NIR graph reduced to neuron nodes, ports and the paths between them."""

    def __init__(self, graph: Any) -> None:
        nir = _nir()
        if not isinstance(graph, nir.NIRGraph):
            raise ConfigError(f"`graph` must be a nir.NIRGraph or a .nir path, got {graph!r}")
        top_inputs = {k for k, v in graph.nodes.items() if isinstance(v, nir.Input)}
        top_outputs = {k for k, v in graph.nodes.items() if isinstance(v, nir.Output)}
        self.nodes, self.edges = _flatten(graph)
        self.inputs = sorted(top_inputs)
        self.outputs = sorted(top_outputs)
        self.incoming: dict[str, list[str]] = {k: [] for k in self.nodes}
        for a, b in self.edges:
            for end in (a, b):
                if end not in self.nodes:
                    raise ConfigError(f"edge ({a!r}, {b!r}) names a node {end!r} not in the graph")
            self.incoming[b].append(a)
        passes = (*_WEIGHTS, "Delay", "Input", "Output", "Flatten")
        for name, node in self.nodes.items():
            kind = _kind(node)
            if kind not in (*_NEURONS, *passes):
                raise ConfigError(
                    f"NIR node {name!r} is a {kind}, which neurofabric cannot run; supported: "
                    f"{', '.join(sorted({*_NEURONS, *passes}))}"
                )
        self.neurons = [k for k, v in self.nodes.items() if _kind(v) in _NEURONS]
        if not self.neurons:
            raise ConfigError("the NIR graph has no neuron node (LIF, CubaLIF, IF, LI, ...)")
        self.size = {k: self._size(k) for k in (*self.inputs, *self.neurons)}

    # ---- sizes
    def _declared(self, name: str) -> int | None:
        node = self.nodes[name]
        kind = _kind(node)
        if kind == "Input":
            shape = np.asarray(node.input_type["input"]).ravel()
            return int(np.prod(shape)) if shape.size else None
        for attr in ("v_threshold", "tau", "tau_mem", "r"):
            value = getattr(node, attr, None)
            if value is not None and _arr(value).ndim >= 1:
                return int(_arr(value).size)
        return None

    def _size(self, name: str) -> int:
        """A node's size: its parameters' length, or (scalar parameters, as Norse writes
        them) the rows of the weight that feeds it."""
        n = self._declared(name)
        if n is not None:
            return n
        for src in self.incoming[name]:
            node = self.nodes[src]
            if _kind(node) in ("Affine", "Linear"):
                return int(_arr(node.weight).shape[0])
        raise ConfigError(
            f"the size of NIR node {name!r} cannot be told: its parameters are scalars and no "
            "Affine/Linear feeds it; give it per-neuron parameters"
        )

    # ---- paths
    def paths_into(self, name: str) -> list[_Path]:
        """Every source (an Input or neuron node) reaching ``name`` through weights and
        delays, with the composed weight, per-entry delay and bias."""
        out: list[_Path] = []
        for src in self.incoming[name]:
            out.extend(self._walk(src, name, (name,)))
        return out

    def _walk(self, name: str, into: str, seen: tuple[str, ...]) -> list[_Path]:
        """Paths ending at the output of node ``name`` (which feeds ``into``)."""
        node = self.nodes[name]
        kind = _kind(node)
        if name in self.size:  # a source: Input or neuron node
            n = self.size[name]
            return [_Path(name, np.eye(n), np.zeros((n, n)), np.zeros(n))]
        if name in seen:
            raise ConfigError(f"the NIR graph has a loop through {name!r} without a neuron node")
        paths = [p for src in self.incoming[name] for p in self._walk(src, name, (*seen, name))]
        if not paths:
            raise ConfigError(f"NIR node {name!r} (a {kind}) has no input")
        if kind in ("Output", "Input", "Flatten"):
            return paths
        if kind == "Delay":
            d = _arr(node.delay)
            for p in paths:
                p.delay = p.delay + (d[:, None] if d.ndim else d)
            return paths
        if kind == "Scale":
            s = _arr(node.scale)
            for p in paths:
                p.weight = p.weight * (s[:, None] if s.ndim else s)
                p.bias = p.bias * s
            return paths
        w = _arr(node.weight)
        if w.ndim != 2:
            raise ShapeError(f"the weight of NIR node {name!r} must be 2-D, got shape {w.shape}")
        b = _arr(node.bias) if kind == "Affine" else np.zeros(w.shape[0])
        out = []
        for p in paths:
            if p.weight.shape[0] != w.shape[1]:
                raise ShapeError(
                    f"NIR node {name!r} takes {w.shape[1]} inputs but gets {p.weight.shape[0]}"
                    f" from {p.source!r}"
                )
            delay = _column_delays(p, name)
            out.append(
                _Path(
                    p.source,
                    w @ p.weight,
                    np.broadcast_to(delay, (w.shape[0], delay.size)).copy(),
                    w @ p.bias,
                )
            )
        # the node's own bias once, on its first path
        out[0].bias = out[0].bias + b
        return out

    def order(self) -> tuple[list[str], set[tuple[str, str]]]:
        """Neuron nodes in feed-forward order from the inputs, and the (source, target)
        pairs that close a loop (back edges of a depth-first walk)."""
        succ: dict[str, set[str]] = {k: set() for k in (*self.inputs, *self.neurons)}
        for target in self.neurons:
            for p in self.paths_into(target):
                succ[p.source].add(target)
        order: list[str] = []
        back: set[tuple[str, str]] = set()
        state: dict[str, int] = {}

        def visit(n: str) -> None:
            state[n] = 1
            for m in sorted(succ[n], key=self.neurons.index):
                if state.get(m) == 1:
                    back.add((n, m))
                elif m not in state:
                    visit(m)
            state[n] = 2
            order.append(n)

        for start in (*self.inputs, *self.neurons):
            if start not in state:
                visit(start)
        order.reverse()
        return [n for n in order if n in self.neurons], back


def _column_delays(p: _Path, at: str) -> np.ndarray:
    """One delay per source column (over its non-zero entries); a weight node cannot mix
    entries of different delays of one source into one channel."""
    nz = p.weight != 0
    hi = np.where(nz, p.delay, -np.inf).max(axis=0, initial=-np.inf)
    lo = np.where(nz, p.delay, np.inf).min(axis=0, initial=np.inf)
    has = nz.any(axis=0)
    if np.any(has & (hi - lo > 1e-12)):
        raise ConfigError(
            f"NIR node {at!r} sums channels that carry different delays from {p.source!r}; "
            "neurofabric needs each synapse's delay: put the Delay after the last weight"
        )
    return np.where(has, hi, 0.0)


# ---------------------------------------------------------------------------- from NIR
@dataclass
class _Neurons:
    """Our parameters for one NIR neuron node (arrays of its size) and how an input current
    ``I`` (per spike) becomes a jump of ``v`` or of the synaptic variable."""

    kind: str
    params: dict[str, np.ndarray]
    gain: np.ndarray  # jump per unit weight, per neuron
    tau_syn: float | None
    spiking: bool


def _param(node: Any, name: str, n: int, default: float | None = None) -> np.ndarray:
    value = getattr(node, name, None)
    if value is None:
        if default is None:
            raise ConfigError(f"NIR node is missing its `{name}`")
        return np.full(n, float(default))
    arr = _arr(value).ravel()
    if arr.size == 1:
        return np.full(n, float(arr[0]))
    if arr.size != n:
        raise ShapeError(f"NIR parameter `{name}` has {arr.size} values for {n} neurons")
    return arr


def _euler_tau(name: str, tau: np.ndarray, dt: float) -> np.ndarray:
    """The time constant whose exact one-step decay equals Euler's ``1 - dt/tau``."""
    if np.any(tau <= dt):
        raise ConfigError(
            f"NIR node {name!r}: an Euler step needs dt < tau, got tau={float(tau.min())} s "
            f"with dt={dt} s; use a smaller dt"
        )
    return -dt / np.log1p(-dt / tau)


def _neurons(name: str, node: Any, n: int, dt: float, convention: str) -> _Neurons:
    kind = _kind(node)
    spiking = kind in _SPIKING
    euler = convention != "exact"
    r = _param(node, "r", n, 1.0)
    if np.any(r <= 0):
        raise ConfigError(f"NIR node {name!r}: `r` must be > 0, got {float(r.min())}")
    v_th = _param(node, "v_threshold", n) if spiking else np.full(n, _NEVER)
    v_reset = _param(node, "v_reset", n, 0.0) if spiking else np.zeros(n)
    tau_syn = None
    if kind in ("IF", "I"):
        tau_m = np.full(n, dt * _NO_LEAK_STEPS)
        v_leak = np.zeros(n)
        # dv/dt = r I: a Dirac spike moves v by r w; Euler's unit current for dt by dt r w
        gain = r * (dt if euler else 1.0)
        params = {"v_rest": v_leak, "tau_m": tau_m, "r_m": r}
    else:
        tau = _param(node, "tau_mem" if kind in _CUBA else "tau", n)
        v_leak = _param(node, "v_leak", n, 0.0)
        tau_m = _euler_tau(name, tau, dt) if euler else tau
        if kind in _CUBA:
            ts = _param(node, "tau_syn", n)
            if not np.allclose(ts, ts[0], rtol=1e-12, atol=0.0):
                raise ConfigError(
                    f"NIR node {name!r} has different tau_syn per neuron; neurofabric's "
                    "synaptic time constant is one per network"
                )
            w_in = _param(node, "w_in", n, 1.0)
            if euler:
                tau_syn = float(_euler_tau(name, ts[:1], dt)[0])
                c = cuba_coupling(tau_syn, tau_m, dt)
                # x = K I with c K = dt r / tau_mem; a spike adds dt/tau_syn w_in to I
                gain = dt * r / (tau * c) * (dt / ts[0]) * w_in
            else:
                tau_syn = float(ts[0])
                gain = r * w_in / tau_syn  # g = r I; a Dirac spike adds w_in w / tau_syn to I
            # a constant bias b enters I as w_in b (after the filter: see from_nir)
            params = {"v_rest": v_leak, "tau_m": tau_m, "r_m": r * w_in}
        else:
            if euler:  # v += dt/tau r w, applied before our one-step decay e^{-dt/tau_m}
                gain = dt * r / tau / (1.0 - dt / tau)
            else:
                gain = r / tau
            params = {"v_rest": v_leak, "tau_m": tau_m, "r_m": r}
    if spiking and np.any(v_reset >= v_th):
        raise ConfigError(f"NIR node {name!r}: v_reset must be below v_threshold")
    params.update(v_th=v_th, v_reset=v_reset)
    return _Neurons(kind, params, gain, tau_syn, spiking)


@dataclass
class NIRNetwork:
    """A NIR graph as one :class:`~neurofabric.snn.SpikingNetwork` (``network``): each NIR
    neuron node is the range ``populations[node]`` of its neurons, each Input node an input
    group of the same name. ``latency[node]`` is how many steps that node's spikes trail the
    source framework's; :meth:`run` undoes it."""

    network: SpikingNetwork
    populations: dict[str, tuple[int, int]]
    inputs: dict[str, int]
    outputs: dict[str, str]
    latency: dict[str, int]
    kinds: dict[str, str]
    dt: float
    convention: str
    _bias: np.ndarray = field(repr=False, default_factory=lambda: np.empty(0))

    def run(
        self,
        inputs: np.ndarray | Mapping[str, np.ndarray],
        *,
        record: tuple[str, ...] | None = None,
        seed: int = 0,
    ) -> dict[str, np.ndarray]:
        """Run from rest for ``T`` steps of input and return, per Output node (and per
        neuron node named in ``record``), a ``(T, n)`` array: spike counts (uint8) of a
        spiking node, the membrane potential after each step (float64) of an LI/CubaLI/I
        node. ``inputs`` is a ``(T, n)`` array of spike counts per step (non-negative
        integers) for a graph with one Input, else a mapping from Input name to one.
        ``seed`` seeds nothing the graph draws (it has no random parts) but the state's
        stream, kept for the house's every-stochastic-function rule."""
        given = self._inputs(inputs)
        steps = next(iter(given.values())).shape[0]
        names = list(self.outputs.values()) + list(record or ())
        for name in names:
            if name not in self.populations:
                raise ConfigError(
                    f"`record` names {name!r}, not a neuron node; choose from "
                    f"{sorted(self.populations)}"
                )
        net = self.network
        for name, x in given.items():
            t_idx, i_idx = np.nonzero(x)
            counts = x[t_idx, i_idx].astype(np.int64)
            net.inputs[name] = SpikeArrayInput(
                x.shape[1],
                indices=np.repeat(i_idx, counts),
                times=np.repeat(t_idx, counts) * self.dt,
            )
        if not net._built:
            net.build()
        net.state_ = net.init_state(seed=seed)
        extra = max((self.latency[n] for n in names), default=0)
        voltage = [n for n in names if self.kinds[n] in ("LI", "CubaLI", "I")]
        monitors: list[Any] = [SpikeMonitor()]
        if voltage:
            idx = np.concatenate([np.arange(*self.populations[n]) for n in voltage])
            monitors.append(StateMonitor(neurons=idx, variables=("v",)))
        spike_t, spike_i, v_rows = self._simulate(steps + extra, monitors)
        step = np.rint(spike_t / self.dt).astype(np.int64)
        out: dict[str, np.ndarray] = {}
        col = 0
        for name in dict.fromkeys(names):
            lo, hi = self.populations[name]
            lag = self.latency[name]
            if name in voltage:
                v = v_rows[lag : lag + steps, col : col + hi - lo]
                out[name] = np.asarray(v, np.float64)
                col += hi - lo
                continue
            spikes = np.zeros((steps, hi - lo), np.uint8)
            keep = (spike_i >= lo) & (spike_i < hi)
            s = step[keep] - lag
            ok = (s >= 0) & (s < steps)
            spikes[s[ok], spike_i[keep][ok] - lo] = 1
            out[name] = spikes
        return {
            **{o: out[src] for o, src in self.outputs.items()},
            **{n: out[n] for n in record or ()},
        }

    def _simulate(
        self, n_steps: int, monitors: list[Any]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Run ``n_steps`` from the fresh state; (spike times, spike indices, rows of v).

        A node ``latency`` steps behind its framework gets its bias from step ``latency``
        on, so its bias and its input start together, as in the framework."""
        net = self.network
        lag = np.zeros(net.n_neurons, np.int64)
        for name, (lo, hi) in self.populations.items():
            lag[lo:hi] = self.latency[name]
        phases = [(k, 1) for k in range(int(lag.max(initial=0))) if np.any(self._bias != 0)]
        done = sum(n for _, n in phases)
        phases.append((done, n_steps - done))
        times, idx, rows = [], [], []
        for k, n in phases:
            if n <= 0:
                continue
            net.set_current(np.where(lag <= k, self._bias, 0.0))
            result = net.run(n * self.dt, monitors=monitors)
            times.append(result.spike_times)
            idx.append(result.spike_indices)
            rows.append(result.state.get("v", np.empty((n, 0))))
        return np.concatenate(times), np.concatenate(idx), np.concatenate(rows)

    def _inputs(self, inputs: np.ndarray | Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not isinstance(inputs, Mapping):
            if len(self.inputs) != 1:
                raise ConfigError(
                    f"the graph has inputs {sorted(self.inputs)}: pass a mapping from each "
                    "name to its (T, n) spike counts"
                )
            inputs = {next(iter(self.inputs)): inputs}
        if set(inputs) != set(self.inputs):
            raise ConfigError(
                f"`inputs` must give every Input node {sorted(self.inputs)}, got {sorted(inputs)}"
            )
        out, steps = {}, None
        for name, x in inputs.items():
            arr = np.asarray(x)
            if hasattr(x, "detach"):
                arr = x.detach().cpu().numpy()
            n = self.inputs[name]
            if arr.ndim != 2 or arr.shape[1] != n:
                raise ShapeError(f"`inputs[{name!r}]` must have shape (T, {n}), got {arr.shape}")
            if arr.size and (
                not np.all(np.isfinite(arr)) or np.any(arr < 0) or np.any(arr != np.rint(arr))
            ):
                raise ConfigError(
                    f"`inputs[{name!r}]` must hold spike counts (non-negative integers); "
                    "neurofabric's inputs are spikes, not real-valued currents"
                )
            if steps is not None and arr.shape[0] != steps:
                raise ShapeError("every input must have the same number of steps T")
            steps = arr.shape[0]
            out[name] = arr.astype(np.int64)
        if not steps:
            raise ConfigError("`inputs` must have at least one step")
        return out


def from_nir(
    graph: Any,
    *,
    dt: float,
    convention: str = "exact",
    backend: str = "auto",
) -> NIRNetwork:
    """A :class:`NIRNetwork` running ``graph`` (a ``nir.NIRGraph`` or the path of a ``.nir``
    file) with time step ``dt`` seconds under ``convention`` (``"exact"`` or ``"euler"``; see
    the module's docstring). NIR graphs do not carry ``dt``: snnTorch
    0.9-1.0 exports with ``dt = 1e-4``, Norse with the ``dt`` given to its ``to_nir``
    (default ``1e-3``).

    A bias of an Affine enters our neurons as the constant current ``i_ext``; into a CubaLIF
    it skips the synaptic filter (NIR filters it), so its first ``tau_syn`` differs.
    """
    nir = _nir()
    dt = check_positive("dt", dt, "s")
    check_choice("convention", convention, CONVENTIONS)
    if isinstance(graph, str | Path):
        graph = nir.read(str(graph), type_check=False)  # shapes are checked here
    g = _Graph(graph)
    kinds = {n: _kind(g.nodes[n]) for n in g.neurons}
    cuba = {n for n, k in kinds.items() if k in _CUBA}
    if cuba and len(cuba) != len(kinds):
        raise ConfigError(
            f"the graph mixes current-based nodes {sorted(cuba)} with "
            f"{sorted(set(kinds) - cuba)}; neurofabric's synapse model is one per network"
        )
    # neuron parameters, one block per node
    populations, blocks, start = {}, {}, 0
    for name in g.neurons:
        n = g.size[name]
        blocks[name] = _neurons(name, g.nodes[name], n, dt, convention)
        populations[name] = (start, start + n)
        start += n
    tau_syns = {b.tau_syn for b in blocks.values() if b.tau_syn is not None}
    if len(tau_syns) > 1:
        raise ConfigError(
            f"the graph's CubaLIF nodes have different tau_syn {sorted(tau_syns)}; "
            "neurofabric's synaptic time constant is one per network"
        )
    order, back = g.order()
    euler = convention != "exact"
    # latencies: each edge needs >= 1 step here; a discrete framework's feed-forward edge has 0
    latency = {name: 0 for name in g.inputs}
    paths = {n: g.paths_into(n) for n in g.neurons}
    steps_of = {}
    for target in order:
        need = 0
        for p in paths[target]:
            d = _delay_steps(p, dt, target)
            steps_of[id(p)] = d
            live = p.weight != 0
            if (p.source, target) in back or p.source not in latency or not live.any():
                continue
            shortest = int(d[live].min())
            need = max(need, latency[p.source] + 1 - shortest)
        latency[target] = need
    # the network
    n_total = start
    params = {
        key: np.concatenate([blocks[n].params[key] for n in g.neurons])
        for key in ("v_rest", "tau_m", "r_m", "v_th", "v_reset")
    }
    bias = np.zeros(n_total)
    synapses = []  # (source, src range, tgt range, pre, post, weight, steps)
    max_steps = 1
    for target in g.neurons:
        lo, hi = populations[target]
        blk = blocks[target]
        for p in paths[target]:
            bias[lo:hi] += p.bias
            post, pre = np.nonzero(p.weight)
            if not post.size:
                continue
            syn_steps = steps_of[id(p)][post, pre]
            if (p.source, target) in back:
                # a loop reads the previous step's spikes in the discrete frameworks; in
                # exact time a loop without delay gets the shortest one here, one step
                syn_steps = syn_steps + 1 if euler else np.maximum(syn_steps, 1)
            syn_steps = syn_steps + latency[target] - latency[p.source]
            if syn_steps.min() < 1:
                raise ConfigError(
                    f"the path {p.source!r} -> {target!r} would need a delay of "
                    f"{int(syn_steps.min())} steps; neurofabric needs at least one"
                )
            max_steps = max(max_steps, int(syn_steps.max()))
            w = p.weight[post, pre] * blk.gain[post]
            synapses.append((p.source, pre, post + lo, w, syn_steps))
    if np.any(bias != 0):
        for name, blk in blocks.items():
            lo, hi = populations[name]
            if blk.kind in ("IF", "I") and np.any(bias[lo:hi] != 0):
                raise ConfigError(
                    f"NIR node {name!r} ({blk.kind}) gets a bias; neurofabric's neurons leak "
                    "towards v_rest + r i_ext and an IF/I node has no leak to carry it"
                )
    syn_tau = next(iter(tau_syns)) if tau_syns else 5e-3
    model = "cuba" if cuba else "delta"
    if model == "delta":
        syn_tau = max(syn_tau, 10 * dt)  # unused by delta synapses; dt must stay below it
    net = SpikingNetwork(
        n_total,
        neuron=LIFParams(**params, t_ref=0.0, i_ext=bias),
        synapse=SynapseParams(model, tau_e=syn_tau, tau_i=syn_tau),
        dt=dt,
        max_delay=max_steps * dt,
        excitatory_ratio=1.0,
        backend=backend,
    )
    for name in g.inputs:
        net.add_input(name, SpikeArrayInput(g.size[name]))
    for source, pre, post, w, syn_steps in synapses:
        from_input = source in g.inputs
        net.connect(
            Explicit(pre, post, w, delay=syn_steps * dt),
            weight=1.0,
            source=source if from_input else "neurons",
            source_range=None if from_input else populations[source],
            dale=False,
            allow_self=True,
        )
    outputs = {}
    for out in g.outputs:
        feeders = _feeders(g, out)
        if len(feeders) != 1:
            raise ConfigError(
                f"NIR Output {out!r} must read one neuron node directly, got {feeders or 'none'}"
                "; a weight layer into an Output has no neurons here: add an LI node"
            )
        outputs[out] = feeders[0]
    log.info(
        "from_nir: %d nodes, %d neurons, %d projections (%s convention, dt=%g s)",
        len(g.neurons),
        n_total,
        len(synapses),
        convention,
        dt,
    )
    return NIRNetwork(
        network=net,
        populations=populations,
        inputs={name: g.size[name] for name in g.inputs},
        outputs=outputs,
        latency={k: v for k, v in latency.items() if k in populations},
        kinds=kinds,
        dt=dt,
        convention=convention,
        _bias=bias,
    )


def _feeders(g: _Graph, name: str) -> list[str]:
    """The neuron nodes an Output reads, through pass-through nodes only."""
    out = []
    for src in g.incoming[name]:
        kind = _kind(g.nodes[src])
        if src in g.neurons:
            out.append(src)
        elif kind in ("Output", "Input", "Flatten"):
            out.extend(_feeders(g, src))
        else:
            return []
    return out


def _delay_steps(p: _Path, dt: float, target: str) -> np.ndarray:
    steps = p.delay / dt
    rounded = np.rint(steps)
    if not np.allclose(steps, rounded, rtol=0.0, atol=1e-6):
        raise ConfigError(
            f"a Delay on the path {p.source!r} -> {target!r} is not a whole number of steps "
            f"of dt={dt} s; choose a dt that divides it"
        )
    return rounded.astype(np.int64)


# ---------------------------------------------------------------------------- to NIR
def to_nir(network: SpikingNetwork, *, max_dense: int = 50_000_000) -> Any:
    """``network`` as a ``nir.NIRGraph`` in the ``"exact"`` convention: its neurons one
    ``LIF`` node (delta synapses) or ``CubaLIF`` (cuba, one ``tau_e == tau_i``), each input
    group an ``Input`` node, each source group's synapses of one delay a ``Linear`` followed
    by a ``Delay``, a constant current a bias, and an ``Output`` of the neurons' spikes.

    NIR weights are dense: a projection group above ``max_dense`` entries is refused. What
    NIR cannot hold is refused too: conductance synapses, refractory periods (``t_ref``,
    ``t_lock``), procedural storage. Plastic and STP weights are written as they are now;
    a Poisson input becomes an Input the user drives."""
    nir = _nir()
    if not network._built:
        network.build()
    syn, neu = network.synapse, network._neuron_arrays
    if syn.model == "coba":
        raise ConfigError("NIR has no conductance-based neuron: to_nir needs cuba or delta")
    if syn.model == "cuba" and syn.tau_e != syn.tau_i:
        raise ConfigError(
            f"NIR's CubaLIF has one synaptic time constant; got tau_e={syn.tau_e} s and "
            f"tau_i={syn.tau_i} s"
        )
    if np.any(neu["t_ref"] > 0) or np.any(neu["t_lock"] > 0):
        raise ConfigError(
            "NIR's neurons have no refractory period; build the network with "
            "LIFParams(t_ref=0) to export it"
        )
    if network.storage != "csr" or network.procedural_.ip.shape[0]:
        raise ConfigError("to_nir needs storage='csr' (procedural synapses are not stored)")
    n, dt = network.n_neurons, network.dt
    v_th = neu["v_th"] + network.theta_
    nodes: dict[str, Any] = {}
    edges: list[tuple[str, str]] = []
    neuron_name = "neurons"
    r, tau = neu["r_m"], neu["tau_m"]
    if syn.model == "cuba":
        # g = r I and a weight w (volts) is a jump of g: I jumps by w / r = w_in u / tau_syn
        scale = syn.tau_e / r
        nodes[neuron_name] = nir.CubaLIF(
            tau_syn=np.full(n, syn.tau_e),
            tau_mem=tau.copy(),
            r=r.copy(),
            v_leak=neu["v_rest"].copy(),
            v_threshold=v_th.copy(),
            v_reset=neu["v_reset"].copy(),
            w_in=np.ones(n),
        )
    else:
        scale = tau / r  # a Dirac spike of weight u moves v by r u / tau
        nodes[neuron_name] = nir.LIF(
            tau=tau.copy(),
            r=r.copy(),
            v_leak=neu["v_rest"].copy(),
            v_threshold=v_th.copy(),
            v_reset=neu["v_reset"].copy(),
        )
    groups = [("neurons", n, 0, network.csr_)]
    offsets = network._input_offsets
    for name, group in network.inputs.items():
        nodes[name] = nir.Input(input_type=np.array([group.n]))
        groups.append((name, group.n, offsets[name], network.input_csr_))
    bias = neu["i_ext"]
    bias_done = not np.any(bias != 0)
    for name, size, offset, csr in groups:
        if n * size > max_dense:
            raise ConfigError(
                f"the synapses from {name!r} would be a dense {n} x {size} NIR weight "
                f"({n * size} entries > max_dense={max_dense}); NIR has no sparse weight"
            )
        src = csr.sources().astype(np.int64) - offset
        rows = (src >= 0) & (src < size)
        tgt = csr.indices.astype(np.int64)[rows]
        w = csr.synapse_weights().astype(np.float64)[rows]
        d = csr.synapse_delays()[rows]
        src = src[rows]
        for steps in np.unique(d):
            sel = d == steps
            weight = np.zeros((n, size))
            np.add.at(weight, (tgt[sel], src[sel]), w[sel] * scale[tgt[sel]])
            wname = f"w_{name}_d{int(steps)}"
            if not bias_done:
                nodes[wname] = nir.Affine(weight=weight, bias=bias.copy())
                bias_done = True
            else:
                nodes[wname] = nir.Linear(weight=weight)
            dname = f"delay_{name}_d{int(steps)}"
            nodes[dname] = nir.Delay(delay=np.full(n, steps * dt))
            edges += [(name, wname), (wname, dname), (dname, neuron_name)]
    if not bias_done:
        raise ConfigError(
            "the network has a constant current (i_ext) but no synapses to carry it as an "
            "Affine bias in NIR"
        )
    nodes["output"] = nir.Output(output_type=np.array([n]))
    edges.append((neuron_name, "output"))
    return nir.NIRGraph(nodes=nodes, edges=edges)


def write(path: str | Path, network: SpikingNetwork) -> Path:
    """Write ``to_nir(network)`` to ``path`` atomically (:func:`~neurofabric.core.checkpoint.atomic_file`:
    a temporary sibling, fsynced, then renamed)."""
    nir = _nir()
    graph = to_nir(network)
    with atomic_file(path) as tmp:
        nir.write(str(tmp), graph)
    return Path(path)
