"""Thread pinning shared by the benchmark scripts: the same thread counts for every system.

Native thread pools size themselves when their library loads, so a script calls
:func:`pin_threads` *before* it imports numpy, numba or torch::

    from _threads import pin_threads, threads_info

    THREADS = pin_threads()  # --threads N from the command line, default 1

    import numpy as np  # noqa: E402

:func:`pin_threads` sets ``NUMBA_NUM_THREADS``, ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``,
``MKL_NUM_THREADS``, ``NEUROFABRIC_THREADS`` and ``RAYON_NUM_THREADS`` (HF tokenizers) in this
process; peers started as
subprocesses (from ``.venv-peers``) get the same variables through :func:`thread_env`.
After the imports, :func:`limit_loaded` also caps the pools that are already loaded (numba,
torch intra-op, BLAS and OpenMP through threadpoolctl), and :func:`threads_info` reports the
counts in force, for the table header and every JSON line.
"""

from __future__ import annotations

import argparse
import os
import sys

THREAD_VARS = (
    "NUMBA_NUM_THREADS",
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NEUROFABRIC_THREADS",
    "RAYON_NUM_THREADS",  # HF tokenizers' thread pool
)
_limits: list = []  # keeps threadpoolctl's limiter alive for the life of the process


def requested_threads(default: int = 1) -> int:
    """``--threads N`` from ``sys.argv`` (read before argparse runs), else ``default``."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--threads", default=None)
    value = pre.parse_known_args()[0].threads
    if value is None:
        return default
    try:
        n = int(value)
    except ValueError:
        raise SystemExit(
            f"--threads must be a positive integer, got {value!r}; pass e.g. --threads 1"
        ) from None
    if n < 1:
        raise SystemExit(f"--threads must be >= 1, got {n}; pass e.g. --threads 1")
    return n


def thread_env(n: int) -> dict[str, str]:
    """The environment variables that pin every pool to ``n`` threads (for subprocesses)."""
    return {var: str(n) for var in THREAD_VARS}


def pin_threads(default: int = 1) -> int:
    """Pin this process to ``--threads`` (or ``default``) threads; call before numpy loads."""
    n = requested_threads(default)
    os.environ.update(thread_env(n))
    return n


def limit_loaded(n: int) -> None:
    """Cap the pools of the libraries loaded so far to ``n`` threads (after the imports)."""
    if "numba" in sys.modules:
        import numba

        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    if "torch" in sys.modules:
        import torch

        torch.set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return
    _limits.append(threadpool_limits(n))


def threads_info() -> dict:
    """The thread counts in force: numba's, torch's, each native pool's, and the env vars."""
    info: dict = {}
    if "numba" in sys.modules:
        import numba

        info["numba"] = numba.get_num_threads()
    if "torch" in sys.modules:
        import torch

        info["torch"] = torch.get_num_threads()
    try:
        from threadpoolctl import threadpool_info

        for pool in threadpool_info():
            info[f"{pool['user_api']}:{pool['internal_api']}"] = pool["num_threads"]
    except ImportError:  # pragma: no cover
        pass
    info.update({var: os.environ.get(var) for var in THREAD_VARS})
    return info


def threads_line() -> str:
    """One header line for the printed table."""
    return "threads: " + ", ".join(f"{k}={v}" for k, v in threads_info().items())
