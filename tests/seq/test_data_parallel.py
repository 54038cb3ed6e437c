"""Data-parallel training over processes (``torchrun``, gloo on the CPU): two processes with
the same global batch give one process's losses, rank 0 alone writes the run folder, and a
run saved by two processes resumes in one exactly. Starts ``torch.distributed.run``; carries
the ``mpi`` marker of the suite's multi-process tests."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from neurofabric.core.errors import ConfigError

ARGS = ["--arch", "gpt", "--layers", "1", "--dim", "32", "--batch-size", "8", "--seq-len", "32"]
ARGS += ["--eval-every", "1", "--lr", "3e-3", "--json"]


def _text(tmp_path):
    rng = np.random.default_rng(0)
    words = np.array("the cat sat on a mat and then a dog ran far away".split())
    path = tmp_path / "text.txt"
    path.write_text(" ".join(rng.choice(words, 6000)), encoding="utf-8")
    return path


def _train(tmp_path, processes, out, steps, *extra):
    env = dict(os.environ, NEUROFABRIC_PROGRESS="0", OMP_NUM_THREADS="1")
    cmd = [sys.executable]
    if processes > 1:
        cmd += ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
    cmd += ["-m", "neurofabric", "seq", "train", "--data", str(_text(tmp_path))]
    cmd += ["--out", str(tmp_path / out), "--steps", str(steps), *ARGS, *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert len(lines) == 1, proc.stdout  # rank 0 alone reports
    return json.loads(lines[0])


def _losses(summary):
    return [(r["train_loss"], r["val_loss"]) for r in summary["history"]]


@pytest.mark.mpi
def test_two_processes_give_the_losses_of_one(tmp_path):
    one = _train(tmp_path, 1, "one", 20)
    two = _train(tmp_path, 2, "two", 20)
    assert one["processes"] == 1 and two["processes"] == 2 and two["rank"] == 0
    assert len(_losses(two)) == 20
    np.testing.assert_allclose(_losses(two), _losses(one), rtol=1e-5)
    assert _losses(one)[-1][1] < _losses(one)[0][1] - 0.1  # it learned
    # one writer: the run folder of two processes is the one of one process
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(
        p.name for p in (tmp_path / "one").iterdir()
    )


RESUMABLE = """
import sys
from neurofabric.seq.io import build_lm
from neurofabric.seq.train import TextData, TrainConfig, Trainer

text, out, stop_at, resume = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
data = TextData.from_text(open(text, encoding="utf-8").read())
model = build_lm("gpt", data.vocab_size, layers=1, width=32, seq_len=32, seed=0)
cfg = TrainConfig(max_steps=16, batch_size=8, seq_len=32, eval_every=1, lr=3e-3, seed=0,
                  warmup_steps=2)
Trainer(model, data, cfg, out_dir=out, resume=resume).fit(callback=lambda p: p.done >= stop_at)
"""


@pytest.mark.mpi
def test_a_run_of_two_processes_stopped_then_resumed_in_one_is_the_whole_run(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(RESUMABLE, encoding="utf-8")
    text = _text(tmp_path)
    env = dict(os.environ, NEUROFABRIC_PROGRESS="0", OMP_NUM_THREADS="1")

    def run(processes, out, stop_at, resume):
        cmd = [sys.executable]
        if processes > 1:
            cmd += ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
        cmd += [str(script), str(text), str(tmp_path / out), str(stop_at), str(int(resume))]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        lines = (tmp_path / out / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
        return [json.loads(ln) for ln in lines]

    whole = run(1, "whole", 99, False)
    first = run(2, "split", 8, False)  # stopped by rank 0's callback after step 8
    assert [r["step"] for r in first] == list(range(1, 9))
    resumed = run(1, "split", 99, True)
    assert [r["step"] for r in resumed] == list(range(1, 17))
    got = [(r["train_loss"], r["val_loss"]) for r in resumed]
    np.testing.assert_allclose(got, [(r["train_loss"], r["val_loss"]) for r in whole], rtol=1e-5)


def test_a_batch_that_does_not_split_evenly_is_refused(monkeypatch):
    import torch

    from neurofabric.seq import train as train_mod
    from neurofabric.seq.train import TextData, TrainConfig, Trainer

    monkeypatch.setattr(train_mod, "_data_parallel", lambda distributed, model: (0, 3))
    data = TextData.from_text("abcabd " * 100)
    model = torch.nn.Linear(2, 2)
    with pytest.raises(ConfigError, match=r"`batch_size` \(8\) must be a multiple .* \(3\)"):
        Trainer(model, data, TrainConfig(batch_size=8), distributed=True)


def test_distributed_outside_torchrun_says_how_to_start(monkeypatch):
    import torch

    from neurofabric.seq.train import TextData, TrainConfig, Trainer

    for var in ("MASTER_ADDR", "WORLD_SIZE", "RANK"):
        monkeypatch.delenv(var, raising=False)
    data = TextData.from_text("abcabd " * 100)
    with pytest.raises(ConfigError, match="torchrun --nproc-per-node K"):
        Trainer(torch.nn.Linear(2, 2), data, TrainConfig(batch_size=8), distributed=True)
