"""A rhythm tracker: a tiny field that learns a periodic event pattern and predicts the next event.

>>> from neurofabric.guard.rhythm import RhythmTracker
>>> tracker = RhythmTracker(n_symbols=2, context=2, seed=0)
>>> result = tracker.run([0, 1] * 20)
>>> result.accuracy(last=10)
1.0

Input neuron ``j * n_symbols + s`` fires when symbol ``s`` occurred ``j + 1`` events ago; the
``n_symbols`` output neurons vote for the next event. Each event is first predicted, then
learned from (online perceptron with a margin, not averaged, so that it follows a change).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from neurofabric.core.errors import ConfigError
from neurofabric.core.validation import check_int
from neurofabric.guard.field import EventBatch
from neurofabric.guard.guard import GuardClassifier

__all__ = ["RhythmResult", "RhythmTracker"]


@dataclass
class RhythmResult:
    events: np.ndarray
    predictions: np.ndarray  # -1 before the context is full

    @property
    def correct(self) -> np.ndarray:
        return self.predictions == self.events

    def accuracy(self, *, first: int | None = None, last: int | None = None) -> float:
        c = self.correct[self.predictions >= 0]
        if first is not None:
            c = c[:first]
        if last is not None:
            c = c[-last:]
        return float(np.mean(c)) if len(c) else float("nan")

    def running_accuracy(self, window: int = 20) -> np.ndarray:
        c = self.correct.astype(np.float64)
        kernel = np.ones(window) / window
        return np.convolve(c, kernel, mode="valid")


class RhythmTracker:
    """Predicts the next of ``n_symbols`` events from the last ``context`` events.

    ``backend``: the kernels of the field, as :class:`GuardClassifier`'s ("auto", "numba" or
    "reference")."""

    def __init__(
        self,
        n_symbols: int,
        *,
        context: int = 4,
        margin: float = 1.0,
        seed: Any = 0,
        backend: str = "auto",
    ) -> None:
        self.n_symbols = check_int("n_symbols", n_symbols, min_value=2)
        self.context = check_int("context", context, min_value=1)
        self.classifier = GuardClassifier(
            rule="perceptron",
            average=False,
            margin=margin,
            shuffle=False,
            seed=seed,
            backend=backend,
        )
        self._history: list[int] = []
        self._classes = np.arange(n_symbols)

    @property
    def n_neurons(self) -> int:
        return self.context * self.n_symbols + self.n_symbols

    def _events(self) -> EventBatch:
        recent = self._history[::-1][: self.context]
        ids = np.array([j * self.n_symbols + s for j, s in enumerate(recent)], dtype=np.int32)
        return EventBatch(
            np.array([0, len(ids)]),
            ids,
            np.ones(len(ids), np.float32),
            self.context * self.n_symbols,
        )

    def predict_next(self) -> int:
        """The predicted next event, or -1 while fewer than ``context`` events were seen."""
        if len(self._history) < self.context or not hasattr(self.classifier, "field_"):
            return -1
        return int(self.classifier.predict(self._events())[0])

    def observe(self, event: int) -> int:
        """Predict, then learn from ``event``; returns the prediction that was made."""
        if not isinstance(event, int | np.integer) or not 0 <= event < self.n_symbols:
            raise ConfigError(f"events must be integers in [0, {self.n_symbols}), got {event!r}")
        guess = self.predict_next()
        if len(self._history) >= self.context:
            self.classifier.partial_fit(self._events(), [int(event)], classes=self._classes)
        self._history.append(int(event))
        del self._history[: -self.context]
        return guess

    def run(self, events: Any) -> RhythmResult:
        events = np.asarray(events, dtype=np.int64)
        preds = np.array([self.observe(int(e)) for e in events], dtype=np.int64)
        return RhythmResult(events, preds)
