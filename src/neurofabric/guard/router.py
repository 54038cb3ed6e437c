"""An expert router: 100 word neurons and 5 expert neurons (105 in all) that learn to route requests.

>>> from neurofabric.guard.router import ExpertRouter, make_requests
>>> train, test = make_requests(600, seed=0), make_requests(200, seed=1)
>>> router = ExpertRouter(seed=0).fit(train.requests, train.experts)
>>> router.score(test.requests, test.experts) > 0.75  # chance is 0.2
True

Requests are short texts; each known word fires its word neuron, unknown words are ignored
(counted in ``unknown_words_``). The field is trained with the averaged PA-I guard rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from neurofabric.core.errors import ConfigError
from neurofabric.core.progress import ProgressCallback
from neurofabric.core.rng import make_rng
from neurofabric.core.validation import check_probability
from neurofabric.guard.field import EventBatch
from neurofabric.guard.guard import GuardClassifier

__all__ = ["EXPERTS", "VOCABULARY", "ExpertRouter", "RequestSet", "make_requests"]

EXPERTS = ("billing", "code", "travel", "health", "legal")
_TOPICS = {
    "billing": "invoice refund charge payment card subscription price receipt bill plan upgrade "
    "discount tax balance account credit",
    "code": "python error bug compile function server deploy crash library api database query "
    "install script test build",
    "travel": "flight hotel booking airport passport visa luggage train ticket trip seat "
    "delay cancel itinerary rental beach",
    "health": "doctor appointment pain fever medicine prescription allergy symptom clinic "
    "vaccine sleep diet headache insurance dentist therapy",
    "legal": "contract lawyer court lease tenant copyright lawsuit agreement liability "
    "clause notice dispute will trademark license fine",
}
_SHARED = (
    "please help need my the a with for how can you i is to urgent today question problem about "
    "thanks"
)
VOCABULARY: tuple[str, ...] = tuple(
    w for words in [*_TOPICS.values(), _SHARED] for w in words.split()
)
assert len(VOCABULARY) == len(set(VOCABULARY)) == 100


@dataclass
class RequestSet:
    requests: list[str]
    experts: np.ndarray


def make_requests(
    n: int,
    *,
    seed: Any = 0,
    own: float = 0.45,
    other: float = 0.15,
    length: tuple[int, int] = (4, 10),
) -> RequestSet:
    """Synthetic requests: each word from the expert's topic (``own``), another topic
    (``other``) or the shared words (the rest)."""
    check_probability("own", own)
    check_probability("other", other)
    if own + other > 1:
        raise ConfigError(f"`own` + `other` must lie in [0, 1], got {own} + {other}")
    rng = make_rng(seed)
    topics = [t.split() for t in _TOPICS.values()]
    shared = _SHARED.split()
    experts = rng.integers(0, len(EXPERTS), size=n)
    requests = []
    for e in experts:
        words = []
        for _ in range(rng.integers(length[0], length[1] + 1)):
            u = rng.random()
            if u < own:
                words.append(topics[e][rng.integers(len(topics[e]))])
            elif u < own + other:
                o = (e + 1 + rng.integers(len(EXPERTS) - 1)) % len(EXPERTS)
                words.append(topics[o][rng.integers(len(topics[o]))])
            else:
                words.append(shared[rng.integers(len(shared))])
        requests.append(" ".join(words))
    return RequestSet(requests, experts.astype(np.int64))


class ExpertRouter:
    """Routes requests to one of ``EXPERTS`` with a 105-neuron guard field.

    ``backend``: the kernels of the field, as :class:`GuardClassifier`'s ("auto", "numba" or
    "reference")."""

    def __init__(self, *, epochs: int = 5, seed: Any = 0, backend: str = "auto") -> None:
        self.vocabulary = {w: i for i, w in enumerate(VOCABULARY)}
        self.classifier = GuardClassifier(rule="pa1", epochs=epochs, seed=seed, backend=backend)
        self.unknown_words_ = 0

    @property
    def n_neurons(self) -> int:
        return len(self.vocabulary) + len(EXPERTS)

    def events(self, requests: list[str]) -> EventBatch:
        ptr, ids = [0], []
        for text in requests:
            words = {self.vocabulary.get(w) for w in text.lower().split()}
            self.unknown_words_ += None in words
            known = sorted(w for w in words if w is not None)
            ids.extend(known)
            ptr.append(len(ids))
        values = np.ones(len(ids), dtype=np.float32)
        return EventBatch(
            np.array(ptr), np.array(ids, dtype=np.int32), values, len(self.vocabulary)
        )

    def fit(
        self, requests: list[str], experts: Any, *, callback: ProgressCallback | None = None
    ) -> ExpertRouter:
        """Train the field (``callback``: as ``GuardClassifier.fit``, one Progress per epoch)."""
        self.classifier.fit(
            self.events(requests), experts, classes=np.arange(len(EXPERTS)), callback=callback
        )
        return self

    def route(self, requests: list[str]) -> np.ndarray:
        return self.classifier.predict(self.events(requests))

    def score(self, requests: list[str], experts: Any) -> float:
        return float(np.mean(self.route(requests) == np.asarray(experts)))

    def untrained_score(self, requests: list[str], experts: Any) -> float:
        """Accuracy of the same field before any feedback (all weights 0: ties go to expert 0)."""
        from neurofabric.guard.field import NeuronField

        field = NeuronField.dense(len(self.vocabulary), len(EXPERTS))
        return float(np.mean(field.predict(self.events(requests)) == np.asarray(experts)))
