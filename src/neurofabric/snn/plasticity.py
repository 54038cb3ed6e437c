r"""Synaptic plasticity rules, attached to projections with ``connect(..., plasticity=rule)``.

All rules run on per-neuron exponential traces, updated event-driven: a trace is decayed to
the current step (``x <- x exp(-k dt / tau)``) the first time it is read in that step, and
incremented (all-to-all interaction) or set to 1 (nearest-spike interaction) by its neuron's
spikes. Within one time step, presynaptic events are processed before postsynaptic ones, so a
pre and a post spike in the same step count as pre-before-post. The time of a presynaptic
event is the step its spike was emitted (input events: the step they are delivered to the
network); synaptic delays do not shift it.

Triplet family (Pfister & Gerstner 2006, J. Neurosci. 26:9673; pair STDP is A3 = 0). Traces
``r1`` (tau_plus), ``r2`` (tau_x) of the presynaptic neuron, ``o1`` (tau_minus), ``o2``
(tau_y) of the postsynaptic neuron::

    pre spike:   w <- w - o1 [A2- + A3- r2(before)] f_-(w);   r1, r2 += 1
    post spike:  w <- w + r1 [A2+ + A3+ o2(before)] f_+(w);   o1, o2 += 1

with ``f_+(w) = (w_max - w)^mu``, ``f_-(w) = (w - w_min)^mu`` (mu = 0: additive, mu = 1:
multiplicative, i.e. soft bounds), then ``w`` is clipped to [w_min, w_max] (hard bounds).
For a single pair at ``dt = t_post - t_pre``: ``A2+ exp(-dt/tau_plus)`` if dt >= 0, else
``-A2- exp(dt/tau_minus)``.

Diehl & Cook (2015, Front. Comput. Neurosci. 9:99): ``x_pre`` (tau_pre), ``x_post``
(tau_post)::

    pre spike:   w <- w - nu_pre x_post;                               x_pre  (+= 1 | = 1)
    post spike:  w <- w + nu_post (x_pre - x_tar) (w_max - w)^mu;       x_post (+= 1 | = 1)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from neurofabric.core.errors import ConfigError
from neurofabric.core.validation import (
    check_choice,
    check_instance,
    check_nonnegative,
    check_positive,
)
from neurofabric.snn.kernels import layout as L

KIND_TRIPLET = 0
KIND_DIEHL_COOK = 1
# layout of the float64 parameter vector the kernels read
RULE_FIELDS = (
    "kind",
    "a2_plus",
    "a3_plus",
    "a2_minus",
    "a3_minus",
    "w_min",
    "w_max",
    "mu_plus",
    "mu_minus",
    "nearest",
    "x_tar",
    "tau_r1",
    "tau_r2",
    "tau_o1",
    "tau_o2",
)


def _check_common(rule: Any) -> None:
    check_choice("interaction", rule.interaction, ("all", "nearest"))
    if not rule.w_max > rule.w_min:
        raise ConfigError(f"`w_max` must be > `w_min`, got w_min={rule.w_min}, w_max={rule.w_max}")


def _check_triplet_family(rule: Any, amplitudes: tuple[str, ...], taus: tuple[str, ...]) -> None:
    for name in amplitudes:
        check_nonnegative(name, getattr(rule, name))
    for name in taus:
        check_positive(name, getattr(rule, name), "s")
    check_choice("weight_dependence", rule.weight_dependence, ("additive", "multiplicative"))
    _check_common(rule)


def _triplet_vector(
    rule: Any,
    a2p: float,
    a3p: float,
    a2m: float,
    a3m: float,
    t_r1: float,
    t_r2: float,
    t_o1: float,
    t_o2: float,
) -> np.ndarray:
    mu = 1.0 if rule.weight_dependence == "multiplicative" else 0.0
    return _vector(
        KIND_TRIPLET,
        a2p,
        a3p,
        a2m,
        a3m,
        rule.w_min,
        rule.w_max,
        mu,
        mu,
        rule.interaction,
        0.0,
        t_r1,
        t_r2,
        t_o1,
        t_o2,
    )


@dataclass(frozen=True)
class PairSTDP:
    """Pair-based STDP with exponential windows (Bi & Poo 1998; Song, Miller & Abbott 2000).

    ``weight_dependence="additive"`` (hard bounds only) or ``"multiplicative"`` (updates
    scale with the distance to the bound: soft bounds), ``interaction="all"`` or
    ``"nearest"``. Amplitudes are in weight units.
    """

    a_plus: float = 0.01
    a_minus: float = 0.0105
    tau_plus: float = 20e-3
    tau_minus: float = 20e-3
    w_min: float = 0.0
    w_max: float = 1.0
    weight_dependence: str = "additive"
    interaction: str = "all"

    def __post_init__(self) -> None:
        _check_triplet_family(self, ("a_plus", "a_minus"), ("tau_plus", "tau_minus"))

    def vector(self) -> np.ndarray:
        return _triplet_vector(
            self,
            self.a_plus,
            0.0,
            self.a_minus,
            0.0,
            self.tau_plus,
            self.tau_plus,
            self.tau_minus,
            self.tau_minus,
        )


# Pfister & Gerstner (2006), Tables 3 (visual cortex) and 4 (hippocampus):
# (A2+, A3+, A2-, A3-, tau_x [s], tau_y [s], interaction). In the minimal models tau_x has no
# effect (its amplitude is 0) and is set to tau_+; the paper prints it as "-".
TRIPLET_PRESETS: dict[str, tuple[float, float, float, float, float, float, str]] = {
    "visual_cortex_all_to_all_full": (5e-10, 6.2e-3, 7e-3, 2.3e-4, 101e-3, 125e-3, "all"),
    "visual_cortex_all_to_all_minimal": (0.0, 6.5e-3, 7.1e-3, 0.0, 16.8e-3, 114e-3, "all"),
    "visual_cortex_nearest_full": (8.8e-11, 5.3e-2, 6.6e-3, 3.1e-3, 714e-3, 40e-3, "nearest"),
    "hippocampal_all_to_all_full": (6.1e-3, 6.7e-3, 1.6e-3, 1.4e-3, 946e-3, 27e-3, "all"),
    "hippocampal_all_to_all_minimal": (5.3e-3, 8e-3, 3.5e-3, 0.0, 16.8e-3, 40e-3, "all"),
    "hippocampal_nearest_full": (4.6e-3, 9.1e-3, 3e-3, 7.5e-9, 575e-3, 47e-3, "nearest"),
}


@dataclass(frozen=True)
class TripletSTDP:
    """Triplet STDP of Pfister & Gerstner (2006, J. Neurosci. 26:9673): a post spike adds
    ``r1 (A2+ + A3+ o2)`` and a pre spike ``-o1 (A2- + A3- r2)``, each triplet term read just
    before its own trace is incremented; ``interaction="all"`` adds 1 to a trace per spike,
    ``"nearest"`` sets it to 1.

    Time constants in seconds, amplitudes in weight units. :meth:`preset` gives the paper's
    fitted parameter sets (visual cortex, Sjostrom et al. 2001: Table 3; hippocampal
    cultures, Wang et al. 2005: Table 4), with tau_+ = 16.8 ms and tau_- = 33.7 ms.
    """

    a2_plus: float = 5e-3
    a3_plus: float = 6e-3
    a2_minus: float = 7e-3
    a3_minus: float = 2e-4
    tau_plus: float = 16.8e-3
    tau_x: float = 101e-3
    tau_minus: float = 33.7e-3
    tau_y: float = 125e-3
    w_min: float = 0.0
    w_max: float = 1.0
    weight_dependence: str = "additive"
    interaction: str = "all"

    def __post_init__(self) -> None:
        _check_triplet_family(
            self,
            ("a2_plus", "a3_plus", "a2_minus", "a3_minus"),
            ("tau_plus", "tau_x", "tau_minus", "tau_y"),
        )

    @classmethod
    def preset(cls, name: str, *, w_scale: float = 1.0, **overrides: Any) -> TripletSTDP:
        """A published parameter set of Pfister & Gerstner (2006), by name (see
        ``TRIPLET_PRESETS``). The paper's amplitudes are relative weight changes:
        ``w_scale`` multiplies them (pass the typical weight of the projection). Other
        fields (``w_max``, ``weight_dependence``...) come from ``overrides``.

        The visual-cortex nearest-spike minimal set and the hippocampal nearest-spike minimal
        set are not shipped: the public sources we could check disagree on or only once
        quote their values, and the paper's tables were not at hand to settle them."""
        if name not in TRIPLET_PRESETS:
            raise ConfigError(f"unknown triplet preset {name!r}; known: {sorted(TRIPLET_PRESETS)}")
        check_positive("w_scale", w_scale)
        a2p, a3p, a2m, a3m, tau_x, tau_y, interaction = TRIPLET_PRESETS[name]
        fields: dict[str, Any] = {
            "a2_plus": a2p * w_scale,
            "a3_plus": a3p * w_scale,
            "a2_minus": a2m * w_scale,
            "a3_minus": a3m * w_scale,
            "tau_plus": 16.8e-3,
            "tau_x": tau_x,
            "tau_minus": 33.7e-3,
            "tau_y": tau_y,
            "interaction": interaction,
        }
        fields.update(overrides)
        return cls(**fields)

    def vector(self) -> np.ndarray:
        return _triplet_vector(
            self,
            self.a2_plus,
            self.a3_plus,
            self.a2_minus,
            self.a3_minus,
            self.tau_plus,
            self.tau_x,
            self.tau_minus,
            self.tau_y,
        )


