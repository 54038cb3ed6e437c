"""What every command shares: one error handler, one progress view, JSON output, options.

- :func:`handles_errors` turns a :class:`NeurofabricError` (bad parameter, bad file, missing
  backend) into ``error: <message>`` on stderr and exit status 2, for every command, instead of
  a ``try/except`` in each.
- :class:`ProgressView` renders any engine's :class:`neurofabric.core.progress.Progress` as a
  rich progress bar on stderr (nothing when ``--json`` is given or stderr is not a terminal's
  business, e.g. ``NEUROFABRIC_PROGRESS=0``).
- :func:`emit` prints a command's summary as a table or, with ``--json``, as one JSON line.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import numpy as np
import typer
from rich.markup import escape
from rich.table import Table

from neurofabric.cli.render import console, err_console, progress_bar
from neurofabric.core.config import get_config
from neurofabric.core.errors import NeurofabricError
from neurofabric.core.progress import Progress

F = TypeVar("F", bound=Callable[..., Any])

JSON_OPTION = typer.Option(False, "--json", help="Print one JSON line instead of tables.")
BACKEND_OPTION = typer.Option(
    "auto",
    "--backend",
    help="Kernel backend: auto (the fastest installed), numba, reference (snn: also torch).",
)


def fail(exc: BaseException) -> None:
    """Print ``error: <exc>`` on stderr and exit with status 2."""
    err_console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
    raise typer.Exit(2) from exc


def handles_errors(fn: F) -> F:
    """Decorate a command: a NeurofabricError it raises becomes a clean error and exit 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except NeurofabricError as exc:
            fail(exc)

    return wrapper  # type: ignore[return-value]


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


class ProgressView:
    """A rich bar for an engine's progress callback::

        with ProgressView("training", show=not json_out, info=lambda p: f"loss {p['loss']:.3f}") as view:
            model.fit(X, y, callback=view.callback)

    ``info`` picks what to show beside the bar (default: the first few metrics). ``stop``
    (optional) is asked after each report and its answer returned to the engine, so a command
    can end a run early (e.g. a time budget).
    """

    def __init__(
        self,
        label: str,
        *,
        show: bool = True,
        info: Callable[[Progress], str] | None = None,
        stop: Callable[[Progress], bool] | None = None,
    ) -> None:
        self.label = label
        self.show = show and get_config().progress
        self.info = info or self._default_info
        self.stop = stop
        #: the first and the last report (a resumed run's first ``done`` says where it resumed)
        self.first: Progress | None = None
        self.last: Progress | None = None
        self._bar = (
            progress_bar(label, "{task.completed:.0f}/{task.total:.0f}") if self.show else None
        )
        self._task = None

    @staticmethod
    def _default_info(p: Progress) -> str:
        items = [(k, v) for k, v in p.metrics.items() if isinstance(v, (int, float))][:3]
        return " ".join(f"{k}={_short(v)}" for k, v in items)

    def __enter__(self) -> ProgressView:
        if self._bar is not None:
            self._bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def callback(self, p: Progress) -> bool:
        if self.first is None:
            self.first = p
        self.last = p
        if self._bar is not None:
            if self._task is None:
                self._task = self._bar.add_task(self.label, total=p.total or None, info="")
            self._bar.update(self._task, completed=p.done, total=p.total or None, info=self.info(p))
        return bool(self.stop(p)) if self.stop is not None else False


def jsonable(value: Any) -> Any:
    """Numbers, arrays, paths and nested containers as JSON values (NaN/inf become null)."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def emit(summary: Mapping[str, Any], json_out: bool, table: Callable[[Any], Table] | None) -> None:
    """Print ``summary`` as one JSON line (``--json``) or with ``table`` (a rich Table maker)."""
    if json_out or table is None:
        typer.echo(json.dumps(jsonable(summary)))
    else:
        console.print(table(summary))
