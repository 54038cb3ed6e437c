"""Example networks: Vogels & Abbott CUBA and COBA (as in Brian2's examples) and Brunel 2000.

>>> from neurofabric.snn.models import cuba
>>> net = cuba(n_neurons=4000, seed=1)
>>> result = net.run(1.0)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from neurofabric.core.errors import ConfigError
from neurofabric.core.validation import check_positive
from neurofabric.snn.inputs import PoissonInput
from neurofabric.snn.microcircuit import microcircuit as _microcircuit
from neurofabric.snn.network import SpikingNetwork
from neurofabric.snn.params import LIFParams, SynapseParams
from neurofabric.snn.topology import OneToOne, Random

mV = 1e-3
ms = 1e-3


def _vogels_abbott(
    n_neurons: int,
    synapses_per_neuron: float,
    neuron: LIFParams,
    synapse: SynapseParams,
    weight: float,
    inh_weight: float,
    delay: float | None = None,
    **options: Any,
) -> SpikingNetwork:
    """The network both Vogels & Abbott models share: 80 % excitatory, p = k / n, one step of
    delay (``delay``: that many seconds, a multiple of dt), v uniform in [Vr, Vt] =
    [-60, -50] mV."""
    p = _probability(synapses_per_neuron, n_neurons)
    dt = options.get("dt", 0.1 * ms)
    if delay is not None:
        check_positive("delay", delay, "s")
    net = SpikingNetwork(
        n_neurons,
        neuron=neuron,
        synapse=synapse,
        max_delay=dt if delay is None else max(delay, dt),
        v_init=(-60 * mV, -50 * mV),
        **options,
    )
    return net.connect(
        Random(p=p), weight=weight, inh_weight=inh_weight, delay=delay, allow_self=True
    )


def cuba(
    n_neurons: int = 4000,
    *,
    synapses_per_neuron: float = 80.0,
    storage: str = "csr",
    propagation: str = "auto",
    dt: float = 0.1 * ms,
    dtype: str = "float64",
    backend: str = "auto",
    device: str = "cpu",
    seed: int = 0,
    delay: float | None = None,
) -> SpikingNetwork:
    """Vogels & Abbott (2005) current-based network, Brian2's ``CUBA.py``.

    80% excitatory, p = synapses_per_neuron / n (0.02 at 4000), taum 20 ms, taue 5 ms,
    taui 10 ms, Vt -50 mV, Vr -60 mV, El -49 mV, refractory 5 ms, we = 60*0.27/10 mV,
    wi = -20*4.5/10 mV, dt 0.1 ms, v uniform in [Vr, Vt]. Delays: one step (Brian2's), or
    ``delay`` seconds for every synapse.
    """
    return _vogels_abbott(
        n_neurons,
        synapses_per_neuron,
        LIFParams(v_rest=-49 * mV, v_th=-50 * mV, v_reset=-60 * mV, tau_m=20 * ms, t_ref=5 * ms),
        SynapseParams("cuba", tau_e=5 * ms, tau_i=10 * ms),
        60 * 0.27 / 10 * mV,
        20 * 4.5 / 10 * mV,
        storage=storage,
        propagation=propagation,
        dt=dt,
        dtype=dtype,
        backend=backend,
        device=device,
        seed=seed,
        delay=delay,
    )


def coba(
    n_neurons: int = 4000,
    *,
    synapses_per_neuron: float = 80.0,
    storage: str = "csr",
    propagation: str = "auto",
    dt: float = 0.1 * ms,
    dtype: str = "float64",
    backend: str = "auto",
    device: str = "cpu",
    seed: int = 0,
    delay: float | None = None,
) -> SpikingNetwork:
    """Vogels & Abbott (2005) conductance-based network (Brette et al. 2007 benchmark 1).

    El -60 mV, Vt -50 mV, Vr -60 mV, E_exc 0 mV, E_inh -80 mV, drive I = 20 mV, taum 20 ms,
    taue 5 ms, taui 10 ms, refractory 5 ms, we = 0.6 and wi = 6.7 (relative to the leak),
    p = 0.02, v uniform in [Vr, Vt]. The drive enters as R I_ext with R = 10 MOhm, I = 2 nA.
    """
    return _vogels_abbott(
        n_neurons,
        synapses_per_neuron,
        LIFParams(
            v_rest=-60 * mV,
            v_th=-50 * mV,
            v_reset=-60 * mV,
            tau_m=20 * ms,
            t_ref=5 * ms,
            r_m=10e6,
            i_ext=2e-9,
        ),
        SynapseParams("coba", tau_e=5 * ms, tau_i=10 * ms, e_exc=0.0, e_inh=-80 * mV),
        0.6,
        6.7,
        storage=storage,
        propagation=propagation,
        dt=dt,
        dtype=dtype,
        backend=backend,
        device=device,
        seed=seed,
        delay=delay,
    )


def brunel(
    n_neurons: int = 12500,
    *,
    g: float = 5.0,
    eta: float = 2.0,
    epsilon: float = 0.1,
    j: float = 0.1 * mV,
    delay: float = 1.5 * ms,
    storage: str = "csr",
    propagation: str = "auto",
    dt: float = 0.1 * ms,
    backend: str = "auto",
    device: str = "cpu",
    seed: int = 0,
    tau_s: float | None = None,
) -> SpikingNetwork:
    """Brunel (2000) sparse balanced network of delta-synapse LIF neurons (model A).

    ``tau_s`` (seconds): exponential current synapses of that time constant instead of delta
    ones, with the same integrated PSP (weights ``J tau_m / tau_s``), a "CUBA-like" variant
    whose mean field needs the colored-noise correction (:mod:`neurofabric.snn.meanfield`).

    N_E = 4 N_I, in-degree C_E = epsilon N_E and C_I = epsilon N_I, J = 0.1 mV, inhibitory
    weight -g J, delay D = 1.5 ms, tau 20 ms, theta 20 mV, V_r 10 mV, t_ref 2 ms; each neuron
    gets independent Poisson input at C_E * nu_ext with nu_ext = eta * theta / (J C_E tau).
    g = 5, eta = 2 is the asynchronous irregular regime.
    """
    n_exc = int(round(0.8 * n_neurons))
    c_e = max(1, int(round(epsilon * n_exc)))
    c_i = max(1, int(round(epsilon * (n_neurons - n_exc))))
    theta, tau = 20 * mV, 20 * ms
    nu_ext = eta * theta / (j * c_e * tau)
    synapse = SynapseParams("delta")
    if tau_s is not None:
        check_positive("tau_s", tau_s, "seconds")
        synapse = SynapseParams("cuba", tau_e=tau_s, tau_i=tau_s)
        j = j * tau / tau_s  # a current of that size, decaying with tau_s, moves V by J in all
    net = SpikingNetwork(
        n_neurons,
        neuron=LIFParams(v_rest=0.0, v_th=theta, v_reset=10 * mV, tau_m=tau, t_ref=2 * ms),
        synapse=synapse,
        dt=dt,
        storage=storage,
        propagation=propagation,
        max_delay=delay,
        excitatory_ratio=n_exc / n_neurons,
        backend=backend,
        device=device,
        seed=seed,
    )
    net.add_input("poisson", PoissonInput(n_neurons, rate=c_e * nu_ext))
    if storage == "csr":
        net.connect(Random(in_degree=c_e), source_range=(0, n_exc), weight=j, delay=delay)
        net.connect(
            Random(in_degree=c_i),
            source_range=(n_exc, n_neurons),
            weight=j,
            inh_weight=g * j,
            delay=delay,
        )
    else:  # fixed in-degree needs every target's draw: procedural uses the same mean degree
        net.connect(Random(p=epsilon), weight=j, inh_weight=g * j, delay=delay)
    return net.connect(OneToOne(), source="poisson", weight=j, delay=dt)


def _probability(k: float, n: int) -> float:
    check_positive("synapses_per_neuron", k)
    if k > n:
        raise ConfigError(f"`synapses_per_neuron` must be <= {n} (the neurons), got {k}")
    return k / n


MODELS: dict[str, Callable[..., SpikingNetwork]] = {"cuba": cuba, "coba": coba, "brunel": brunel}
#: the Potjans & Diesmann (2014) cortical microcircuit (by scale, not by neuron count)
microcircuit = _microcircuit


def build_model(name: str, **kwargs: Any) -> SpikingNetwork:
    """One of :data:`MODELS` by name; unknown names raise ``ConfigError``."""
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    return MODELS[name](**kwargs)