@dataclass(frozen=True)
class DiehlCookSTDP:
    """The learning rule of Diehl & Cook (2015): depression on pre spikes by the post trace,
    potentiation on post spikes by (x_pre - x_tar) (w_max - w)^mu."""

    nu_pre: float = 1e-4
    nu_post: float = 1e-2
    x_tar: float = 0.4
    mu: float = 1.0
    tau_pre: float = 20e-3
    tau_post: float = 20e-3
    w_min: float = 0.0
    w_max: float = 1.0
    interaction: str = "nearest"

    def __post_init__(self) -> None:
        check_nonnegative("nu_pre", self.nu_pre)
        check_nonnegative("nu_post", self.nu_post)
        check_nonnegative("mu", self.mu)
        check_positive("tau_pre", self.tau_pre, "s")
        check_positive("tau_post", self.tau_post, "s")
        _check_common(self)

    def vector(self) -> np.ndarray:
        return _vector(
            KIND_DIEHL_COOK,
            self.nu_post,
            0.0,
            self.nu_pre,
            0.0,
            self.w_min,
            self.w_max,
            self.mu,
            0.0,
            self.interaction,
            self.x_tar,
            self.tau_pre,
            self.tau_pre,
            self.tau_post,
            self.tau_post,
        )


Rule = PairSTDP | TripletSTDP | DiehlCookSTDP
_RULES = {"PairSTDP": PairSTDP, "TripletSTDP": TripletSTDP, "DiehlCookSTDP": DiehlCookSTDP}


