"""The field's optimizers: Adam as tiny-cuda-nn trains hash grids, and plain SGD.

Adam (Kingma & Ba 2015) with tiny-cuda-nn's hash-grid settings: beta1 0.9, beta2 0.99,
epsilon 1e-15, no weight decay. For each parameter w with gradient g at step t (1, 2, ...)::

    m = beta1 m + (1 - beta1) g          v = beta2 v + (1 - beta2) g^2
    w = w - lr * (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps)

The table is sparse: a step updates only the rows the batch touched (their m and v too), as
``torch.optim.SparseAdam`` does, with one global step count t (tiny-cuda-nn's ``adam_step`` also
skips the table entries with a zero gradient, but counts steps per entry); a dense update would
touch every page of a table far larger than memory. The decoder is dense. The moments live in the paged
store beside the parameters (``Layout``): the table's m and v are two more table-shaped regions
read and written through the same tiers, the decoder's moments and t one small region; so they
survive close/open and are paged like the parameters.

``ExponentialDecay`` is tiny-cuda-nn's learning-rate schedule of the same name
(``optimizers/exponential_decay.h``): piecewise constant, the rate multiplied by ``base`` at
step ``start`` and every ``interval`` steps after it, up to step ``end``. ``learn(...,
lr_decay=...)`` follows the field's stored Adam step count, so the schedule goes on where it
stopped after close/open.

Every update is computed before anything is written: a step whose loss, gradient or new values
are not all finite raises :class:`DivergenceError` and leaves the field as it was.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurofabric.core.errors import ConfigError, DivergenceError
from neurofabric.core.validation import check_int, check_positive

__all__ = [
    "ADAM",
    "DEFAULT_LR",
    "OPTIMIZERS",
    "AdamSettings",
    "ExponentialDecay",
    "adam_hyper",
    "adam_update",
    "check_finite",
]

OPTIMIZERS = ("adam", "sgd")
#: the default learning rate of each optimizer
DEFAULT_LR = {"adam": 1e-2, "sgd": 0.05}


@dataclass(frozen=True)
class AdamSettings:
    beta1: float = 0.9
    beta2: float = 0.99
    eps: float = 1e-15


ADAM = AdamSettings()


@dataclass(frozen=True)
class ExponentialDecay:
    """tiny-cuda-nn's piecewise-constant exponential decay: the learning rate of the step that
    follows ``t`` steps (t = 0, 1, ...) is ``lr * factor(t)``, multiplied by ``base`` once at
    each ``t`` in ``start, start + interval, ...`` up to ``end``::

        >>> d = ExponentialDecay(start=100, interval=50, base=0.5)
        >>> [d.factor(t) for t in (0, 99, 100, 149, 150)]
        [1.0, 1.0, 0.5, 0.5, 0.25]
    """

    start: int
    interval: int
    base: float
    end: int = 10_000_000

    def __post_init__(self) -> None:
        check_int("start", self.start, min_value=0)
        check_int("interval", self.interval, min_value=1)
        check_int("end", self.end, min_value=self.start)
        check_positive("base", self.base)

    @classmethod
    def parse(cls, text: str) -> ExponentialDecay:
        """``"START,INTERVAL,BASE"`` (a command line's form), e.g. ``"200,100,0.5"``."""
        parts = str(text).split(",")
        try:
            start, interval, base = int(parts[0]), int(parts[1]), float(parts[2])
        except (ValueError, IndexError):
            parts = []
        if len(parts) != 3:
            raise ConfigError(
                f"`lr_decay` must be START,INTERVAL,BASE (e.g. 200,100,0.5: the rate halves at "
                f"step 200 and every 100 steps after), got {text!r}"
            )
        return cls(start=start, interval=interval, base=base)

    def factor(self, t: int) -> float:
        """The factor of the learning rate after ``t`` steps."""
        if t < self.start:
            return 1.0
        return float(self.base ** ((min(t, self.end) - self.start) // self.interval + 1))


def adam_update(
    w: np.ndarray,
    m: np.ndarray,
    v: np.ndarray,
    g: np.ndarray,
    *,
    lr: float,
    t: int,
    settings: AdamSettings = ADAM,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """New (w, m, v) for gradient ``g`` at step ``t`` (float32 arrays, inputs untouched)."""
    b1, b2 = settings.beta1, settings.beta2
    m_new = (b1 * m + (1.0 - b1) * g).astype(np.float32)
    v_new = (b2 * v + (1.0 - b2) * np.square(g)).astype(np.float32)
    m_hat = m_new / (1.0 - b1**t)
    v_hat = v_new / (1.0 - b2**t)
    w_new = (w - lr * m_hat / (np.sqrt(v_hat) + settings.eps)).astype(np.float32)
    return w_new, m_new, v_new


def adam_hyper(lr: float, t: int, settings: AdamSettings = ADAM) -> np.ndarray:
    """What the fused kernel (``adam_rows_paged``) takes for step ``t``: (lr, beta1, 1 - beta1,
    beta2, 1 - beta2, eps, 1 - beta1^t, 1 - beta2^t), each computed in float64 and rounded to
    float32, as numpy rounds the Python floats of :func:`adam_update` (the same bits)."""
    b1, b2 = settings.beta1, settings.beta2
    return np.array(
        [lr, b1, 1.0 - b1, b2, 1.0 - b2, settings.eps, 1.0 - b1**t, 1.0 - b2**t], np.float32
    )


def check_finite(what: str, *arrays: np.ndarray, lr: float, loss: float) -> None:
    """Raise :class:`DivergenceError` unless ``loss`` and every array are finite."""
    if not np.isfinite(loss):
        raise DivergenceError(
            f"the learning step diverged: the loss is {loss} before {what}; nothing was "
            f"written (the field keeps its last finite state). Lower `lr` (it was {lr:g}) or "
            "check the targets for NaN/inf"
        )
    for a in arrays:
        if not np.all(np.isfinite(a)):
            raise DivergenceError(
                f"the learning step diverged: {what} would write non-finite values (loss "
                f"{loss:.6g}); nothing was written (the field keeps its last finite state). "
                f"Lower `lr` (it was {lr:g})"
            )
