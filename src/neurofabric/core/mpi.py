"""Many processes over MPI: the one pattern every engine's distributed code shares.

    mpiexec -n 4 python my_script.py          # every rank runs the same script

- :func:`world` is the communicator (``MPI.COMM_WORLD`` unless one is given); without mpi4py
  it raises :class:`~neurofabric.core.errors.BackendUnavailableError` with the install hint.
- :func:`partition` splits ``n`` items (neurons, replicas) into contiguous blocks, one per rank.
- :func:`allgather_checked` is the one collective a step ends with: every rank contributes a
  small vector and its status; when any rank failed, *every* rank raises
  :class:`~neurofabric.core.errors.DistributedError` naming it, at the same step, so no rank
  is left waiting in a collective the failed one never reaches.
- :class:`Serial` stands in for a communicator of one rank, so a serial run goes through the
  same code as a distributed one (and gives the same results).

mpi4py with the MPICH wheel is the ``mpi`` extra (``pip install 'neurofabric[mpi]'``);
``mpiexec`` comes with the wheel.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from neurofabric.core.errors import BackendUnavailableError, DistributedError

__all__ = ["Serial", "allgather_checked", "launched_by_mpiexec", "partition", "world"]


def launched_by_mpiexec() -> bool:
    """Whether this process is one of several started by ``mpiexec`` (MPICH's or Open MPI's
    environment says how many), without importing MPI."""
    for name in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE"):
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) > 1:
            return True
    return False


def partition(n: int, ranks: int, rank: int) -> tuple[int, int]:
    """The block ``[lo, hi)`` of ``n`` items that ``rank`` of ``ranks`` owns (sizes differ
    by at most one)."""
    return n * rank // ranks, n * (rank + 1) // ranks


def world(comm: Any = None, *, needed_by: str = "this call") -> Any:
    """``comm`` itself, or ``MPI.COMM_WORLD`` when None."""
    if comm is not None:
        return comm
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise BackendUnavailableError(
            f"{needed_by} needs mpi4py: install neurofabric with the `mpi` extra "
            "(pip install 'neurofabric[mpi]': mpi4py and the MPICH wheel)"
        ) from exc
    return MPI.COMM_WORLD


class Serial:
    """A communicator of one rank (the subset of mpi4py's API the engines use)."""

    def Get_size(self) -> int:  # noqa: N802 (mpi4py's names)
        return 1

    def Get_rank(self) -> int:  # noqa: N802
        return 0

    def Allgather(self, send: np.ndarray, recv: np.ndarray) -> None:  # noqa: N802
        np.copyto(recv.reshape(send.shape), send)

    def Allgatherv(self, send: np.ndarray, recv: Any) -> None:  # noqa: N802
        recv[0][...] = send  # recv: [buffer, counts]

    def allgather(self, obj: Any) -> list[Any]:
        return [obj]

    def gather(self, obj: Any, root: int = 0) -> list[Any]:
        return [obj]

    def bcast(self, obj: Any, root: int = 0) -> Any:
        return obj


def allgather_checked(comm: Any, values: np.ndarray, error: str | None, where: str) -> np.ndarray:
    """Every rank's ``values`` (a 1-D float64 or int64 vector of the same length on every
    rank), as an array of shape (ranks, len(values)), after checking every rank's status.

    ``error`` is None where this rank's step went well, otherwise its message (e.g.
    ``f"rank {rank}: {type(exc).__name__}: {exc}"``; the values are then ignored). If any
    rank failed, every rank raises ``DistributedError(f"a rank failed {where}: ...")`` with
    the first failed rank's message (the messages travel only then)."""
    values = np.ascontiguousarray(values)
    if values.dtype not in (np.float64, np.int64) or values.ndim != 1:
        raise TypeError("allgather_checked sends a 1-D float64 or int64 vector")
    size = comm.Get_size()
    send = np.empty(len(values) + 1, values.dtype)
    send[0] = 1 if error is not None else 0
    send[1:] = values
    recv = np.empty((size, len(send)), values.dtype)
    comm.Allgather(send, recv)
    if (recv[:, 0] != 0).any():
        failed = [e for e in comm.allgather(error) if e is not None]
        raise DistributedError(
            f"a rank failed {where}: {failed[0]}"
            + (f" (and {len(failed) - 1} more)" if len(failed) > 1 else "")
        )
    return recv[:, 1:]
