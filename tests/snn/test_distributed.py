"""Spiking networks over MPI ranks (``neurofabric.snn.distributed``): the same spikes on 1, 2
and 4 ranks, one exchange per minimum-delay window, a failing rank stopping every rank with
its message. The multi-rank tests start ``mpiexec`` (the MPICH wheel's) and carry the ``mpi``
marker; they run in ``make test``."""

import json
import re
import textwrap

import numpy as np
import pyarrow.feather as feather
import pytest

from neurofabric.core.errors import ConfigError
from neurofabric.core.mpi import Serial
from neurofabric.snn import PoissonInput, Random, SpikingNetwork
from neurofabric.snn.distributed import partition, run_distributed
from neurofabric.snn.plasticity import PairSTDP
from tests._mpi import mpiexec, needs_mpiexec


def _brunel_over(ranks, tmp_path):
    """The CLI under mpiexec: Brunel's network (1.5 ms delays: 15-step windows, a Poisson
    input per neuron); rank 0 writes the spikes and the JSON summary."""
    out = tmp_path / f"spikes{ranks}.arrow"
    proc = mpiexec(
        ranks,
        ["-m", "neurofabric", "snn", "run", "brunel", "--neurons", "1500", "--duration", "0.15"]
        + ["--seed", "4", "--mpi", "--export", str(out), "--json"],
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    table = feather.read_table(out)
    return summary, np.stack([table["time_s"].to_numpy(), table["neuron"].to_numpy()])


@pytest.mark.mpi
@needs_mpiexec
def test_one_two_and_four_ranks_give_the_same_spikes(tmp_path):
    runs = {k: _brunel_over(k, tmp_path) for k in (1, 2, 4)}
    one, spikes = runs[1]
    assert one["spikes"] > 500
    for k, (summary, s) in runs.items():
        assert summary["ranks"] == k
        np.testing.assert_array_equal(s, spikes)  # bit-identical, in float64
        # exactly one exchange per window of the minimum delay (15 steps of 1,500)
        assert summary["window_steps"] == 15 and summary["exchanges"] == 100
    assert runs[4][0]["bytes_exchanged"] == one["bytes_exchanged"] == 8 * one["spikes"]


@pytest.mark.mpi
@needs_mpiexec
def test_a_failing_rank_stops_every_rank_with_its_message():
    script = textwrap.dedent(
        """
        import types
        from mpi4py import MPI
        from neurofabric.core.errors import DistributedError
        from neurofabric.snn.distributed import run_distributed
        from neurofabric.snn.models import brunel

        net = brunel(600, seed=1).build()
        if MPI.COMM_WORLD.rank == 1:  # the third window of rank 1 fails
            real, calls = net._k.simulate, []

            def failing(*args):
                calls.append(1)
                if len(calls) == 3:
                    raise RuntimeError("planted failure")
                return real(*args)

            net._k = types.SimpleNamespace(**{**vars(net._k), "simulate": failing})
        try:
            run_distributed(net, 0.1)
        except DistributedError as exc:
            print(f"rank {MPI.COMM_WORLD.rank} stopped: {exc}", flush=True)
        """
    )
    proc = mpiexec(2, ["-c", script], timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    # mpiexec merges the ranks' output, a line may arrive glued to the other's
    found = re.findall(r"rank (\d) stopped: (.*?planted failure)", proc.stdout)
    assert sorted(r for r, _ in found) == ["0", "1"], proc.stdout
    for _, message in found:
        assert message == (
            "a rank failed at step 30 of a distributed run: rank 1: RuntimeError: planted failure"
        )


@pytest.mark.mpi
@needs_mpiexec
def test_saved_on_two_ranks_loaded_on_three_goes_on_as_one_run(tmp_path):
    """A checkpoint written by 2 ranks (``save_distributed``) and resumed on 3 gives the spikes
    of an uninterrupted run."""
    script = textwrap.dedent(
        """
        import sys
        import numpy as np
        from mpi4py import MPI
        from neurofabric.snn import SpikingNetwork
        from neurofabric.snn.distributed import run_distributed, save_distributed
        from neurofabric.snn.models import brunel

        stage, folder = sys.argv[1], sys.argv[2]
        if stage == "first":
            net = brunel(800, seed=6)
            r = run_distributed(net, 0.05)
            save_distributed(net, folder + "/net")
        else:
            r = run_distributed(SpikingNetwork.load(folder + "/net"), 0.05)
        if MPI.COMM_WORLD.rank == 0:
            np.savez(folder + "/" + stage + ".npz", t=r.spike_times, i=r.spike_indices)
        """
    )
    for ranks, stage in ((2, "first"), (3, "second")):
        proc = mpiexec(ranks, ["-c", script, stage, str(tmp_path)], timeout=180)
        assert proc.returncode == 0, proc.stderr[-2000:]
    from neurofabric.snn.models import brunel

    whole = run_distributed(brunel(800, seed=6), 0.1, comm=Serial())
    parts = [np.load(tmp_path / f"{s}.npz") for s in ("first", "second")]
    assert whole.n_spikes > 200 and len(parts[0]["t"]) > 0 and len(parts[1]["t"]) > 0
    np.testing.assert_array_equal(np.concatenate([p["i"] for p in parts]), whole.spike_indices)
    np.testing.assert_allclose(np.concatenate([p["t"] for p in parts]), whole.spike_times)


def test_partition_covers_every_neuron_once():
    for n, k in ((10, 3), (7, 7), (400_000, 4), (5, 8)):
        blocks = [partition(n, k, r) for r in range(k)]
        assert blocks[0][0] == 0 and blocks[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(blocks, blocks[1:], strict=False))
        assert max(hi - lo for lo, hi in blocks) - min(hi - lo for lo, hi in blocks) <= 1


def _net(**kw):
    net = SpikingNetwork(300, seed=2, max_delay=2e-3, v_init=(-70e-3, -51e-3), **kw)
    net.add_input("x", PoissonInput(50, rate=100.0))
    net.connect(Random(p=0.1), source="x", weight=3e-3)
    return net


def test_one_rank_in_process_counts_windows_and_matches_the_plain_run():
    net = _net()
    net.connect(Random(p=0.05), weight=1e-3, inh_weight=3e-3, delay=(0.4e-3, 1.5e-3))
    r = run_distributed(net, 0.1, comm=Serial())
    plain = _net()
    plain.connect(Random(p=0.05), weight=1e-3, inh_weight=3e-3, delay=(0.4e-3, 1.5e-3))
    from neurofabric.snn import SpikeMonitor

    p = plain.run(0.1, monitors=[SpikeMonitor()])
    assert r.window_steps == 4 and r.exchanges == r.windows == 250
    assert r.n_spikes > 50
    np.testing.assert_array_equal(r.spike_indices, p.spike_indices)
    np.testing.assert_allclose(r.spike_times, p.spike_times)
    assert net.state_.t == 1000


@pytest.mark.parametrize(
    "make,match",
    [
        (
            lambda: _net().connect(Random(p=0.1), source="x", weight=1e-3, plasticity=PairSTDP()),
            "does not support plasticity",
        ),
        (lambda: _net(storage="procedural"), "storage='procedural'"),
        (lambda: _net(backend="torch"), "backend='torch'"),
    ],
)
def test_what_is_not_distributed_yet_is_named(make, match):
    with pytest.raises(ConfigError, match=match):
        run_distributed(make(), 0.01, comm=Serial())
