"""Connection rules. Each is a frozen description; the synapses come from :mod:`.kernels.rowgen`.

>>> Random(p=0.02)                 # each pair independently with probability p
>>> Random(out_degree=80)          # exactly 80 distinct targets per source
>>> Random(in_degree=80)           # exactly 80 distinct sources per target (CSR only)
>>> FixedTotalNumber(10_000)       # 10,000 synapses, each pair uniform, multapses (CSR only)
>>> SmallWorld(k=100, beta=0.1)    # Watts-Strogatz ring lattice, rewired with probability beta
>>> DistanceDependent(sigma=3.0, p_max=0.5, dims=2)  # p = p_max exp(-d^2 / 2 sigma^2)
>>> AllToAll()
>>> Explicit(pre=[0, 1], post=[1, 0], weight=[0.5e-3, -0.2e-3])  # given synapses (CSR only)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from neurofabric.core.errors import ConfigError, ShapeError
from neurofabric.core.validation import (
    check_array,
    check_choice,
    check_int,
    check_nonnegative_array,
    check_positive,
    check_probability,
)
from neurofabric.snn.kernels import rowgen


@dataclass(frozen=True)
class Random:
    """Erdos-Renyi connectivity: by probability ``p``, or a fixed ``out_degree`` / ``in_degree``."""

    p: float | None = None
    out_degree: int | None = None
    in_degree: int | None = None

    def __post_init__(self) -> None:
        given = [x is not None for x in (self.p, self.out_degree, self.in_degree)]
        if sum(given) != 1:
            raise ConfigError(
                "Random needs exactly one of `p`, `out_degree` or `in_degree`, "
                f"got p={self.p}, out_degree={self.out_degree}, "
                f"in_degree={self.in_degree}"
            )
        if self.p is not None:
            check_probability("p", self.p)
        if self.out_degree is not None:
            check_int("out_degree", self.out_degree, min_value=0)
        if self.in_degree is not None:
            check_int("in_degree", self.in_degree, min_value=0)

    def kind(self) -> int:
        if self.p is not None:
            return rowgen.KIND_RANDOM
        return rowgen.KIND_OUT_DEGREE if self.out_degree is not None else rowgen.KIND_IN_DEGREE

    def check_sizes(self, n_src: int, n_tgt: int, allow_self: bool) -> None:
        room_t = n_tgt - (0 if allow_self else 1)  # the targets available
        room_s = n_src - (0 if allow_self else 1)  # the sources available
        if self.out_degree is not None:
            check_int("out_degree", self.out_degree, max_value=room_t)
        if self.in_degree is not None:
            check_int("in_degree", self.in_degree, max_value=room_s)

    def degree(self) -> int:
        return int(self.out_degree or self.in_degree or 0)


@dataclass(frozen=True)
class SmallWorld:
    """Watts-Strogatz: each source projects to its ``k`` nearest ring neighbours (k/2 per side),
    each synapse rewired to a uniformly drawn target with probability ``beta``."""

    k: int = 10
    beta: float = 0.1

    def __post_init__(self) -> None:
        check_int("k", self.k, min_value=2)
        if self.k % 2:
            raise ConfigError(f"`k` must be even (k/2 neighbours on each side), got {self.k}")
        check_probability("beta", self.beta)

    def kind(self) -> int:
        return rowgen.KIND_SMALL_WORLD

    def check_sizes(self, n_src: int, n_tgt: int, allow_self: bool) -> None:
        if n_src != n_tgt:
            raise ConfigError(
                f"SmallWorld needs as many sources as targets (one ring), got "
                f"{n_src} sources and {n_tgt} targets"
            )
        check_int("SmallWorld.k", self.k, max_value=n_tgt - 1)  # < the ring's neurons

    def degree(self) -> int:
        return self.k


@dataclass(frozen=True)
class DistanceDependent:
    """Gaussian connection probability on a periodic 1-D ring or 2-D square lattice.

    ``p(d) = p_max exp(-d^2 / (2 sigma^2))`` with ``d`` in lattice units, cut off at 4 sigma.
    Sources are placed on the target lattice by scaling their own lattice coordinates.
    """

    sigma: float = 2.0
    p_max: float = 1.0
    dims: int = 1

    def __post_init__(self) -> None:
        check_positive("sigma", self.sigma, "lattice units")
        check_probability("p_max", self.p_max)
        check_choice("dims", self.dims, (1, 2))

    def kind(self) -> int:
        return rowgen.KIND_DISTANCE

    def check_sizes(self, n_src: int, n_tgt: int, allow_self: bool) -> None:
        if self.dims == 2:
            for what, n in (("sources", n_src), ("targets", n_tgt)):
                if math.isqrt(n) ** 2 != n:
                    raise ConfigError(
                        f"DistanceDependent(dims=2) needs a square number of "
                        f"{what}, got {n}; use dims=1 or a square size"
                    )

    def degree(self) -> int:
        return 0


@dataclass(frozen=True)
class AllToAll:
    """Every source to every target (no self connections unless ``allow_self``).

    ``skip_partner=True`` also leaves out source ``i`` of the source range to target ``i`` of
    the target range: the lateral inhibition of Diehl & Cook (2015), where inhibitory neuron
    ``i`` inhibits every excitatory neuron but the one that drives it.
    """

    skip_partner: bool = False

    def kind(self) -> int:
        return rowgen.KIND_ALL_TO_ALL

    def check_sizes(self, n_src: int, n_tgt: int, allow_self: bool) -> None:
        if self.skip_partner and n_src != n_tgt:
            raise ConfigError(
                "AllToAll(skip_partner=True) pairs source i with target i, so it needs as "
                f"many sources as targets, got {n_src} sources and {n_tgt} targets"
            )

    def degree(self) -> int:
        return 0


@dataclass(frozen=True)
class OneToOne:
    """Source ``i`` of the range to target ``i`` of the range (e.g. one Poisson drive each)."""

    def kind(self) -> int:
        return rowgen.KIND_ONE_TO_ONE

    def check_sizes(self, n_src: int, n_tgt: int, allow_self: bool) -> None:
        if n_src != n_tgt:
            raise ConfigError(
                f"OneToOne needs as many sources as targets, got {n_src} sources "
                f"and {n_tgt} targets"
            )

    def degree(self) -> int:
        return 1


@dataclass(frozen=True)
class FixedTotalNumber:
    """``n`` synapses over the whole projection, each with a source and a target drawn
    independently and uniformly (NEST's ``fixed_total_number``; the cortical microcircuit's
    rule): in-degrees are Binomial(n, 1 / n_targets), and a pair may be drawn more than once
    (multapses). Materialized (CSR) storage only."""

    n: int

    def __post_init__(self) -> None:
        check_int("n", self.n, min_value=0, max_value=2**31 - 1)

    def kind(self) -> int:
        return rowgen.KIND_FIXED_TOTAL

    def check_sizes(self, n_src: int, n_tgt: int, allow_self: bool) -> None:
        if self.n and not allow_self and n_src == 1 and n_tgt == 1:
            raise ConfigError(
                "FixedTotalNumber with allow_self=False needs more than one neuron on a side"
            )

    def degree(self) -> int:
        return int(self.n)


@dataclass(frozen=True, eq=False)
class Explicit:
    """Given synapses: ``pre[k] -> post[k]`` (indices within the projection's source and
    target ranges) with weight ``weight[k]`` (volts for cuba/delta, as ``connect``'s weights,
    signed: Dale's principle does not apply) and, optionally, delay ``delay[k]`` seconds
    (rounded to steps; None: ``connect``'s ``delay``). ``connect``'s ``weight`` multiplies
    the given weights (pass 1.0). Materialized (CSR) storage only; this is how weight
    matrices from elsewhere (:func:`neurofabric.snn.nir.from_nir`) come in.
    """

    pre: Any
    post: Any
    weight: Any
    delay: Any = None

    def __post_init__(self) -> None:
        pre = check_array("Explicit.pre", self.pre, shape=(None,))
        post = check_array("Explicit.post", self.post, shape=(None,))
        weight = check_array("Explicit.weight", self.weight, dtype=np.float64)
        for name, arr in (("pre", pre), ("post", post)):
            if arr.size and (arr.dtype.kind not in "iu" or int(arr.min()) < 0):
                raise ConfigError(
                    f"`Explicit.{name}` must hold non-negative integer indices, got "
                    f"dtype {arr.dtype} with minimum {arr.min()}"
                )
        weight = np.broadcast_to(weight, pre.shape) if weight.ndim == 0 else weight
        sizes = {"pre": pre.shape, "post": post.shape, "weight": weight.shape}
        delay = None
        if self.delay is not None:
            delay = check_nonnegative_array("Explicit.delay", self.delay, "s")
            delay = np.broadcast_to(delay, pre.shape) if delay.ndim == 0 else delay
            sizes["delay"] = delay.shape
        if len(set(sizes.values())) != 1:
            raise ShapeError(
                f"`Explicit` arrays must have one entry per synapse, got shapes {sizes}"
            )
        object.__setattr__(self, "pre", pre.astype(np.int64))
        object.__setattr__(self, "post", post.astype(np.int64))
        object.__setattr__(self, "weight", np.array(weight, np.float64))
        if delay is not None:
            object.__setattr__(self, "delay", np.array(delay, np.float64))

    def kind(self) -> int:
        return -1  # never generated: the rows are given

    def check_sizes(self, n_src: int, n_tgt: int, allow_self: bool) -> None:
        for name, arr, n in (("pre", self.pre, n_src), ("post", self.post, n_tgt)):
            if arr.size and int(arr.max()) >= n:
                raise ConfigError(
                    f"`Explicit.{name}` indexes {n} neurons (its range), got index "
                    f"{int(arr.max())}; give indices within the range"
                )

    def degree(self) -> int:
        return int(self.pre.size)

    def arrays(self) -> dict[str, np.ndarray]:
        out = {"pre": self.pre, "post": self.post, "weight": self.weight}
        if self.delay is not None:
            out["delay"] = self.delay
        return out


Topology = (
    Random | SmallWorld | DistanceDependent | AllToAll | OneToOne | FixedTotalNumber | Explicit
)
_TOPOLOGIES = {
    "FixedTotalNumber": FixedTotalNumber,
    "Random": Random,
    "SmallWorld": SmallWorld,
    "DistanceDependent": DistanceDependent,
    "AllToAll": AllToAll,
    "OneToOne": OneToOne,
}


def topology_to_json(topo: Topology) -> dict[str, Any]:
    """The topology as JSON; an :class:`Explicit` one's arrays go to its ``arrays()``
    (checkpoints store them beside the JSON)."""
    if isinstance(topo, Explicit):
        return {"type": "Explicit", "delay": topo.delay is not None}
    return {"type": type(topo).__name__, **asdict(topo)}


def topology_from_json(
    data: dict[str, Any], arrays: dict[str, np.ndarray] | None = None
) -> Topology:
    data = dict(data)
    name = data.pop("type", None)
    if name == "Explicit":
        if arrays is None:
            raise ConfigError("an Explicit topology needs its arrays (pre, post, weight)")
        return Explicit(arrays["pre"], arrays["post"], arrays["weight"], arrays.get("delay"))
    if name not in _TOPOLOGIES:
        raise ConfigError(f"unknown topology {name!r}; known: {sorted(_TOPOLOGIES)}")
    return _TOPOLOGIES[name](**data)


def max_row_length(topo: Topology, n_tgt: int) -> int:
    """An upper bound of the synapses one source can have (for scratch buffers)."""
    if isinstance(topo, SmallWorld):
        return topo.k
    if isinstance(topo, OneToOne):
        return 1
    if isinstance(topo, Random) and topo.out_degree is not None:
        return topo.out_degree
    if isinstance(topo, DistanceDependent):
        reach = 2 * math.ceil(4 * topo.sigma) + 1
        return min(n_tgt, reach if topo.dims == 1 else reach * reach)
    return n_tgt
