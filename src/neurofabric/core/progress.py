"""One progress report for every long-running call, whose callback can stop the run.

Every engine's long loop (``SpikingNetwork.run``, ``DiehlCookClassifier.fit``,
``ThermoClassifier.fit``, ``GuardClassifier.fit``, ``Trainer.fit``, ``NeuralField.learn``)
takes ``callback=`` and calls it after each unit of work (a chunk of steps, an image, a
generation, an epoch, a logging interval) with a :class:`Progress`. If the callback returns
``True`` the run stops after that unit, leaves the engine in a consistent state (what was
learned so far is kept, checkpoints written so far are valid) and marks its result as stopped
where it returns one. Returning ``None`` or ``False`` continues, so a plain logging function
works unchanged::

    def show(p: Progress) -> bool:
        logging.info("%s: %d/%s %ss, %s", p.task, p.done, p.total, p.unit, dict(p.metrics))
        return p.elapsed_s > 60          # stop after a minute

The CLI renders any :class:`Progress` with one rich progress bar (``neurofabric.cli``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from neurofabric.core.errors import ConfigError

__all__ = ["Progress", "ProgressCallback", "ProgressReporter", "check_callback"]


@dataclass(frozen=True)
class Progress:
    """Where a long run stands.

    ``task`` names the call (``"snn.run"``, ``"guard.fit"``, ...); ``done`` of ``total``
    units (``unit`` is ``"step"``, ``"image"``, ``"generation"``, ``"epoch"``, ...; ``total``
    is ``None`` when open-ended, e.g. a time budget); ``elapsed_s`` wall-clock seconds since
    the run started; ``metrics`` the engine's figures so far (loss, accuracy, spikes, ...),
    each named with its unit where it has one.
    """

    task: str
    done: int
    total: int | None
    unit: str
    elapsed_s: float
    metrics: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "metrics", MappingProxyType(dict(self.metrics)))

    @property
    def fraction(self) -> float | None:
        """``done / total`` in [0, 1], or ``None`` when the total is unknown."""
        if not self.total:
            return None
        return min(1.0, self.done / self.total)

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the rate so far, or ``None`` before the first unit / unknown total."""
        if not self.total or self.done <= 0:
            return None
        return self.elapsed_s * (self.total - self.done) / self.done

    def __getitem__(self, key: str) -> Any:
        """``progress["loss"]`` reads a metric."""
        return self.metrics[key]

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``--json`` output): the fields, then the metrics."""
        out: dict[str, Any] = {
            "task": self.task,
            "done": self.done,
            "total": self.total,
            "unit": self.unit,
            "elapsed_s": round(self.elapsed_s, 6),
        }
        for k, v in self.metrics.items():
            if isinstance(v, float) and not math.isfinite(v):
                v = None
            out[k] = v
        return out


ProgressCallback = Callable[[Progress], "bool | None"]


def check_callback(callback: Any, name: str = "callback") -> ProgressCallback | None:
    """``callback`` if it is ``None`` or callable; a :class:`ConfigError` otherwise."""
    if callback is not None and not callable(callback):
        raise ConfigError(
            f"`{name}` must be a function taking a Progress (or None), "
            f"got {type(callback).__name__}"
        )
    return callback


class ProgressReporter:
    """Builds :class:`Progress` records for one run and asks the callback whether to stop.

    ``reporter.update(done, loss=..., ...)`` returns ``True`` when the callback asked to stop
    (and remembers it in :attr:`stopped`); without a callback it only keeps the clock.
    """

    def __init__(
        self,
        task: str,
        total: int | None,
        unit: str,
        callback: ProgressCallback | None,
    ) -> None:
        self.task = task
        self.total = total
        self.unit = unit
        self.callback = check_callback(callback)
        self.stopped = False
        self._t0 = time.perf_counter()
        self._last: Progress | tuple[int, float, dict[str, Any]] | None = None

    @property
    def active(self) -> bool:
        """Whether a callback listens: a loop may skip computing metrics nobody reads."""
        return self.callback is not None

    @property
    def elapsed_s(self) -> float:
        return time.perf_counter() - self._t0

    @property
    def last(self) -> Progress | None:
        """The last report (built on demand when no callback took it)."""
        if isinstance(self._last, tuple):
            done, elapsed, metrics = self._last
            self._last = Progress(self.task, done, self.total, self.unit, elapsed, metrics)
        return self._last

    def update(self, done: int, **metrics: Any) -> bool:
        """Report ``done`` units with ``metrics``; True if the callback asked to stop. Without
        a callback nothing is built (hot loops report per image or per chunk)."""
        if self.callback is None:
            self._last = (int(done), self.elapsed_s, metrics)
            return False
        self._last = Progress(self.task, int(done), self.total, self.unit, self.elapsed_s, metrics)
        if self.callback(self._last):
            self.stopped = True
        return self.stopped