def _vector(
    kind, a2p, a3p, a2m, a3m, w_min, w_max, mu_p, mu_m, interaction, x_tar, t_r1, t_r2, t_o1, t_o2
) -> np.ndarray:
    return np.array(
        [
            kind,
            a2p,
            a3p,
            a2m,
            a3m,
            w_min,
            w_max,
            mu_p,
            mu_m,
            1.0 if interaction == "nearest" else 0.0,
            x_tar,
            t_r1,
            t_r2,
            t_o1,
            t_o2,
        ],
        dtype=np.float64,
    )


def rule_to_json(rule: Rule) -> dict[str, Any]:
    return {"type": type(rule).__name__, **asdict(rule)}


def rule_from_json(data: dict[str, Any]) -> Rule:
    data = dict(data)
    name = data.pop("type", None)
    if name not in _RULES:
        raise ConfigError(f"unknown plasticity rule {name!r}; known: {sorted(_RULES)}")
    return _RULES[name](**data)


@dataclass
class PlasticState:
    """Rules and traces of the plastic synapse groups (recurrent and input), as kernels take
    them. Traces: two per presynaptic and two per postsynaptic neuron, with the step each
    was last decayed to."""

    rec: L.Plastic
    ext: L.Plastic
    ext_csc: L.Incoming

    @classmethod
    def create(
        cls,
        rec_rule: Rule | None,
        rec_mask: np.ndarray,
        n_neurons: int,
        ext_rule: Rule | None,
        ext_mask: np.ndarray,
        n_inputs: int,
        ext_csc: L.Incoming | None,
    ) -> PlasticState:
        def side(rule: Rule | None, mask: np.ndarray, n_pre: int) -> L.Plastic:
            if rule is None:
                return L.no_plasticity()
            return L.Plastic(
                rule.vector(),
                mask,
                np.zeros((2, n_pre)),
                np.zeros(n_pre, np.int64),
                np.zeros((2, n_neurons)),
                np.zeros(n_neurons, np.int64),
            )

        csc = ext_csc if ext_csc is not None else L.no_incoming()
        return cls(side(rec_rule, rec_mask, n_neurons), side(ext_rule, ext_mask, n_inputs), csc)

    @property
    def active(self) -> bool:
        return self.rec.rule.size > 0 or self.ext.rule.size > 0

    def arrays(self) -> dict[str, np.ndarray]:
        """The traces, for a checkpoint (rules and masks are saved with the projections/CSR)."""
        out = {}
        for prefix, side in (("rec", self.rec), ("ext", self.ext)):
            if side.rule.size:
                for name in _TRACES:
                    out[f"plastic.{prefix}.{name}"] = getattr(side, name)
        return out

    def load_traces(self, arrays: Mapping[str, np.ndarray]) -> None:
        for prefix, side in (("rec", self.rec), ("ext", self.ext)):
            if side.rule.size:
                for name in _TRACES:
                    getattr(side, name)[:] = arrays[f"plastic.{prefix}.{name}"]

    def nbytes(self) -> int:
        arrays = (*self.rec, *self.ext, *self.ext_csc)
        return int(sum(a.nbytes for a in arrays))


