"""What the simulation kernels take: named tuples of arrays and the layout of parameter vectors.

Every backend's ``simulate(n_steps, t0, net, state, inputs, mon, counters)`` reads the same
structures (numba compiles a field access on a named tuple to a plain argument: the loops
run as fast as on positional tuples; typing the nested ``Network`` costs the dispatcher
about 7 us a call, against 2,000 steps per call in a run):

* ``net`` (:class:`Network`): what ``SpikingNetwork.build`` assembles once; the neuron
  parameters, the synapses of the recurrent (``rec``) and input (``ext``) groups, the
  procedural rows, the Poisson groups, plasticity, short-term plasticity and homeostasis;
* ``state`` (:class:`State`): the arrays of :class:`neurofabric.snn.state.NetworkState`;
* ``inputs`` (:class:`InputSpikes`): the spikes of the spike-array inputs in this call;
* ``mon`` (:class:`Monitors`): the recording buffers; ``counters``: an int64 vector indexed
  by the ``C_*`` constants below.

Parameter vectors are float64 arrays read by the index constants defined here (numba folds a
module-level integer into the code), so ``params[C_E]`` is the coupling of ``g_e`` into ``v``.
This module imports nothing heavy: the kernels, the shell and the rule classes all use it.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

# ---------------------------------------------------------------- synapse models
MODEL_CUBA = 0
MODEL_COBA = 1
MODEL_DELTA = 2
MODEL_CODES = {"cuba": MODEL_CUBA, "coba": MODEL_COBA, "delta": MODEL_DELTA}

# ---------------------------------------------------------------- Neurons.params rows
# one column per neuron (see reference.py for the equations)
V_INF = 0  # v_rest + R I_ext
V_RESET = 1
V_TH = 2  # threshold, adapted thresholds (homeostasis) included
DECAY_M = 3  # exp(-dt / tau_m)
C_E = 4  # coupling of g_e into v over one step (CUBA)
C_I = 5  # coupling of g_i into v over one step (CUBA)
DT_TAU_M = 6  # dt / tau_m (COBA)
N_NEURON_PARAMS = 7

# ---------------------------------------------------------------- Neurons.syn entries
DECAY_E = 0  # exp(-dt / tau_e)
DECAY_I = 1  # exp(-dt / tau_i)
E_EXC = 2  # reversal potentials (COBA)
E_INH = 3
INH_SIGN = 4  # +1: g_i is a signed current; -1: a conductance (inhibitory weights negated)
DT = 5
N_SYN_CONSTANTS = 6

# ---------------------------------------------------------------- Synapses.flags entries
ROW_WEIGHTS = 0  # 1: one weight per row (``weights`` has a row each), 0: one per synapse
CONST_DELAY = 1  # the delay of every synapse in steps, or -1 (then ``delays`` has one each)

# ---------------------------------------------------------------- counters
C_WRITTEN = 0  # spikes in the spike buffer (the shell drains it)
C_SPIKES = 1  # all spikes so far
C_EVENT_STEPS = 2  # steps propagated by event-driven push
C_DENSE_STEPS = 3  # steps propagated by dense pull
C_RECORDED = 4  # rows of sampled state written in this chunk
C_RECORD_EVERY = 5  # sampling interval in steps (0: no state monitor)
C_MONITORED = 6  # neurons whose spikes are recorded
C_HOMOGENEOUS = 7  # 1 when all neurons share their parameters (a hint)
C_THREADS = 8  # threads for the neuron update (a hint)
N_COUNTERS = 9

#: status codes ``simulate`` returns beside the steps it did
STATUS_DONE = 0
STATUS_DRAIN = 1  # the spike buffer may overflow in the next step: drain it and call again

# ---------------------------------------------------------------- Plastic.rule entries
# (built by the rule classes of neurofabric.snn.plasticity)
RULE_KIND = 0  # KIND_TRIPLET or KIND_DIEHL_COOK
A2_PLUS = 1  # potentiation amplitudes (Diehl & Cook: nu_post)
A3_PLUS = 2
A2_MINUS = 3  # depression amplitudes (Diehl & Cook: nu_pre)
A3_MINUS = 4
W_MIN = 5
W_MAX = 6
MU_PLUS = 7  # soft-bound exponents
MU_MINUS = 8
NEAREST = 9  # 1: nearest-spike traces (set to 1), 0: all-to-all (incremented)
X_TAR = 10  # Diehl & Cook's target of the presynaptic trace
TAU_R1 = 11  # presynaptic traces
TAU_R2 = 12
TAU_O1 = 13  # postsynaptic traces
TAU_O2 = 14
N_RULE_FIELDS = 15
KIND_TRIPLET = 0.0
KIND_DIEHL_COOK = 1.0

# ---------------------------------------------------------------- STP.prm entries
STP_U = 0
STP_TAU_REC = 1
STP_TAU_FACIL = 2
STP_MODULATE = 3  # 0: efficacy w r (release), 1: w (1 + k r) (modulate)
STP_K = 4
N_STP_FIELDS = 5

# ---------------------------------------------------------------- Homeostasis.prm entries
H_KIND = 0  # 0 adaptive threshold, 1 rate target
H_STEP = 1  # theta added per spike
H_DECAY = 2  # theta factor per step
H_DRIFT = 3  # theta subtracted per step
H_FROZEN = 5  # 1: theta fixed
H_THETA_MIN = 6
H_LO = 7  # the neurons [lo, hi) it applies to
H_HI = 8
N_HOMEOSTASIS_FIELDS = 9


class Neurons(NamedTuple):
    """Per-neuron parameters (rows ``V_INF``...), packed refractory/lockout steps (low 16
    bits: refractory steps, above: lockout steps or 0) and the synapse constants."""

    params: np.ndarray
    ref_steps: np.ndarray
    syn: np.ndarray


class Synapses(NamedTuple):
    """Compressed sparse rows of one source group (rows: sources); see ``connectivity.CSR``."""

    indptr: np.ndarray
    indices: np.ndarray
    weights: np.ndarray
    delays: np.ndarray
    flags: np.ndarray


class Incoming(NamedTuple):
    """The transposed index: per target, the sources of its synapses and their CSR
    positions (``pos`` is empty when weight and delay follow from the source)."""

    ptr: np.ndarray
    src: np.ndarray
    pos: np.ndarray


class Procedural(NamedTuple):
    """Row parameters of the procedural projections (see ``kernels.rowgen``) and scratch
    rows the kernels generate into."""

    ip: np.ndarray
    fp: np.ndarray
    keys: np.ndarray
    is_input: np.ndarray
    targets: np.ndarray
    weights: np.ndarray
    delays: np.ndarray


class Poisson(NamedTuple):
    """Poisson groups: first global source, first rate entry, size, stream key per group;
    mean count per step ``lam`` and ``exp(-lam)`` per source."""

    first: np.ndarray
    start: np.ndarray
    size: np.ndarray
    keys: np.ndarray
    lam: np.ndarray
    elam: np.ndarray


class Plastic(NamedTuple):
    """One plastic synapse group: its rule vector (empty: not plastic), the mask of plastic
    synapses (empty: all), two traces per pre- and postsynaptic neuron and the step each
    was last decayed to."""

    rule: np.ndarray
    mask: np.ndarray
    pre: np.ndarray
    pre_last: np.ndarray
    post: np.ndarray
    post_last: np.ndarray


class STP(NamedTuple):
    """Short-term plasticity of one source group: parameters (empty: none), utilization
    ``u``, resources ``x`` and the last spike step of each source."""

    prm: np.ndarray
    u: np.ndarray
    x: np.ndarray
    last: np.ndarray


class Homeostasis(NamedTuple):
    """Threshold homeostasis parameters (empty: none) and the adapted thresholds."""

    prm: np.ndarray
    theta: np.ndarray


class Network(NamedTuple):
    """Everything ``simulate`` reads that is not the dynamic state."""

    model: int
    neurons: Neurons
    rec: Synapses
    rec_csc: Incoming
    dense_limit: int  # -1: push only; else pull when more neurons spike in a step
    ext: Synapses
    ext_csc: Incoming
    procedural: Procedural
    poisson: Poisson
    rec_plastic: Plastic
    ext_plastic: Plastic
    rec_stp: STP
    ext_stp: STP
    homeostasis: Homeostasis


class State(NamedTuple):
    """The dynamic arrays of :class:`neurofabric.snn.state.NetworkState`."""

    v: np.ndarray
    ge: np.ndarray
    gi: np.ndarray
    refrac: np.ndarray
    buf_e: np.ndarray
    buf_i: np.ndarray


class InputSpikes(NamedTuple):
    """Spike-array input events of the call: ``ptr[k]:ptr[k+1]`` are those of step ``k``,
    with global source indices ``idx`` and spike counts ``cnt``."""

    ptr: np.ndarray
    idx: np.ndarray
    cnt: np.ndarray


class Monitors(NamedTuple):
    """Recording buffers: spike mask, spike buffer (steps, indices), spikes per step, the
    sampled neurons and their sampled v, g_e, g_i, and two scratch vectors of n."""

    spk_mask: np.ndarray
    spk_t: np.ndarray
    spk_i: np.ndarray
    rate: np.ndarray
    rec_idx: np.ndarray
    rec_v: np.ndarray
    rec_ge: np.ndarray
    rec_gi: np.ndarray
    spiked: np.ndarray
    flag: np.ndarray


def no_incoming() -> Incoming:
    return Incoming(np.zeros(1, np.int64), np.empty(0, np.int32), np.empty(0, np.int32))


def no_plasticity() -> Plastic:
    return Plastic(
        np.empty(0),
        np.empty(0, np.uint8),
        np.zeros((2, 0)),
        np.zeros(0, np.int64),
        np.zeros((2, 0)),
        np.zeros(0, np.int64),
    )


def no_stp() -> STP:
    return STP(np.empty(0), np.zeros(0), np.zeros(0), np.zeros(0, np.int64))
