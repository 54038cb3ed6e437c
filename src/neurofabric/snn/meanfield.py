"""Mean-field LIF populations: the Siegert transfer function and the rates it implies.

In the diffusion approximation (Amit & Brunel 1997; Brunel 2000, J. Comput. Neurosci. 8:183),
a LIF neuron (membrane time constant ``tau_m``, threshold ``theta``, reset ``v_reset``,
refractory period ``t_ref``, potentials relative to rest) driven by many small independent
Poisson inputs, input ``k`` arriving at rate ``r_k`` with ``c_k`` synapses of weight ``J_k``
(a jump of the membrane potential, delta synapses), sees a Gaussian input of mean and variance

    mu      = tau_m * sum_k c_k J_k r_k
    sigma^2 = tau_m * sum_k c_k J_k^2 r_k

and fires at the rate of the first-passage problem (Siegert 1951)

    1 / nu = t_ref + tau_m sqrt(pi) * integral from (v_reset - mu)/sigma to (theta - mu)/sigma
                                      of exp(u^2) (1 + erf u) du .

``exp(u^2) (1 + erf u)`` is ``erfcx(-u)`` (scipy), which keeps the integrand finite where the
two factors alone would overflow. A recurrent population's stationary rate solves
``nu = phi(mu(nu), sigma(nu))`` (:func:`stationary_rate`); :class:`RateModel` integrates the
same fixed point in time, ``tau_r dnu/dt = phi(mu(nu_in), sigma(nu_in)) - nu``, the rate model
that a mean-field region of :mod:`neurofabric.snn.brain` steps.

Valid where the network is asynchronous and irregular and each PSP is small against
``theta - v_reset``; in synchronous regimes (e.g. Brunel's g < 4) the rates of the spiking
network oscillate and the stationary rate is only their mean, or wrong
(``benchmarks/snn_brain.py`` shows where).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import integrate, optimize, special

from neurofabric.core.errors import ConfigError
from neurofabric.core.validation import check_nonnegative, check_positive

__all__ = ["LIFPopulation", "RateModel", "brunel_population", "siegert", "stationary_rate"]

_TOP = 26.0  # erfcx(-u) ~ 2 exp(u^2): beyond this the rate is below 1e-290 Hz
_ALPHA = math.sqrt(2.0) * abs(float(special.zeta(0.5)))  # Fourcaud & Brunel's 2.0652


def siegert(
    mu: float, sigma: float, *, tau_m: float, theta: float, v_reset: float, t_ref: float
) -> float:
    """Firing rate (Hz) of a LIF neuron with Gaussian input of mean ``mu`` and standard
    deviation ``sigma`` (volts, relative to rest; times in seconds)."""
    check_positive("tau_m", tau_m, "seconds")
    check_nonnegative("t_ref", t_ref, "seconds")
    if not v_reset < theta:
        raise ConfigError(f"`v_reset` must be below `theta` ({theta}), got {v_reset}")
    if sigma <= 0:  # deterministic input: the integrate-and-fire period
        if mu <= theta:
            return 0.0
        return 1.0 / (t_ref + tau_m * math.log((mu - v_reset) / (mu - theta)))
    hi = (theta - mu) / sigma
    lo = (v_reset - mu) / sigma
    if lo > _TOP:
        return 0.0
    hi = min(hi, _TOP + 10.0)
    value, _ = integrate.quad(lambda u: special.erfcx(-u), lo, hi, limit=200)
    period = t_ref + tau_m * math.sqrt(math.pi) * value
    return 0.0 if not math.isfinite(period) or period <= 0 else 1.0 / period


@dataclass(frozen=True)
class LIFPopulation:
    """One homogeneous LIF population with recurrent and external Poisson inputs.

    ``c_exc``/``c_inh``: recurrent in-degrees from the excitatory and inhibitory populations
    (both firing at the population's rate, as in Brunel's model A); ``j``: the excitatory PSP
    jump (V), the inhibitory one ``-g j``; ``c_ext`` inputs at ``rate_ext`` (Hz) each with
    jump ``j_ext`` (default ``j``)."""

    tau_m: float = 0.02
    theta: float = 0.02
    v_reset: float = 0.01
    t_ref: float = 0.002
    c_exc: int = 1000
    c_inh: int = 250
    j: float = 0.1e-3
    g: float = 5.0
    c_ext: int = 1000
    rate_ext: float = 20.0
    j_ext: float | None = None
    tau_s: float = 0.0

    def moments(self, nu: float, extra_rate: float = 0.0) -> tuple[float, float]:
        """(mu, sigma) of the input when the population fires at ``nu`` Hz; ``extra_rate``
        adds Poisson input through the external synapses (Hz per synapse)."""
        je = self.j if self.j_ext is None else self.j_ext
        r_ext = self.rate_ext + extra_rate
        jg = -self.g * self.j
        mu = self.tau_m * (
            self.c_ext * je * r_ext + self.c_exc * self.j * nu + self.c_inh * jg * nu
        )
        var = self.tau_m * (
            self.c_ext * je**2 * r_ext + self.c_exc * self.j**2 * nu + self.c_inh * jg**2 * nu
        )
        return mu, math.sqrt(max(var, 0.0))

    def transfer(self, nu: float, extra_rate: float = 0.0) -> float:
        """phi(nu): the rate a neuron fires at when its inputs fire at ``nu``. With synapses
        of time constant ``tau_s`` (exponential currents, ``J`` their integrated jump) the
        threshold and the reset move up by ``sigma alpha / 2 sqrt(tau_s / tau_m)``,
        ``alpha = sqrt(2) |zeta(1/2)|`` (Fourcaud & Brunel 2002: colored noise, to first order
        in ``sqrt(tau_s / tau_m)``)."""
        mu, sigma = self.moments(nu, extra_rate)
        shift = sigma * _ALPHA / 2 * math.sqrt(self.tau_s / self.tau_m) if self.tau_s else 0.0
        return siegert(
            mu,
            sigma,
            tau_m=self.tau_m,
            theta=self.theta + shift,
            v_reset=self.v_reset + shift,
            t_ref=self.t_ref,
        )


def brunel_population(
    n_neurons: int = 12500,
    *,
    g: float = 5.0,
    eta: float = 2.0,
    epsilon: float = 0.1,
    j: float = 0.1e-3,
    tau_s: float = 0.0,
) -> LIFPopulation:
    """The population of :func:`neurofabric.snn.models.brunel` (model A) with the same
    in-degrees and drive: ``nu_ext = eta * theta / (J C_E tau)`` on ``C_E`` external synapses."""
    n_exc = int(round(0.8 * n_neurons))
    c_e = max(1, int(round(epsilon * n_exc)))
    c_i = max(1, int(round(epsilon * (n_neurons - n_exc))))
    theta, tau = 0.02, 0.02
    nu_ext = eta * theta / (j * c_e * tau)
    return LIFPopulation(c_exc=c_e, c_inh=c_i, j=j, g=g, c_ext=c_e, rate_ext=nu_ext, tau_s=tau_s)


def stationary_rate(pop: LIFPopulation, *, extra_rate: float = 0.0, n_grid: int = 400) -> float:
    """The lowest stable fixed point ``nu = phi(nu)`` (Hz): ``phi(nu) - nu`` is scanned on a
    grid up to ``1 / t_ref`` and the first sign change from + to - is refined by Brent's
    method."""
    top = 1.0 / pop.t_ref if pop.t_ref > 0 else 1000.0
    grid = np.concatenate([[0.0], np.geomspace(1e-3, top * 0.999, n_grid)])
    f = np.array([pop.transfer(v, extra_rate) - v for v in grid])
    for a, b, fa, fb in zip(grid[:-1], grid[1:], f[:-1], f[1:], strict=True):
        if fa == 0.0:
            return float(a)
        if fa > 0 > fb:
            return float(
                optimize.brentq(lambda v: pop.transfer(v, extra_rate) - v, a, b, xtol=1e-9)
            )
    raise ConfigError(
        f"no stable rate below {top:g} Hz (1 / t_ref, or 1 kHz without one): the population "
        "saturates; lower the drive or raise g"
    )


class RateModel:
    """``tau_r dnu/dt = phi(nu_in) - nu``: a mean-field population in time (exponential Euler
    steps of ``dt``). ``nu_in`` is the population's own rate (recurrence) and ``extra_rate``
    any other input arriving through the external synapses."""

    def __init__(
        self, pop: LIFPopulation, *, tau_r: float = 0.01, rate: float | None = None
    ) -> None:
        check_positive("tau_r", tau_r, "seconds")
        self.pop, self.tau_r = pop, tau_r
        self.rate = stationary_rate(pop) if rate is None else float(rate)

    def step(self, dt: float, extra_rate: float = 0.0) -> float:
        target = self.pop.transfer(self.rate, extra_rate)
        self.rate = target + (self.rate - target) * math.exp(-dt / self.tau_r)
        return self.rate
