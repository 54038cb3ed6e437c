"""The studio's runs on disk: one folder per run, written atomically, read by any process.

::

    <runs>/runs/<id>/run.json        what was asked (template, params, data) and where it stands
                                     (status, error, pid); rewritten atomically
    <runs>/runs/<id>/metrics.jsonl   one JSON line per progress report, appended by the worker
    <runs>/runs/<id>/cancel          present: the worker stops after its current unit of work
    <runs>/runs/<id>/images/*.png    figures the worker draws (replaced atomically)
    <runs>/runs/<id>/worker.log      the worker's log
    <runs>/runs/<id>/...             the engine's own checkpoint and model folders
    <runs>/uploads/<id>/             uploaded files (see :mod:`neurofabric.studio.uploads`)

Nothing here is held only in memory: a studio restarted (or started on another port) shows
the same runs. A run whose worker died without saying so (SIGKILL, power loss) is shown as
``failed`` with the checkpoint it left, which :meth:`RunStore.resume` continues.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from neurofabric.core.checkpoint import write_json
from neurofabric.core.errors import ConfigError, DataError

log = logging.getLogger(__name__)

__all__ = ["RUN_ID", "RunStore"]

#: run and upload ids: what the studio makes, and all a request may name
RUN_ID = re.compile(r"^[0-9]{8}-[0-9]{6}-[0-9a-f]{6}$")
FINAL = ("done", "failed", "cancelled")


def new_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True  # (our own children are asked with poll(), which also reaps them)


class RunStore:
    """The runs under ``root/runs``; every method reads the disk, so several studios (or a
    restarted one) agree."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()
        self.runs = self.root / "runs"
        self.runs.mkdir(parents=True, exist_ok=True)
        self._children: dict[str, subprocess.Popen] = {}

    # ------------------------------------------------------------------ reading
    def folder(self, run_id: str) -> Path:
        """The folder of an existing run; a :class:`DataError` for an id that is not one."""
        if not isinstance(run_id, str) or not RUN_ID.match(run_id):
            raise DataError(f"no run {run_id!r}: run ids look like 20261206-041500-a1b2c3")
        folder = self.runs / run_id
        if not (folder / "run.json").is_file():
            raise DataError(f"no run {run_id!r} in {self.runs}")
        return folder

    def read(self, run_id: str) -> dict[str, Any]:
        """The run's record, with a dead worker's ``running`` turned into ``failed``."""
        folder = self.folder(run_id)
        rec = json.loads((folder / "run.json").read_text(encoding="utf-8"))
        if rec["status"] == "running" and not self._alive(run_id, rec.get("pid")):
            rec = self._reread_or_fail(folder, rec)
        return rec

    def _alive(self, run_id: str, pid: int | None) -> bool:
        child = self._children.get(run_id)
        if child is not None and child.pid == pid:
            return child.poll() is None
        return _pid_alive(pid)

    def _reread_or_fail(self, folder: Path, rec: dict) -> dict:
        # the worker may have finished between our read and the liveness check
        rec = json.loads((folder / "run.json").read_text(encoding="utf-8"))
        if rec["status"] != "running":
            return rec
        rec.update(
            status="failed",
            error="the worker process ended without finishing (killed, or the machine "
            "stopped); resume continues from its last checkpoint",
            updated=time.time(),
        )
        self.write(folder, rec)
        return rec

    def list(self) -> list[dict[str, Any]]:
        out = []
        for folder in sorted(self.runs.iterdir(), reverse=True):
            if RUN_ID.match(folder.name) and (folder / "run.json").is_file():
                try:
                    out.append(self.read(folder.name))
                except (OSError, ValueError) as exc:  # a damaged record: skip it, say so
                    log.warning("studio: skipping run %s: %s", folder.name, exc)
        return out

    def metrics(self, run_id: str) -> list[dict[str, Any]]:
        """Every complete progress record so far."""
        return self.metrics_since(run_id, 0)[0]

    def metrics_since(self, run_id: str, offset: int) -> tuple[list[dict[str, Any]], int]:
        """The complete records after byte ``offset`` of ``metrics.jsonl``, and the offset to
        ask from next time (a line still being written is left for then), so a stream that
        follows a run reads each record once."""
        path = self.folder(run_id) / "metrics.jsonl"
        if not path.exists():
            return [], offset
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = fh.read()
        end = data.rfind(b"\n") + 1
        lines = data[:end].decode("utf-8").splitlines()
        return [json.loads(line) for line in lines if line], offset + end

    # ------------------------------------------------------------------ writing
    @staticmethod
    def write(folder: Path, rec: dict[str, Any]) -> None:
        write_json(folder / "run.json", rec)

    def create(self, template: str, params: dict, data: dict | None, title: str) -> dict:
        run_id = new_id()
        folder = self.runs / run_id
        folder.mkdir()
        now = time.time()
        rec = {
            "id": run_id,
            "template": template,
            "title": title,
            "params": params,
            "data": data,
            "status": "running",
            "created": now,
            "updated": now,
            "error": None,
            "pid": None,
            "attempts": 0,
        }
        self.write(folder, rec)
        return self.start(run_id, resume=False)

    def start(self, run_id: str, *, resume: bool) -> dict:
        """Start (or resume) the run's worker process."""
        folder = self.folder(run_id)
        rec = json.loads((folder / "run.json").read_text(encoding="utf-8"))
        (folder / "cancel").unlink(missing_ok=True)
        rec.update(status="running", error=None, updated=time.time())
        rec["attempts"] = int(rec.get("attempts", 0)) + 1
        self.write(folder, rec)
        cmd = [sys.executable, "-m", "neurofabric.studio.worker", str(folder)]
        if resume:
            cmd.append("--resume")
        with open(folder / "worker.log", "ab") as logf:
            child = subprocess.Popen(  # noqa: S603 - our own module, no shell
                cmd,
                stdout=logf,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env={**os.environ, "NEUROFABRIC_PROGRESS": "0"},
            )
        self._children[run_id] = child
        rec["pid"] = child.pid
        self.write(folder, rec)
        return rec

    def cancel(self, run_id: str) -> dict:
        """Ask the worker to stop after its current unit (it saves, then marks the run
        ``cancelled``); a worker that does not answer in ``grace`` seconds is ended."""
        rec = self.read(run_id)
        if rec["status"] != "running":
            raise ConfigError(f"run {run_id} is {rec['status']}, not running: nothing to cancel")
        (self.folder(run_id) / "cancel").touch()
        return rec

    def kill(self, run_id: str) -> None:
        """SIGKILL a run's worker (the studio's shutdown and tests)."""
        rec = self.read(run_id)
        if rec["status"] == "running" and rec.get("pid"):
            try:
                os.killpg(rec["pid"], signal.SIGKILL)
            except ProcessLookupError:
                pass
            child = self._children.get(run_id)
            if child is not None:
                child.wait(timeout=10)

    def resume(self, run_id: str) -> dict:
        rec = self.read(run_id)
        if rec["status"] == "running":
            raise ConfigError(f"run {run_id} is still running; cancel it first")
        return self.start(run_id, resume=True)

    def reap(self) -> None:
        """Collect finished children (no zombies in a long-lived studio)."""
        for run_id, child in list(self._children.items()):
            if child.poll() is not None:
                del self._children[run_id]
