"""Seed handling: every stochastic function takes ``seed`` (int, None or a Generator)."""

from __future__ import annotations

import numpy as np

from neurofabric.core.errors import ConfigError

SeedLike = int | np.random.Generator | None


def make_rng(seed: SeedLike) -> np.random.Generator:
    """A numpy Generator from an int seed, an existing Generator (used as is) or None."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None:
        return np.random.default_rng()
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(
            f"`seed` must be a non-negative integer, a numpy Generator or None, got {seed!r}"
        )
    return np.random.default_rng(int(seed))


def seed_to_int(seed: SeedLike) -> int:
    """A 63-bit integer seed: ints pass through, Generators and None draw one."""
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        if seed < 0:
            raise ConfigError(f"`seed` must be a non-negative integer, got {seed}")
        return int(seed) & 0x7FFF_FFFF_FFFF_FFFF
    return int(make_rng(seed).integers(0, 2**63 - 1))
