"""Process measurements shared by the field benchmarks: resident memory and device I/O from
``/proc/self`` (Linux), and a runner for one configuration per child process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def memory() -> tuple[int, int]:
    """(anonymous, file-backed) resident bytes of this process (``/proc/self/status``)."""
    anon = file = 0
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("RssAnon:"):
                anon = int(line.split()[1]) * 1024
            elif line.startswith("RssFile:"):
                file = int(line.split()[1]) * 1024
    return anon, file


def mapped_rss(folder: str | os.PathLike[str]) -> int:
    """Resident bytes of this process's mappings of files under ``folder`` (``smaps``): the
    shard pages of a store, without the shared libraries that ``RssFile`` also counts."""
    total, inside, prefix = 0, False, str(folder)
    with open("/proc/self/smaps") as fh:
        for line in fh:
            head = line.split()
            if head and "-" in head[0] and ":" not in head[0]:
                inside = len(head) >= 6 and head[-1].startswith(prefix)
            elif inside and line.startswith("Rss:"):
                total += int(head[1]) * 1024
    return total


def device_io() -> tuple[int, int]:
    """(read, written) bytes this process made the storage device move (``/proc/self/io``:
    page-cache hits are not counted, so reads here came from the disk)."""
    read = written = 0
    with open("/proc/self/io") as fh:
        for line in fh:
            if line.startswith("read_bytes:"):
                read = int(line.split()[1])
            elif line.startswith("write_bytes:"):
                written = int(line.split()[1])
    return read, written


def machine_ram() -> int:
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


def run_child(cmd: list[str], env: dict, what: str) -> dict:
    """Run ``cmd`` (a benchmark script in ``--child`` mode) and return the JSON object of
    its last ``{``-line; a failure exits with the child's stderr."""
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    lines = [x for x in proc.stdout.splitlines() if x.startswith("{")]
    if proc.returncode or not lines:
        raise SystemExit(f"{what} failed: {proc.stderr.strip()[-800:]}")
    return json.loads(lines[-1])


def child_command(script: str, *args: str) -> list[str]:
    return [sys.executable, script, "--child", *args]
