"""Frozen parameter records of the event-driven classifier, each checked once."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from neurofabric.core import backend as backends
from neurofabric.core.errors import ConfigError
from neurofabric.core.validation import (
    check_choice,
    check_int,
    check_nonnegative,
    check_number,
    check_positive,
)
from neurofabric.guard.kernels.common import MIXES, RULES

#: how ``n_jobs > 1`` trains
PARALLEL = ("mixing", "hogwild")
#: the margin each rule uses when ``margin=None``
DEFAULT_MARGIN = {"perceptron": 0.0, "pa1": 1.0, "pa2": 1.0, "neuronguard": 0.0}


def _keep(params: object, name: str, checked: float | int) -> None:
    """Keep a checked value as given (``get_params`` returns what was set) unless it is a numpy
    scalar: then the plain number the check returned (checkpoints store params as JSON)."""
    if isinstance(getattr(params, name), np.generic):
        object.__setattr__(params, name, checked)


@dataclass(frozen=True)
class GuardParams:
    """How the field learns.

    ``rule``: "perceptron" (step ``learning_rate`` when the margin s_y - s_p <= ``margin``),
    "pa1" / "pa2" (passive-aggressive steps of Crammer et al. 2006 with aggressiveness
    ``aggressiveness``, hinge at ``margin``), or "neuronguard" (the proof of concept's rule: top
    ``top_n`` inputs each wired to their most frequent class, ``+plus`` / ``-minus`` feedback
    while a weight is >= ``floor``). ``average``: return the average of the weights over all
    steps (averaged perceptron / averaged PA). ``n_jobs``: 1 trains sequentially and is
    bit-identical for a seed; > 1 (or -1, every thread) trains one shard per thread:
    ``parallel="mixing"`` (the default) gives each thread its own copy of the weights and mixes
    the copies ``mix_rounds`` times per epoch (iterative parameter mixing: W moves by the sum
    of the threads' changes, ``mix="sum"``; each weight by the mean change of the threads that
    changed it, ``mix="changed"``, more accurate and slower, as the smaller steps leave more
    margins violated; or by the mean of all threads' changes, ``mix="mean"``, the variant with
    McDonald et al.'s convergence bound, which learns more slowly), which keeps the average
    exact and the result independent of thread timing (bit-identical for a seed and
    ``n_jobs``);
    ``parallel="hogwild"`` updates one shared copy without locks (races lose updates and bias
    the average, most on dense inputs).
    ``backend``: "auto" (the fastest installed: numba), "numba" or "reference" (the numpy
    spec); the classifier's ``backend_`` is the one used.
    """

    rule: str = "pa1"
    average: bool = True
    margin: float | None = None
    learning_rate: float = 1.0
    aggressiveness: float = 1.0
    epochs: int = 10
    shuffle: bool = True
    n_jobs: int = 1
    parallel: str = "mixing"
    mix_rounds: int = 2
    mix: str = "sum"
    input_threshold: float = 0.0
    prune: float = 0.0
    top_n: int = 10_000
    plus: float = 0.05
    minus: float = 0.15
    floor: float = 1.0
    backend: str = "auto"

    def __post_init__(self) -> None:
        check_choice("rule", self.rule, RULES)
        if self.margin is not None:
            _keep(self, "margin", check_number("margin", self.margin))
            if self.rule in ("pa1", "pa2") and self.margin <= 0:
                raise ConfigError(
                    f"`margin` must be > 0 for the passive-aggressive rules (their loss is "
                    f"margin - m), got {self.margin}"
                )
        _keep(self, "learning_rate", check_positive("learning_rate", self.learning_rate))
        _keep(self, "aggressiveness", check_positive("aggressiveness", self.aggressiveness))
        _keep(self, "epochs", check_int("epochs", self.epochs, min_value=1))
        _keep(self, "top_n", check_int("top_n", self.top_n, min_value=1))
        n_jobs = check_int("n_jobs", self.n_jobs)
        if n_jobs == 0 or n_jobs < -1:
            raise ConfigError(f"`n_jobs` must be -1 (all threads) or an integer >= 1, got {n_jobs}")
        _keep(self, "n_jobs", n_jobs)
        check_choice("parallel", self.parallel, PARALLEL)
        check_choice("mix", self.mix, MIXES)
        _keep(self, "mix_rounds", check_int("mix_rounds", self.mix_rounds, min_value=1))
        _keep(self, "input_threshold", check_number("input_threshold", self.input_threshold))
        for name in ("prune", "plus", "minus"):
            _keep(self, name, check_nonnegative(name, getattr(self, name)))
        _keep(self, "floor", check_number("floor", self.floor))
        backends.choose("guard", self.backend)  # a typo or a missing backend fails here

    @property
    def effective_margin(self) -> float:
        return float(DEFAULT_MARGIN[self.rule] if self.margin is None else self.margin)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class TextParams:
    """The text front end: fastText-style tokens hashed to ``n_features`` input neurons.

    ``word_ngrams``: 1 unigrams, 2 adds bigrams, ...; ``char_ngrams``: (minn, maxn) character
    n-grams of "<word>", or None. Event magnitudes: 1 + log(tf) (``sublinear_tf``) or tf, or 1
    (``binary``), times the inverse document frequency (``idf``), scaled to unit length
    (``normalize``).
    """

    n_features: int = 1 << 18
    word_ngrams: int = 1
    char_ngrams: tuple[int, int] | None = None
    sublinear_tf: bool = True
    idf: bool = True
    binary: bool = False
    normalize: bool = True

    def __post_init__(self) -> None:
        _keep(
            self,
            "n_features",
            check_int("n_features", self.n_features, min_value=2, max_value=1 << 31),
        )
        _keep(
            self,
            "word_ngrams",
            check_int("word_ngrams", self.word_ngrams, min_value=1, max_value=5),
        )
        if self.char_ngrams is not None:
            c = tuple(self.char_ngrams)
            if (
                len(c) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in c)
                or not 1 <= c[0] <= c[1] <= 10
            ):
                raise ConfigError(
                    f"`char_ngrams` must be (minn, maxn) with 1 <= minn <= maxn <= 10, or None; "
                    f"got {self.char_ngrams!r}"
                )
            object.__setattr__(self, "char_ngrams", c)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["char_ngrams"] = list(self.char_ngrams) if self.char_ngrams else None
        return d
