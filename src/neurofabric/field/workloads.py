"""Access streams of page numbers for benchmarks and tests (every one seeded).

sequential, strided, Zipf-random, uniform random, and two interleaved sequential streams with
a fraction of uniform random accesses mixed in (of which a prefetcher can cover at most the
streams' share).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from neurofabric.core.rng import make_rng
from neurofabric.core.validation import check_choice, check_int, check_probability

__all__ = ["WORKLOADS", "make_workload"]


def sequential(n: int, *, start: int = 0, **_: Any) -> np.ndarray:
    return np.arange(start, start + n, dtype=np.int64)


def strided(n: int, *, stride: int = 7, start: int = 0, **_: Any) -> np.ndarray:
    return start + stride * np.arange(n, dtype=np.int64)


def zipf(n: int, *, n_pages: int = 1 << 20, s: float = 1.1, seed: Any = 0, **_: Any) -> np.ndarray:
    """Zipf(s) ranks over ``n_pages`` pages, the ranks scattered over the page space."""
    rng = make_rng(seed)
    ranks = np.arange(1, n_pages + 1, dtype=np.float64)
    p = ranks**-s
    p /= p.sum()
    picks = rng.choice(n_pages, size=n, p=p)
    return rng.permutation(n_pages)[picks].astype(np.int64)


def uniform(n: int, *, n_pages: int = 1 << 20, seed: Any = 0, **_: Any) -> np.ndarray:
    return make_rng(seed).integers(0, n_pages, size=n, dtype=np.int64)


def interleaved(
    n: int,
    *,
    n_pages: int = 1 << 20,
    streams: int = 2,
    random_fraction: float = 0.2,
    seed: Any = 0,
    **_: Any,
) -> np.ndarray:
    """``streams`` sequential streams taking turns, each access replaced by a uniform random
    page with probability ``random_fraction``."""
    check_probability("random_fraction", random_fraction)
    rng = make_rng(seed)
    starts = rng.integers(0, n_pages // 2, size=streams)
    heads = starts.copy()
    out = np.empty(n, dtype=np.int64)
    for i in range(n):
        if rng.random() < random_fraction:
            out[i] = rng.integers(0, n_pages)
        else:
            s = i % streams
            out[i] = heads[s]
            heads[s] += 1
    return out


WORKLOADS = {
    "sequential": sequential,
    "strided": strided,
    "zipf": zipf,
    "uniform": uniform,
    "interleaved": interleaved,
}


def make_workload(name: str, n: int, **kwargs: Any) -> np.ndarray:
    check_choice("workload", name, tuple(WORKLOADS))
    check_int("n", n, min_value=1)
    return WORKLOADS[name](n, **kwargs)
