"""Starting ``mpiexec`` (the MPICH wheel's, beside this interpreter) in the multi-rank tests."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")
needs_mpiexec = pytest.mark.skipif(MPIEXEC is None, reason="mpiexec (the mpich wheel) missing")


def env() -> dict:
    """One thread per rank, no progress bars."""
    out = dict(os.environ)
    out.update(NEUROFABRIC_PROGRESS="0", OMP_WAIT_POLICY="PASSIVE", NUMBA_NUM_THREADS="1")
    return out


def mpiexec(ranks: int, args: list[str], timeout: float = 240) -> subprocess.CompletedProcess:
    """``mpiexec -n ranks python *args``, its output captured."""
    cmd = [MPIEXEC, "-n", str(ranks), sys.executable, *args]
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, env=env(), check=False
    )