_TRACES = ("pre", "pre_last", "post", "post_last")


def single_rule(projections: list[Any], what: str) -> Rule | None:
    """The one rule of a synapse group (projections with ``plasticity``), or None."""
    rules = {id(p.plasticity): p.plasticity for p in projections if p.plasticity is not None}
    if len(rules) > 1:
        raise ConfigError(
            f"the {what} projections carry {len(rules)} different plasticity rules; "
            "one rule per source group is supported (pass the same rule object "
            "to each plastic projection)"
        )
    return next(iter(rules.values()), None)


def check_plastic_projection(
    rule: Any,
    storage: str,
    weight: float,
    weight_std: float,
    src: tuple[int, int],
    source: str,
    use_dale: bool,
    n_excitatory: int,
) -> None:
    """The conditions a plastic projection must meet, checked at ``connect``."""
    check_instance(
        "plasticity",
        rule,
        (PairSTDP, TripletSTDP, DiehlCookSTDP),
        "a rule of neurofabric.snn.plasticity (PairSTDP, TripletSTDP, DiehlCookSTDP)",
    )
    if storage != "csr":
        raise ConfigError(
            "plasticity needs storage='csr': procedural synapses are "
            "regenerated from the seed, so their weights cannot change"
        )
    if not rule.w_min <= weight <= rule.w_max or weight_std < 0:
        raise ConfigError(
            f"a plastic projection's `weight` must lie in the rule's bounds "
            f"[{rule.w_min}, {rule.w_max}], got {weight}"
        )
    if source == "neurons" and use_dale and src[1] > n_excitatory:
        raise ConfigError(
            "plasticity is supported on excitatory synapses only: restrict "
            f"`source_range` to the excitatory neurons [0, {n_excitatory})"
        )


def normalize_incoming(
    csr: Any, lo: int, hi: int, total: float, n_targets: int, source: str, kernels: Any
) -> None:
    """Scale the plastic synapses of rows [lo, hi) so each target's sum is ``total``, with
    ``kernels.normalize_rows`` of the network's backend."""
    a, b = int(csr.indptr[lo]), int(csr.indptr[hi])
    if not csr.plastic or a == b or (csr.mask.size and not csr.mask[a:b].any()):
        raise ConfigError(f"the synapses from {source!r} are not plastic: nothing to normalize")
    kernels.normalize_rows(
        csr.indptr, csr.indices, csr.weights, csr.mask, lo, hi, float(total), n_targets
    )
