"""A studio run's worker: ``python -m neurofabric.studio.worker RUN_FOLDER [--resume]``.

The studio starts one per run (its own process and session, so a run survives the page and
can be killed alone). The worker reads ``run.json``, runs the template's job, appends every
progress report to ``metrics.jsonl`` and stops at the next unit of work once the studio has
created the ``cancel`` file: the engine then keeps what it learned and writes its checkpoint,
and the run becomes ``cancelled`` (resumable). An exception makes it ``failed`` with the
message; a SIGKILL leaves ``running`` with a dead pid, which the studio reads as ``failed``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from neurofabric.core.checkpoint import write_json
from neurofabric.core.errors import NeurofabricError
from neurofabric.core.progress import Progress

log = logging.getLogger("neurofabric.studio.worker")

#: seconds between two progress records with the same metrics (reports in between are skipped)
RECORD_EVERY_S = 0.25


def _clean(v: Any) -> Any:
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    if not math.isfinite(f):
        return None
    return int(f) if isinstance(v, int) else f


class Context:
    """What a job sees of its run (see :mod:`neurofabric.studio.jobs`)."""

    def __init__(self, folder: Path, record: dict[str, Any], resume: bool) -> None:
        self.folder = folder
        self.params = record["params"]
        self.data = record.get("data") or {}
        self.resume = resume
        self.attempt = int(record.get("attempts", 1))
        self.cancelled = False
        self._last_t = 0.0
        self._last_keys: frozenset[str] = frozenset()
        self._pending: dict[str, Any] | None = None
        self._metrics = open(folder / "metrics.jsonl", "a", encoding="utf-8")  # noqa: SIM115
        (folder / "images").mkdir(exist_ok=True)
        self.progress: dict[str, Any] | None = None

    # -- data
    @property
    def dataset(self) -> str | None:
        return self.data.get("dataset")

    @property
    def upload_path(self) -> Path | None:
        if "upload" not in self.data:
            return None
        from neurofabric.studio.uploads import UploadStore

        return UploadStore(self.folder.parent.parent).file(self.data["upload"])

    def read_text(self) -> str:
        if self.upload_path is not None:
            return self.upload_path.read_text(encoding="utf-8")
        from neurofabric.studio.templates import TEMPLATES, dataset_path

        for d in TEMPLATES["seq-char"].datasets:
            if d.id == self.dataset:
                return dataset_path(d).read_text(encoding="utf-8")
        raise NeurofabricError(f"no dataset {self.dataset!r}")

    # -- progress
    def callback(self, p: Progress) -> bool:
        """The engines' progress callback: record, and stop when the studio cancelled."""
        rec = {"done": p.done, "elapsed_s": round(p.elapsed_s, 3)}
        rec.update({k: _clean(v) for k, v in p.metrics.items()})
        keys = frozenset(k for k, v in rec.items() if v is not None)
        now = time.monotonic()
        self.progress = {
            "done": p.done,
            "total": p.total,
            "unit": p.unit,
            "elapsed_s": round(p.elapsed_s, 3),
            "eta_s": None if p.eta_s is None else round(p.eta_s, 1),
            "fraction": p.fraction,
            "metrics": {k: v for k, v in rec.items() if k not in ("done", "elapsed_s")},
        }
        last = p.total is not None and p.done >= p.total
        if now - self._last_t >= RECORD_EVERY_S or keys != self._last_keys or last:
            self._write(rec)
            self._last_t, self._last_keys = now, keys
        else:
            self._pending = rec
        if (self.folder / "cancel").exists():
            self.cancelled = True
        return self.cancelled

    def metric(self, **values: Any) -> None:
        """A record outside the engine's reports (e.g. the test accuracy at the end)."""
        self._write({k: _clean(v) for k, v in values.items()})

    def _write(self, rec: dict[str, Any]) -> None:
        self._pending = None
        self._metrics.write(json.dumps(rec) + "\n")
        self._metrics.flush()
        if self.progress is not None:
            write_json(self.folder / "progress.json", self.progress)

    def flush(self) -> None:
        if self._pending is not None:
            self._write(self._pending)

    # -- figures
    def image(self, name: str, draw: Callable[[Path], Any]) -> None:
        """``draw(path)`` writes a PNG; it replaces ``images/<name>.png`` atomically."""
        tmp = self.folder / "images" / f".{name}.tmp.png"
        try:
            draw(tmp)
            os.replace(tmp, self.folder / "images" / f"{name}.png")
        except Exception as exc:  # a figure never fails a run
            log.warning("studio: could not draw %s: %s", name, exc)
            tmp.unlink(missing_ok=True)


def run(folder: Path, resume: bool) -> int:
    from neurofabric.studio.jobs import JOBS

    record = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    ctx = Context(folder, record, resume)
    status, error, summary = "done", None, None
    try:
        summary = JOBS[record["template"]](ctx)
        if ctx.cancelled:
            status = "cancelled"
    except Exception as exc:
        status = "failed"
        error = str(exc) if isinstance(exc, NeurofabricError) else f"{type(exc).__name__}: {exc}"
        log.error("studio run %s failed:\n%s", folder.name, traceback.format_exc())
    ctx.flush()
    record = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    record.update(status=status, error=error, updated=time.time(), progress=ctx.progress)
    if summary is not None:
        record["summary"] = json.loads(json.dumps(summary, default=_clean))
    write_json(folder / "run.json", record)
    return 0 if status != "failed" else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--resume", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return run(args.folder.resolve(), args.resume)


if __name__ == "__main__":
    sys.exit(main())
