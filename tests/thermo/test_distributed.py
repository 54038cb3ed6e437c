"""Parallel tempering over MPI ranks: the replicas are spread over the ranks in blocks, and
the result does not depend on how many ranks run them (every replica draws from its own
stream, keyed by the replica). The multi-rank tests start ``mpiexec`` (the MPICH wheel's)
and carry the ``mpi`` marker."""

import json
import re
import textwrap
from pathlib import Path

import pytest

from neurofabric.core.errors import ConfigError
from neurofabric.thermo import ThermoClassifier
from tests._mpi import mpiexec, needs_mpiexec

PARAMS = dict(
    hidden=(8,),
    lambda_l0=0.5,
    w_prune=0.05,
    w_max=2.0,
    n_proposals=24_000,
    generation=2_000,
    batch_size=300,
    replicas=4,
    replica_ratio=1.6,
    seed=11,
)

FIT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from sklearn.datasets import load_digits
    from neurofabric.core import mpi
    from neurofabric.thermo import ThermoClassifier

    X, y = load_digits(return_X_y=True)
    X = X[:600] / 16.0
    y = y[:600]
    params = json.loads(sys.argv[1])
    params["hidden"] = tuple(params["hidden"])
    m = ThermoClassifier(**params).fit(X, y, comm=mpi.world())
    f = m.fabric_
    out = {"rank": mpi.world().Get_rank(), "ranks": m.ranks_,
           "weights": f.weight.tolist(), "source": f.source.tolist(), "bias": f.bias.tolist(),
           "energy": m.history_.column("energy").tolist(), "swap_rate": m.swap_rate_.tolist()}
    with open(sys.argv[2] + f".{out['rank']}.json", "w") as fh:
        json.dump(out, fh)
    """
)


def _digits():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return X[:600] / 16.0, y[:600]


def _fit_over(ranks, tmp_path, **over):
    params = {**PARAMS, **over}
    stem = str(tmp_path / f"fit{ranks}")
    proc = mpiexec(ranks, ["-c", FIT, json.dumps(params), stem])
    assert proc.returncode == 0, proc.stderr[-3000:]
    outs = [json.loads(Path(f"{stem}.{r}.json").read_text()) for r in range(ranks)]
    assert [o["ranks"] for o in outs] == [ranks] * ranks
    return outs


def _serial(**over):
    X, y = _digits()
    return ThermoClassifier(**{**PARAMS, **over}).fit(X, y)


@pytest.mark.mpi
@needs_mpiexec
def test_two_and_four_ranks_give_the_serial_model(tmp_path):
    """The same seed gives the same network, energies and swap rates on 1 (in process), 2 and
    4 ranks, on every rank: floats compared exactly."""
    one = _serial()
    assert one.ranks_ == 1
    assert one.swap_rate_.shape == (3,) and (one.swap_rate_ > 0).any()
    for ranks in (2, 4):
        for out in _fit_over(ranks, tmp_path):
            assert out["weights"] == one.fabric_.weight.tolist(), (ranks, out["rank"])
            assert out["source"] == one.fabric_.source.tolist()
            assert out["bias"] == one.fabric_.bias.tolist()
            assert out["energy"] == one.history_.column("energy").tolist()
            assert out["swap_rate"] == one.swap_rate_.tolist()


def test_the_replicas_draw_from_their_own_streams():
    """A planted bug check for the test above: a different number of replicas, or another
    seed, changes the model (the comparison is not vacuous)."""
    base = _serial()
    other = _serial(seed=12)
    assert base.fabric_.weight.tolist() != other.fabric_.weight.tolist()
    three = _serial(replicas=3)
    assert three.history_.column("energy").tolist() != base.history_.column("energy").tolist()


def test_more_ranks_than_replicas_is_refused():
    from neurofabric.core.mpi import Serial

    class _Two(Serial):
        def Get_size(self):  # noqa: N802 (mpi4py's names)
            return 2

    X, y = _digits()
    with pytest.raises(ConfigError, match=r"`replicas` \(1\) must be at least .* ranks \(2\)"):
        ThermoClassifier(**{**PARAMS, "replicas": 1}).fit(X, y, comm=_Two())


@pytest.mark.mpi
@needs_mpiexec
def test_a_failing_rank_stops_every_rank_with_its_message():
    script = textwrap.dedent(
        """
        import numpy as np
        from mpi4py import MPI
        from sklearn.datasets import load_digits
        from neurofabric.core.errors import DistributedError
        from neurofabric.thermo import ThermoClassifier, chain

        if MPI.COMM_WORLD.rank == 1:  # rank 1's third generation fails
            real, calls = chain.Chain.run, []

            def failing(self, *args, **kw):
                calls.append(1)
                if len(calls) == 5:
                    raise RuntimeError("planted failure")
                return real(self, *args, **kw)

            chain.Chain.run = failing
        X, y = load_digits(return_X_y=True)
        m = ThermoClassifier(hidden=(4,), n_proposals=10_000, generation=1_000, replicas=4,
                             seed=1)
        try:
            m.fit(X[:200] / 16, y[:200], comm=MPI.COMM_WORLD)
        except DistributedError as exc:
            print(f"rank {MPI.COMM_WORLD.rank} stopped: {exc}", flush=True)
        """
    )
    proc = mpiexec(2, ["-c", script], timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = re.findall(r"rank (\d) stopped: (.*?planted failure)", proc.stdout)
    assert sorted(r for r, _ in found) == ["0", "1"], proc.stdout
    for _, message in found:
        assert message == (
            "a rank failed in generation 2 of thermo.fit: rank 1: RuntimeError: planted failure"
        )


@pytest.mark.mpi
@needs_mpiexec
def test_the_cli_trains_over_two_ranks_and_rank_0_saves(tmp_path):
    out = tmp_path / "model"
    args = ["-m", "neurofabric", "thermo", "train", "--out", str(out), "--hidden", "8"]
    args += ["--proposals", "20000", "--generation", "2000", "--replicas", "2"]
    args += ["--replica-ratio", "1.05", "--batch-size", "300", "--n-train", "600", "--json"]
    proc = mpiexec(2, args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert len(lines) == 1  # rank 0 reports for both
    summary = json.loads(lines[0])
    assert summary["ranks"] == 2 and summary["replicas"] == 2 and summary["rank"] == 0
    assert len(summary["swap_rate"]) == 1 and summary["test_accuracy"] > 0.5
    loaded = ThermoClassifier.load(out)
    assert loaded.fabric_.n_edges == summary["connections"]
