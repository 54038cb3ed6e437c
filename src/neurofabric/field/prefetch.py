"""Prefetchers behind one interface, and their online precision and coverage.

>>> from neurofabric.field.prefetch import PrefetchTracker, StridePrefetcher
>>> tracker = PrefetchTracker(StridePrefetcher(), k=4)
>>> for page in range(0, 4000, 4):
...     _ = tracker.access(page)
>>> round(tracker.precision, 3), round(tracker.coverage, 3)  # the last 4 predictions go unused
(0.996, 0.997)

Every prefetcher has ``observe(page)`` (learn from an access) and ``predict(k)`` (up to k
pages it expects next, most likely first). :class:`PrefetchTracker` feeds an access stream to
one, issues its predictions, and counts separately:

* precision = issued predictions that were accessed within ``horizon`` accesses / issued;
* coverage = accesses that had been predicted (and not yet used) / accesses.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections import Counter, OrderedDict, deque
from typing import Any

from neurofabric.core.validation import check_choice, check_int

__all__ = [
    "HoeffdingTreePrefetcher",
    "MarkovPrefetcher",
    "NextNPrefetcher",
    "PREFETCHERS",
    "PrefetchTracker",
    "Prefetcher",
    "StridePrefetcher",
    "make_prefetcher",
]


class Prefetcher(ABC):
    """Learns an access stream of page numbers and predicts the next pages."""

    name = "prefetcher"

    @abstractmethod
    def observe(self, page: int) -> None: ...

    @abstractmethod
    def predict(self, k: int) -> list[int]: ...


class NextNPrefetcher(Prefetcher):
    """The n pages after the last access (sequential read-ahead)."""

    name = "next-n"

    def __init__(self, n: int = 4) -> None:
        self.n = check_int("n", n, min_value=1)
        self.last: int | None = None

    def observe(self, page: int) -> None:
        self.last = page

    def predict(self, k: int) -> list[int]:
        if self.last is None:
            return []
        return [self.last + i for i in range(1, min(k, self.n) + 1)]


class StridePrefetcher(Prefetcher):
    """A table of ``streams`` concurrent strided streams (as hardware stream prefetchers).

    An access continues the stream whose last page + stride equals it (confidence + 1), else
    retrains the stream whose last page is nearest within ``window`` pages (new stride,
    confidence 0), else replaces the least recently used stream. A stream with confidence
    >= ``confirm`` predicts last + stride, last + 2 stride, ...
    """

    name = "stride"

    def __init__(self, streams: int = 16, window: int = 256, confirm: int = 1) -> None:
        self.streams = check_int("streams", streams, min_value=1)
        self.window = check_int("window", window, min_value=1)
        self.confirm = check_int("confirm", confirm, min_value=0)
        self.table: OrderedDict[int, list[int]] = OrderedDict()  # id -> [last, stride, conf]
        self._next_id = 0
        self.current: list[int] | None = None

    def observe(self, page: int) -> None:
        table = self.table
        for sid, s in table.items():
            if s[1] != 0 and s[0] + s[1] == page:
                s[0] = page
                s[2] += 1
                table.move_to_end(sid)
                self.current = s
                return
        best, best_d = None, self.window + 1
        for sid, s in table.items():
            d = abs(page - s[0])
            if 0 < d < best_d:
                best, best_d = sid, d
        if best is not None:
            s = table[best]
            s[1], s[0], s[2] = page - s[0], page, 0
            table.move_to_end(best)
            self.current = s
            return
        if len(table) >= self.streams:
            table.popitem(last=False)
        s = [page, 0, 0]
        table[self._next_id] = s
        self._next_id += 1
        self.current = s

    def predict(self, k: int) -> list[int]:
        s = self.current
        if s is None or s[1] == 0 or s[2] < self.confirm:
            return []
        return [s[0] + s[1] * i for i in range(1, k + 1)]


class MarkovPrefetcher(Prefetcher):
    """A Markov chain over page deltas: counts of (previous delta -> next delta), with the
    ``max_successors`` most recent successors kept per delta; predicts the current page plus
    the most frequent successors of the last delta."""

    name = "markov"

    def __init__(self, max_states: int = 4096, max_successors: int = 8) -> None:
        self.max_states = max_states
        self.max_successors = max_successors
        self.counts: OrderedDict[int, Counter] = OrderedDict()
        self.last: int | None = None
        self.last_delta: int | None = None

    def observe(self, page: int) -> None:
        if self.last is not None:
            delta = page - self.last
            if self.last_delta is not None:
                c = self.counts.get(self.last_delta)
                if c is None:
                    c = self.counts[self.last_delta] = Counter()
                    if len(self.counts) > self.max_states:
                        self.counts.popitem(last=False)
                else:
                    self.counts.move_to_end(self.last_delta)
                c[delta] += 1
                if len(c) > self.max_successors:
                    del c[min(c, key=c.__getitem__)]
            self.last_delta = delta
        self.last = page

    def predict(self, k: int) -> list[int]:
        if self.last is None or self.last_delta is None:
            return []
        c = self.counts.get(self.last_delta)
        if not c:
            return []
        out, page, delta = [], self.last, self.last_delta
        # follow the chain: the most likely next delta, then its most likely successor, ...
        while len(out) < k:
            c = self.counts.get(delta)
            if not c:
                break
            delta = c.most_common(1)[0][0]
            page += delta
            if page < 0:
                break
            out.append(page)
        return out


class HoeffdingTreePrefetcher(Prefetcher):
    """river's Hoeffding tree classifying the next delta from the last ``history`` deltas.

    Tuned to split on strided streams: a short grace period, a loose split confidence and a
    tie threshold, and majority-class leaves (no naive Bayes), so a leaf predicts one stride;
    deltas beyond ``max_delta`` count as "jump" (no prediction). To stay cheap, predictions are
    cached per feature vector and the cache is cleared when the tree grows or every
    ``refresh`` updates (a leaf's majority can change in between: a bounded staleness).
    """

    name = "hoeffding"

    def __init__(
        self, history: int = 3, max_delta: int = 64, grace_period: int = 20, refresh: int = 256
    ) -> None:
        from river import tree

        self.model = tree.HoeffdingTreeClassifier(
            grace_period=grace_period, delta=1e-3, tau=0.05, leaf_prediction="mc"
        )
        self.history = history
        self.max_delta = max_delta
        self.refresh = refresh
        self.deltas: deque[int] = deque(maxlen=history)
        self.last: int | None = None
        self._x: dict[str, float] | None = None
        self._cache: dict[tuple[int, ...], Any] = {}
        self._updates = 0
        self._nodes = 0

    def _label(self, delta: int) -> int:
        return delta if abs(delta) <= self.max_delta else self.max_delta + 1

    def observe(self, page: int) -> None:
        if self.last is not None:
            delta = self._label(page - self.last)
            if self._x is not None:
                self.model.learn_one(self._x, delta)
                self._updates += 1
            self.deltas.append(delta)
            if len(self.deltas) == self.history:
                d = self.deltas
                self._x = {f"d{i}": float(d[self.history - 1 - i]) for i in range(self.history)}
        self.last = page

    def predict(self, k: int) -> list[int]:
        if self.last is None or self._x is None:
            return []
        nodes = self.model.n_nodes
        if nodes != self._nodes or self._updates >= self.refresh:
            self._cache.clear()
            self._nodes, self._updates = nodes, 0
        key = tuple(self.deltas)
        if key in self._cache:
            delta = self._cache[key]
        else:
            delta = self._cache[key] = self.model.predict_one(self._x)
        if delta is None or delta == 0 or abs(delta) > self.max_delta:
            return []
        return [self.last + delta * i for i in range(1, k + 1) if self.last + delta * i >= 0]


PREFETCHERS = {
    "next-n": NextNPrefetcher,
    "stride": StridePrefetcher,
    "markov": MarkovPrefetcher,
    "hoeffding": HoeffdingTreePrefetcher,
}


def make_prefetcher(name: str, **kwargs: Any) -> Prefetcher:
    check_choice("prefetcher", name, tuple(PREFETCHERS))
    return PREFETCHERS[name](**kwargs)


class PrefetchTracker:
    """Runs a prefetcher on an access stream and counts precision and coverage online."""

    def __init__(self, prefetcher: Prefetcher, *, k: int = 4, horizon: int = 64) -> None:
        self.prefetcher = prefetcher
        self.k = check_int("k", k, min_value=1)
        self.horizon = check_int("horizon", horizon, min_value=1)
        self.pending: OrderedDict[int, int] = OrderedDict()  # page -> access number issued at
        self.accesses = self.covered = self.issued = self.useful = 0
        self.seconds = 0.0

    def access(self, page: int) -> list[int]:
        """Record one access; returns the new pages to prefetch now."""
        t0 = time.perf_counter()
        self.accesses += 1
        if self.pending.pop(page, None) is not None:
            self.covered += 1
            self.useful += 1
        while self.pending and next(iter(self.pending.values())) < self.accesses - self.horizon:
            self.pending.popitem(last=False)  # expired: never used
        self.prefetcher.observe(page)
        new = [p for p in self.prefetcher.predict(self.k) if p not in self.pending and p != page]
        for p in new:
            self.pending[p] = self.accesses
        self.issued += len(new)
        self.seconds += time.perf_counter() - t0
        return new

    @property
    def precision(self) -> float:
        return self.useful / self.issued if self.issued else float("nan")

    @property
    def coverage(self) -> float:
        return self.covered / self.accesses if self.accesses else float("nan")

    @property
    def us_per_access(self) -> float:
        return 1e6 * self.seconds / max(self.accesses, 1)

    def summary(self) -> dict[str, float]:
        return {
            "prefetcher": self.prefetcher.name,
            "accesses": self.accesses,
            "precision": self.precision,
            "coverage": self.coverage,
            "us_per_access": self.us_per_access,
        }
