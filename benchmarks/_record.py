"""One JSON-line schema for every benchmark (documented in ``benchmarks/README.md``).

Each benchmark script prints its human table as before and, for every measured row, one line
made by :func:`record`::

    from _record import record

    record(
        "snn_nir",                        # the script's name
        "neurofabric",                    # ours; a peer by its package name ("snntorch")
        variant="numba",                  # optional: which of ours (or of the peer's modes)
        workload={"neurons": 2100, "steps": 1000, "threads": 1},
        figures={"wall_s": 0.94, "speedup_x": 1.3},
        headline=("wall_s",),             # optional: the figures a summary table shows
    )

which prints (and, when ``NEUROFABRIC_BENCH_RESULTS`` names a file, as ``make bench`` does,
appends to it) ``{"schema": 1, "benchmark": ..., "system": ..., "variant": ..., <workload
keys>, <figures>, "figures": [names], "headline": [names], "machine": ..., "date": ...,
"run": ...}`` (``run`` tells apart two runs of a benchmark appended to one file).

The rules, checked here so a script cannot drift from them: ``system`` is ``neurofabric`` or
a peer's package name (lower case); every figure's name ends with its unit (``_s``, ``_ms``,
``_hz``, ``_bytes``, ``_mb``, ``_pct``, ``_x`` for a ratio, ...; :data:`UNITS`) and its value is
a finite number or null; workload keys do not collide with the fixed keys or the figures.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

SCHEMA = 1
RESULTS_ENV = "NEUROFABRIC_BENCH_RESULTS"
#: the unit suffixes a figure's name may end with
UNITS = (
    "s",
    "ms",
    "us",
    "ns",
    "hz",
    "per_s",
    "bytes",
    "kb",
    "mb",
    "gb",
    "kib",
    "mib",
    "gib",
    "pct",
    "frac",
    "x",
    "db",
    "count",
    "steps",
    "mv",
    "nats",
    "bits",
    "bpc",
    "ppl",
)
FIXED = (
    "schema",
    "benchmark",
    "system",
    "variant",
    "figures",
    "headline",
    "machine",
    "date",
    "recorded",
    "run",
)
#: the environment variable that names one run of a benchmark for every process it starts
#: (``run_all`` sets it per benchmark); without it, this process's start
RUN_ENV = "NEUROFABRIC_BENCH_RUN"
_RUN = f"{_dt.datetime.now():%Y-%m-%dT%H:%M:%S}-{os.getpid()}"
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


def has_unit(name: str) -> bool:
    return any(name.endswith("_" + unit) or name == unit for unit in UNITS)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_gb() -> float | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def machine() -> str:
    """The machine in words: CPU model, cores, memory, OS and Python."""
    ram = _ram_gb()
    parts = [
        _cpu_model(),
        f"{os.cpu_count()} cores",
        f"{ram:g} GiB RAM" if ram else "",
        f"{platform.system()} {platform.machine()}",
        f"Python {platform.python_version()}",
    ]
    return ", ".join(p for p in parts if p)


def machine_slug() -> str:
    """A short file-name form of :func:`machine` (``xeon-2c-24g``)."""
    cpu = _cpu_model().lower()
    words = [w for w in re.split(r"[^a-z0-9]+", cpu) if w and w not in ("r", "tm", "cpu", "intel")]
    family = next((w for w in words if not w.isdigit()), "cpu")
    ram = _ram_gb()
    return f"{family}-{os.cpu_count()}c" + (f"-{round(ram)}g" if ram else "")


def _check_number(name: str, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"figure {name!r} must be a number or None, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN/Inf: a figure that could not be measured is null
    return value


def make_line(
    benchmark: str,
    system: str,
    *,
    workload: Mapping[str, Any],
    figures: Mapping[str, Any],
    variant: str | None = None,
    headline: Iterable[str] | None = None,
) -> dict[str, Any]:
    """The schema's dict for one row, validated (``ValueError`` names what is wrong)."""
    if not _NAME.match(benchmark):
        raise ValueError(f"benchmark name {benchmark!r} must be lower case (the script's name)")
    if not _NAME.match(system):
        raise ValueError(
            f"system {system!r} must be 'neurofabric' or a peer's package name in lower case; "
            "put modes in `variant`"
        )
    if not figures:
        raise ValueError(f"{benchmark}: a row needs at least one figure")
    for name in figures:
        if not has_unit(name):
            raise ValueError(
                f"{benchmark}: figure {name!r} must end with its unit, one of "
                f"{', '.join('_' + u for u in UNITS)}"
            )
    clash = (set(workload) & set(figures)) | (set(workload) | set(figures)) & set(FIXED)
    if clash:
        raise ValueError(f"{benchmark}: keys {sorted(clash)} are used twice or reserved")
    heads = list(headline) if headline is not None else list(figures)
    missing = [h for h in heads if h not in figures]
    if missing:
        raise ValueError(f"{benchmark}: headline figures {missing} are not among the figures")
    line: dict[str, Any] = {
        "schema": SCHEMA,
        "benchmark": benchmark,
        "system": system,
        "variant": variant,
        **dict(workload),
        **{k: _check_number(k, v) for k, v in figures.items()},
        "figures": list(figures),
        "headline": heads,
        "machine": machine(),
        "date": _dt.date.today().isoformat(),
        "recorded": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "run": os.environ.get(RUN_ENV) or _RUN,
    }
    json.dumps(line)  # workload values must be JSON too
    return line


def record(
    benchmark: str,
    system: str,
    *,
    workload: Mapping[str, Any],
    figures: Mapping[str, Any],
    variant: str | None = None,
    headline: Iterable[str] | None = None,
) -> dict[str, Any]:
    """Print one schema line (and append it to ``$NEUROFABRIC_BENCH_RESULTS`` if set)."""
    line = make_line(
        benchmark, system, workload=workload, figures=figures, variant=variant, headline=headline
    )
    text = json.dumps(line)
    print(text, flush=True)
    target = os.environ.get(RESULTS_ENV)
    if target:
        path = Path(target)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as fh:
            fh.write(text + "\n")
    return line
