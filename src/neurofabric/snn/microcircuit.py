"""The Potjans & Diesmann (2014) cortical microcircuit: its published parameters and what
follows from them at any scale (populations, synapse counts, weights, delays, background).

This module holds the model's facts and their derivation, as NEST's PyNEST example
(``pynest/examples/Potjans_2014``: ``network_params.py``, ``sim_params.py``, ``helpers.py``,
``network.py``) defines them; :func:`microcircuit_spec` is pure (no network is built), so every
number can be checked on its own; :func:`microcircuit` builds the network from it.

Units here are NEST's: ms, mV, pA, pF, Hz. The simulator's current-based exponential synapse
(``SynapseParams("cuba")``) takes weights as voltages (current x R, R = tau_m / C_m = 40 MOhm):
:attr:`MicrocircuitSpec.weight_mv` gives them.

>>> s = microcircuit_spec(scale=0.1, k_scale=0.1)
>>> int(s.n_neurons.sum()), int(s.n_synapses.sum())
(7717, 2988807)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from neurofabric.core.errors import ConfigError
from neurofabric.core.validation import check_choice, check_interval

__all__ = [
    "POPULATIONS",
    "N_FULL",
    "CONN_PROBS",
    "K_EXT",
    "NEURON",
    "MicrocircuitSpec",
    "microcircuit_spec",
    "psc_over_psp",
    "full_synapse_counts",
    "microcircuit",
]

#: population names, NEST's order (E and I of each layer interleaved)
POPULATIONS = ("L23E", "L23I", "L4E", "L4I", "L5E", "L5I", "L6E", "L6I")
#: neurons per population at full scale (77,169 in all)
N_FULL = np.array([20683, 5834, 21915, 5479, 4850, 1065, 14395, 2948], dtype=np.int64)
#: connection probabilities, ``CONN_PROBS[target, source]`` (NEST: "the first index
#: corresponds to the targets and the second to the sources"); 9 zeros: 55 projections
CONN_PROBS = np.array(
    [
        [0.1009, 0.1689, 0.0437, 0.0818, 0.0323, 0.0, 0.0076, 0.0],
        [0.1346, 0.1371, 0.0316, 0.0515, 0.0755, 0.0, 0.0042, 0.0],
        [0.0077, 0.0059, 0.0497, 0.135, 0.0067, 0.0003, 0.0453, 0.0],
        [0.0691, 0.0029, 0.0794, 0.1597, 0.0033, 0.0, 0.1057, 0.0],
        [0.1004, 0.0622, 0.0505, 0.0057, 0.0831, 0.3726, 0.0204, 0.0],
        [0.0548, 0.0269, 0.0257, 0.0022, 0.06, 0.3158, 0.0086, 0.0],
        [0.0156, 0.0066, 0.0211, 0.0166, 0.0572, 0.0197, 0.0396, 0.2252],
        [0.0364, 0.001, 0.0034, 0.0005, 0.0277, 0.008, 0.0658, 0.1443],
    ]
)
#: external (background) in-degree per population, at ``BG_RATE`` Hz each
K_EXT = np.array([1600, 1500, 2100, 1900, 2000, 1900, 2900, 2100], dtype=np.int64)
BG_RATE = 8.0
#: ``iaf_psc_exp`` as the model uses it (ms, pF, mV); dt 0.1 ms (``sim_params.py``)
NEURON = {
    "C_m": 250.0,
    "tau_m": 10.0,
    "tau_syn": 0.5,
    "t_ref": 2.0,
    "E_L": -65.0,
    "V_reset": -65.0,
    "V_th": -50.0,
}
DT = 0.1
PSP_MEAN = 0.15  # mV, the peak of an excitatory PSP
WEIGHT_REL_SD = 0.1
G = -4.0  # inhibitory PSPs are g times the excitatory one
DELAY_MEAN = {"E": 1.5, "I": 0.75}  # ms, by the source's type
DELAY_REL_SD = 0.5
#: initial membrane potentials, "optimized" (per population) and "original" (N(-58, 10) mV)
V0_OPTIMIZED_MEAN = np.array([-68.28, -63.16, -63.33, -63.45, -63.11, -61.66, -66.72, -61.43])
V0_OPTIMIZED_SD = np.array([5.36, 4.57, 4.74, 4.94, 4.94, 4.55, 5.46, 4.48])
#: population rates of one NEST run at full scale (Hz; ``network_params.py``'s
#: ``full_mean_rates``, which the k_scale compensation uses). One run: not a reference for
#: validation on its own (NEST's file says so; versions differ by 5-9 %)
FULL_MEAN_RATES = np.array([0.903, 2.965, 4.414, 5.876, 7.569, 8.633, 1.105, 7.829])

_IS_EXC = np.array([p.endswith("E") for p in POPULATIONS])


def psc_over_psp(c_m: float, tau_m: float, tau_syn: float) -> float:
    """pA of an exponential postsynaptic current per mV of the PSP's peak it causes in a LIF
    neuron (NEST ``helpers.postsynaptic_potential_to_current``): 585.39 pA/mV here."""
    sub = 1.0 / (tau_syn - tau_m)
    pre = tau_m * tau_syn / c_m * sub
    frac = (tau_m / tau_syn) ** sub
    return 1.0 / (pre * (frac**tau_m - frac**tau_syn))


def full_synapse_counts() -> np.ndarray:
    """Synapses per projection at full scale, ``[target, source]``, unrounded: the number K of
    independent uniform draws for which a pair is connected with probability p, i.e.
    ``log(1 - p) / log(1 - 1 / (N_post N_pre))``, computed as NEST's
    ``num_synapses_from_conn_probs`` writes it (``log((prod - 1) / prod)``, which loses ~1e-7
    of relative precision against ``log1p``: kept so that the counts are NEST's, to the
    synapse)."""
    prod = np.outer(N_FULL, N_FULL).astype(np.float64)
    return np.log(1.0 - CONN_PROBS) / np.log((prod - 1.0) / prod)


@dataclass(frozen=True)
class MicrocircuitSpec:
    """Everything needed to build the microcircuit at one scale (NEST's units)."""

    scale: float
    k_scale: float
    background: str
    n_neurons: np.ndarray  # per population
    n_synapses: np.ndarray  # [target, source], fixed total number per projection
    weight_pa: np.ndarray  # [target, source] mean PSC amplitude (sign: source type)
    weight_sd_pa: np.ndarray  # [target, source]
    delay_ms: np.ndarray  # [source] mean
    delay_sd_ms: np.ndarray  # [source]
    k_ext: np.ndarray  # per population, scaled external in-degree
    bg_rate_hz: np.ndarray  # per population: Poisson input rate per neuron (0 with "dc")
    weight_ext_pa: float
    dc_pa: np.ndarray  # per population: constant input current
    v0_mean_mv: np.ndarray
    v0_sd_mv: np.ndarray

    @property
    def r_mohm(self) -> float:
        """Membrane resistance tau_m / C_m (MOhm: ms / pF = GOhm, times 1000)."""
        return NEURON["tau_m"] / NEURON["C_m"] * 1e3

    @property
    def weight_mv(self) -> np.ndarray:
        """Mean weights as the simulator's cuba synapse takes them: R x PSC, in mV."""
        return self.weight_pa * self.r_mohm * 1e-3

    def groups(self) -> list[tuple[str, int, int]]:
        """``(population, first neuron, stop)`` in NEST's order: the neuron ranges of a network
        built from this spec, for :mod:`neurofabric.snn.analysis` and ``plot_raster_groups``."""
        stops = np.cumsum(self.n_neurons)
        return [
            (name, int(stop - n), int(stop))
            for name, n, stop in zip(POPULATIONS, self.n_neurons, stops, strict=True)
        ]

    @property
    def in_degree(self) -> np.ndarray:
        """Mean synapses per target neuron, ``[target, source]``."""
        return self.n_synapses / np.maximum(self.n_neurons, 1)[:, None]


def microcircuit_spec(
    scale: float = 1.0,
    k_scale: float = 1.0,
    *,
    background: str = "poisson",
    v0: str = "optimized",
) -> MicrocircuitSpec:
    """The model at ``scale`` (neurons: ``round(N_full * scale)``) and ``k_scale`` (in-degrees:
    ``round(K_full * scale * k_scale)`` synapses per projection, counted from the full-scale
    sizes as NEST does). With ``k_scale < 1`` the weights are divided by sqrt(k_scale) and a DC
    makes up the lost mean input at the full-scale rates (NEST
    ``adjust_weights_and_input_to_synapse_scaling``), so the rates stay near the full model's.
    ``background``: "poisson" (8 Hz per external synapse) or "dc" (its mean as a current)."""
    check_interval("scale", scale, 0.0, 1.0, low_open=True)
    check_interval("k_scale", k_scale, 0.0, 1.0, low_open=True)
    check_choice("background", background, ("poisson", "dc"))
    check_choice("v0", v0, ("optimized", "original"))
    n = np.round(N_FULL * scale).astype(np.int64)
    if (n < 1).any():
        small = [p for p, k in zip(POPULATIONS, n.tolist(), strict=True) if k < 1]
        raise ConfigError(
            f"`scale` {scale} leaves populations {small} without neurons; use scale >= "
            f"{0.5 / N_FULL.min():.5f}"
        )
    full_k = full_synapse_counts()
    n_syn = np.round(full_k * scale * k_scale).astype(np.int64)
    j = PSP_MEAN * psc_over_psp(NEURON["C_m"], NEURON["tau_m"], NEURON["tau_syn"])
    w = np.where(_IS_EXC[None, :], j, G * j) * np.ones((8, 1))
    w[0, 2] *= 2.0  # L4E -> L2/3E is doubled
    w_ext = j
    k_ext = np.round(K_EXT * k_scale).astype(np.int64)
    tau_s = NEURON["tau_syn"] * 1e-3  # s: rate (Hz) x charge (pA s) = pA
    dc = np.zeros(8) if background == "poisson" else BG_RATE * K_EXT * j * tau_s
    if k_scale < 1.0:
        full_in = full_k / N_FULL[:, None]  # full-scale in-degrees
        lost = tau_s * (1.0 - math.sqrt(k_scale))
        dc = dc + lost * (w * full_in) @ FULL_MEAN_RATES
        if background == "poisson":
            dc = dc + lost * j * K_EXT * BG_RATE
        w = w / math.sqrt(k_scale)
        w_ext = w_ext / math.sqrt(k_scale)
    dmean = np.where(_IS_EXC, DELAY_MEAN["E"], DELAY_MEAN["I"])
    if v0 == "optimized":
        v_mean, v_sd = V0_OPTIMIZED_MEAN.copy(), V0_OPTIMIZED_SD.copy()
    else:
        v_mean, v_sd = np.full(8, -58.0), np.full(8, 10.0)
    return MicrocircuitSpec(
        scale=scale,
        k_scale=k_scale,
        background=background,
        n_neurons=n,
        n_synapses=n_syn,
        weight_pa=w,
        weight_sd_pa=np.abs(w) * WEIGHT_REL_SD,
        delay_ms=dmean,
        delay_sd_ms=dmean * DELAY_REL_SD,
        k_ext=k_ext,
        bg_rate_hz=(BG_RATE * k_ext).astype(np.float64) if background == "poisson" else np.zeros(8),
        weight_ext_pa=w_ext,
        dc_pa=dc,
        v0_mean_mv=v_mean,
        v0_sd_mv=v_sd,
    )


def microcircuit(
    scale: float = 1.0,
    k_scale: float = 1.0,
    background: str = "poisson",
    seed: int = 0,
    *,
    v0: str = "optimized",
    nest_timing: bool = True,
    dt: float = 1e-4,
    dtype: str = "float64",
    backend: str = "auto",
    device: str = "cpu",
    propagation: str = "event",
):
    """The cortical microcircuit as a :class:`SpikingNetwork` (not built yet): the neurons of
    the 8 populations in NEST's order (``microcircuit_spec(scale, k_scale).groups()`` gives
    their ranges), 55 :class:`FixedTotalNumber` projections with normal weights and
    :class:`Normal` delays, current-based exponential synapses (tau_syn 0.5 ms; weights as
    R x PSC, R = 40 MOhm), per-population DC and initial potentials, and with
    ``background="poisson"`` one Poisson train per neuron at 8 Hz x K_ext.

    ``nest_timing``: NEST adds a step's arriving input after that step's membrane update, this
    simulator before it, so every delay gets one more step to give NEST's dynamics (``False``:
    the delays as drawn); ``benchmarks/snn_nest_timing.py`` checks it on one synapse: the
    membrane trace equals NEST 3.10's to 4e-9 mV with the extra step, 0.03 mV off without. Weights are signed by their source's type and drawn normal without
    NEST's redraw at zero (10 sd away: never in practice). Rates in ``"dc"`` mode differ from
    the Poisson model's (the DC replaces the mean of the input, not its noise). ``backend``
    and ``device`` as for :class:`SpikingNetwork` (``backend="torch", device="cuda"`` runs it
    on a GPU)."""
    from neurofabric.core.validation import check_int
    from neurofabric.snn import FixedTotalNumber, LIFParams, OneToOne, PoissonInput, SynapseParams
    from neurofabric.snn.connectivity import Normal
    from neurofabric.snn.network import SpikingNetwork

    check_int("seed", seed, min_value=0)
    s = microcircuit_spec(scale, k_scale, background=background, v0=v0)
    sizes = s.n_neurons
    n = int(sizes.sum())
    groups = s.groups()
    rng = np.random.default_rng(np.random.SeedSequence([seed, 2014]))
    v_init = rng.normal(np.repeat(s.v0_mean_mv, sizes), np.repeat(s.v0_sd_mv, sizes)) * 1e-3
    r_ohm = s.r_mohm * 1e6
    offset = dt if nest_timing else 0.0
    # the longest delay kept: 8 sd above the excitatory mean (P(beyond) ~ 6e-16 a synapse)
    max_delay = DELAY_MEAN["E"] * (1 + 8 * DELAY_REL_SD) * 1e-3 + offset + dt
    net = SpikingNetwork(
        n,
        neuron=LIFParams(
            v_rest=NEURON["E_L"] * 1e-3,
            v_th=NEURON["V_th"] * 1e-3,
            v_reset=NEURON["V_reset"] * 1e-3,
            tau_m=NEURON["tau_m"] * 1e-3,
            t_ref=NEURON["t_ref"] * 1e-3,
            r_m=r_ohm,
            i_ext=np.repeat(s.dc_pa, sizes) * 1e-12,
        ),
        synapse=SynapseParams(
            "cuba", tau_e=NEURON["tau_syn"] * 1e-3, tau_i=NEURON["tau_syn"] * 1e-3
        ),
        dt=dt,
        storage="csr",
        propagation=propagation,
        max_delay=max_delay,
        v_init=v_init,
        dtype=dtype,
        backend=backend,
        device=device,
        seed=seed,
    )
    w_v = s.weight_pa * 1e-12 * r_ohm
    for i, (_, t0, t1) in enumerate(groups):
        for j, (_, s0, s1) in enumerate(groups):
            if s.n_synapses[i, j] == 0:
                continue
            net.connect(
                FixedTotalNumber(int(s.n_synapses[i, j])),
                weight=float(w_v[i, j]),
                weight_std=float(abs(w_v[i, j]) * WEIGHT_REL_SD),
                delay=Normal(
                    mean=s.delay_ms[j] * 1e-3 + offset,
                    sd=s.delay_sd_ms[j] * 1e-3,
                    low=dt + offset,
                    high=max_delay,
                ),
                source_range=(s0, s1),
                target_range=(t0, t1),
                allow_self=True,
                dale=False,
            )
    if background == "poisson":
        net.add_input("background", PoissonInput(n, rate=np.repeat(s.bg_rate_hz, sizes)))
        net.connect(
            OneToOne(), source="background", weight=s.weight_ext_pa * 1e-12 * r_ohm, delay=dt
        )
    return net
