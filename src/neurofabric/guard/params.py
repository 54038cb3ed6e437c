"""Frozen parameter records of the event-driven classifier, each checked once."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from neurofabric.core import backend as backends
from neurofabric.core.errors import ConfigError
from neurofabric.guard.kernels.common import RULES

#: the margin each rule uses when ``margin=None``
DEFAULT_MARGIN = {"perceptron": 0.0, "pa1": 1.0, "pa2": 1.0, "neuronguard": 0.0}


def _positive(name: str, value, *, allow_zero: bool = False) -> None:
    ok = isinstance(value, int | float) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(
            f"`{name}` must be a finite number {'>=' if allow_zero else '>'} 0, got {value!r}"
        )


def _int(name: str, value, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"`{name}` must be an integer >= {low}, got {value!r}")


@dataclass(frozen=True)
class GuardParams:
    """How the field learns.

    ``rule``: "perceptron" (step ``learning_rate`` when the margin s_y - s_p <= ``margin``),
    "pa1" / "pa2" (passive-aggressive steps of Crammer et al. 2006 with aggressiveness
    ``aggressiveness``, hinge at ``margin``), or "neuronguard" (the proof of concept's rule: top
    ``top_n`` inputs each wired to their most frequent class, ``+plus`` / ``-minus`` feedback
    while a weight is >= ``floor``). ``average``: return the average of the weights over all
    steps (averaged perceptron / averaged PA). ``n_jobs``: 1 trains sequentially and is
    bit-identical for a seed; > 1 (or -1, every thread) runs Hogwild chunks without locks.
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
    input_threshold: float = 0.0
    prune: float = 0.0
    top_n: int = 10_000
    plus: float = 0.05
    minus: float = 0.15
    floor: float = 1.0
    backend: str = "auto"

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ConfigError(f"`rule` must be one of {list(RULES)}, got {self.rule!r}")
        if self.margin is not None:
            if not isinstance(self.margin, int | float) or not math.isfinite(self.margin):
                raise ConfigError(f"`margin` must be a finite number or None, got {self.margin!r}")
            if self.rule in ("pa1", "pa2") and self.margin <= 0:
                raise ConfigError(
                    f"`margin` must be > 0 for the passive-aggressive rules (their loss is "
                    f"margin - m), got {self.margin}"
                )
        _positive("learning_rate", self.learning_rate)
        _positive("aggressiveness", self.aggressiveness)
        _int("epochs", self.epochs, 1)
        _int("top_n", self.top_n, 1)
        if (
            isinstance(self.n_jobs, bool)
            or not isinstance(self.n_jobs, int)
            or self.n_jobs == 0
            or self.n_jobs < -1
        ):
            raise ConfigError(
                f"`n_jobs` must be -1 (all threads) or an integer >= 1, got {self.n_jobs!r}"
            )
        if not isinstance(self.input_threshold, int | float) or not math.isfinite(
            self.input_threshold
        ):
            raise ConfigError(
                f"`input_threshold` must be a finite number, got {self.input_threshold!r}"
            )
        _positive("prune", self.prune, allow_zero=True)
        _positive("plus", self.plus, allow_zero=True)
        _positive("minus", self.minus, allow_zero=True)
        if not isinstance(self.floor, int | float) or not math.isfinite(self.floor):
            raise ConfigError(f"`floor` must be a finite number, got {self.floor!r}")
        backends.resolve("guard", self.backend)  # a typo or a missing backend fails here

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
        _int("n_features", self.n_features, 2)
        if self.n_features > 1 << 31:
            raise ConfigError(f"`n_features` must be <= 2**31, got {self.n_features}")
        _int("word_ngrams", self.word_ngrams, 1)
        if self.word_ngrams > 5:
            raise ConfigError(f"`word_ngrams` must be <= 5, got {self.word_ngrams}")
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
