"""Training language models: data from text files, AdamW with warmup + cosine, checkpoints
with exact, verified resume, metrics to JSONL / CSV and a loss-curve PNG.

Resuming is explicit: ``Trainer(..., out_dir=run, resume=True)`` continues the checkpoint in
``run/checkpoint`` and raises ``CheckpointError`` when there is none; ``resume=False`` (the
default) starts from scratch and raises when ``run`` already holds a checkpoint rather than
overwrite it. A resumed checkpoint must pass its checksums, and the model config, the
training config (every field but ``max_time``) and the training data (a digest of the token
ids) must equal the saved ones; any difference raises naming it.

>>> import tempfile
>>> from neurofabric.seq import RWKV4, RWKVConfig
>>> from neurofabric.seq.train import TextData, TrainConfig, Trainer
>>> data = TextData.from_text("abcabcabd " * 200)
>>> model = RWKV4(RWKVConfig(vocab_size=data.vocab_size, n_layer=1, n_embd=16), seed=0)
>>> cfg = TrainConfig(max_steps=30, batch_size=8, seq_len=16, eval_every=15, lr=3e-3)
>>> result = Trainer(model, data, cfg, out_dir=tempfile.mkdtemp()).fit()
>>> result["val_loss"] < result["history"][0]["val_loss"]
True
"""

from __future__ import annotations

import atexit
import csv
import hashlib
import io
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neurofabric.core.checkpoint import atomic_directory, atomic_write, recover_directory
from neurofabric.core.errors import CheckpointError, ConfigError, ShapeError
from neurofabric.core.progress import ProgressCallback, ProgressReporter
from neurofabric.core.rng import make_rng
from neurofabric.core.validation import (
    check_int,
    check_interval,
    check_nonnegative,
    check_positive,
)
from neurofabric.seq.io import (
    arch_of,
    optimizer_from_files,
    optimizer_to_files,
    read_checkpoint_manifest,
    write_checkpoint_manifest,
    write_model_files,
)

log = logging.getLogger(__name__)

__all__ = ["TextData", "TrainConfig", "Trainer", "token_loss"]


@dataclass(frozen=True)
class TrainConfig:
    lr: float = 1e-3
    min_lr: float = 1e-4
    weight_decay: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.99
    warmup_steps: int = 100
    max_steps: int = 2000
    batch_size: int = 16
    seq_len: int = 128
    grad_clip: float = 1.0
    grad_accum: int = 1
    eval_every: int = 100
    eval_batches: int = 20
    patience: int | None = None
    max_time: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("max_steps", "batch_size", "seq_len", "grad_accum", "eval_every"):
            check_int(name, getattr(self, name), min_value=1)
        check_int("warmup_steps", self.warmup_steps, min_value=0)
        check_int("eval_batches", self.eval_batches, min_value=1)
        check_int("seed", self.seed, min_value=0)
        check_positive("lr", self.lr)
        for name in ("min_lr", "grad_clip", "weight_decay"):
            check_nonnegative(name, getattr(self, name))
        for name in ("beta1", "beta2"):  # AdamW's moment decays
            check_interval(name, getattr(self, name), 0.0, 1.0, high_open=True)
        if self.patience is not None:
            check_int("patience", self.patience, min_value=1)
        if self.max_time is not None:
            check_positive("max_time", self.max_time, unit="seconds")

    def lr_at(self, step: int) -> float:
        """Linear warmup to ``lr``, then cosine decay to ``min_lr`` at ``max_steps``."""
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        frac = (step - self.warmup_steps) / max(1, self.max_steps - self.warmup_steps)
        return self.min_lr + 0.5 * (self.lr - self.min_lr) * (
            1 + math.cos(math.pi * min(frac, 1.0))
        )


class TextData:
    """Token ids of a text with a train / validation split (the first ``train_frac`` for
    training, the rest for validation, as nanoGPT's shakespeare_char does)."""

    def __init__(self, ids: np.ndarray, tokenizer: Any, *, train_frac: float = 0.9) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        if len(ids) < 16:
            raise ShapeError(f"the corpus has {len(ids)} tokens; at least 16 are needed")
        check_interval("train_frac", train_frac, 0.0, 1.0, low_open=True, high_open=True)
        cut = int(len(ids) * train_frac)
        self.train, self.val = ids[:cut], ids[cut:]
        self.tokenizer = tokenizer

    @classmethod
    def from_text(cls, text: str, tokenizer: Any = None, *, train_frac: float = 0.9) -> TextData:
        from neurofabric.seq.tokenizers import CharTokenizer

        if not text:
            raise ShapeError("the corpus is empty")
        tok = tokenizer or CharTokenizer.from_text(text)
        return cls(np.asarray(tok.encode(text), dtype=np.int64), tok, train_frac=train_frac)

    @classmethod
    def from_file(
        cls, path: str | os.PathLike[str], tokenizer: Any = None, *, train_frac: float = 0.9
    ) -> TextData:
        path = Path(path)
        if not path.is_file():
            raise ShapeError(f"{path} not found")
        return cls.from_text(path.read_text(encoding="utf-8"), tokenizer, train_frac=train_frac)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    def digest(self) -> dict[str, Any]:
        """What identifies the data of a run: the sizes and sha256 of the train and validation
        token ids (int64, little-endian) and the vocabulary size."""

        def sha(ids: np.ndarray) -> str:
            return hashlib.sha256(np.ascontiguousarray(ids, dtype="<i8").tobytes()).hexdigest()

        return {
            "train_tokens": int(len(self.train)),
            "val_tokens": int(len(self.val)),
            "train_sha256": sha(self.train),
            "val_sha256": sha(self.val),
            "vocab_size": int(self.vocab_size),
        }

    def batch(self, split: str, batch_size: int, seq_len: int, rng: np.random.Generator):
        ids = self.train if split == "train" else self.val
        if len(ids) <= seq_len + 1:
            raise ShapeError(
                f"the {split} split has {len(ids)} tokens, fewer than seq_len + 2 = {seq_len + 2}"
            )
        starts = rng.integers(0, len(ids) - seq_len - 1, size=batch_size)
        x = np.stack([ids[s : s + seq_len] for s in starts])
        y = np.stack([ids[s + 1 : s + seq_len + 1] for s in starts])
        return torch.from_numpy(x), torch.from_numpy(y)


def _param_groups(model: torch.nn.Module, weight_decay: float):
    """Weight decay on matrices only (not on norms, biases, embeddings' time parameters)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.ndim >= 2 and "emb" not in name else no_decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def _logits_of(out: Any) -> torch.Tensor:
    """The logits of a forward pass: our models return ``(logits, state)``
    (:class:`~neurofabric.seq.output.LMOutput`); another causal LM may return the tensor."""
    return out[0] if isinstance(out, tuple) else out


def token_loss(model: Any, x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean next-token cross-entropy (nats per token) of ``model`` on inputs ``x`` (B, T)
    against targets ``y`` (B, T), without gradients: the one loss every evaluation reports
    (the trainer, ``neurofabric seq eval``, the quantization benchmark, the studio, the demo)."""
    with torch.no_grad():
        logits = _logits_of(model(x))
        return float(
            torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        )


# training-config fields a resumed run may change: they do not alter the trajectory
_RESUME_MAY_CHANGE = ("max_time",)
# model-config fields a resumed run may change: Mamba's scan kernel computes the same function
# (the kernels agree to rounding; "auto", the default since it replaced "numba", runs the same
# numba kernel on CPU, so a run saved with "numba" resumes exactly)
_RESUME_MODEL_MAY_CHANGE = ("scan",)


def _differences(saved: Any, current: dict, skip: tuple[str, ...] = ()) -> list[str]:
    if not isinstance(saved, dict):
        return [f"the saved value is {saved!r}, not a mapping"]
    current = json.loads(json.dumps(current))  # compare as saved (JSON types)
    keys = sorted((set(saved) | set(current)) - set(skip))
    return [
        f"`{k}` (saved {saved.get(k, '<absent>')!r}, now {current.get(k, '<absent>')!r})"
        for k in keys
        if saved.get(k, "<absent>") != current.get(k, "<absent>")
    ]


def _data_parallel(distributed: bool | None, model: torch.nn.Module) -> tuple[int, int]:
    """(rank, processes) of data-parallel training: one process unless ``distributed`` (None:
    when ``torchrun`` started several, ``WORLD_SIZE`` > 1), which joins torch.distributed's
    default group (gloo for a model on the CPU, NCCL on CUDA), started here if need be."""
    many = int(os.environ.get("WORLD_SIZE", "1")) > 1 if distributed is None else distributed
    if not many:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_available():
        raise ConfigError("distributed training needs torch.distributed, missing in this torch")
    if not dist.is_initialized():
        if "MASTER_ADDR" not in os.environ:
            raise ConfigError(
                "distributed training starts under torchrun (it sets WORLD_SIZE, RANK and "
                "MASTER_ADDR): torchrun --nproc-per-node K -m neurofabric seq train ..."
            )
        cuda = next(model.parameters()).is_cuda
        dist.init_process_group("nccl" if cuda else "gloo")
        atexit.register(_leave_group)  # gloo's threads must stop before the interpreter does
    return dist.get_rank(), dist.get_world_size()


def _leave_group() -> None:
    """Wait for every process, then dissolve the group this module started."""
    import torch.distributed as dist

    if dist.is_initialized():
        try:
            dist.barrier()
        finally:
            dist.destroy_process_group()


def _average_gradients(model: torch.nn.Module, loss: float, world: int) -> float:
    """All-reduce every gradient (one flat buffer) and the loss; divide by ``world``: each
    process then holds the gradient of the whole batch, as one process computes it."""
    import torch.distributed as dist

    grads = [p.grad for p in model.parameters() if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads] + [torch.tensor([loss], dtype=grads[0].dtype)])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()
    return float(flat[-1])


def _from_rank_0(flag: bool) -> bool:
    import torch.distributed as dist

    t = torch.tensor([1 if flag else 0])
    dist.broadcast(t, src=0)
    return bool(t.item())


class Trainer:
    """``fit()`` trains, evaluates every ``eval_every`` steps, saves ``out_dir/checkpoint``
    (atomic) and ``out_dir/best``.

    ``resume=True`` continues exactly from ``out_dir/checkpoint`` (verified: checksums, model
    and training config, data digest) and raises ``CheckpointError`` when it is missing;
    ``resume=False`` starts from scratch and raises when ``out_dir`` already holds a
    checkpoint, so a run is never overwritten by accident."""

    def __init__(
        self,
        model: torch.nn.Module,
        data: TextData,
        config: TrainConfig | None = None,
        *,
        out_dir: str | os.PathLike[str] | None = None,
        resume: bool = False,
        distributed: bool | None = None,
    ) -> None:
        self.model, self.data = model, data
        self.cfg = config or TrainConfig()
        self.rank, self.world = _data_parallel(distributed, model)
        if self.cfg.batch_size % self.world:
            raise ConfigError(
                f"`batch_size` ({self.cfg.batch_size}) must be a multiple of the number of "
                f"processes ({self.world}): each trains on an equal share of every batch"
            )
        vocab = getattr(model.config, "vocab_size", None)
        if vocab is not None and vocab < data.vocab_size:
            raise ConfigError(
                f"the model's vocabulary ({vocab}) is smaller than the tokenizer's ({data.vocab_size})"
            )
        self.out = Path(out_dir) if out_dir is not None else None
        self.opt = torch.optim.AdamW(
            _param_groups(model, self.cfg.weight_decay),
            lr=self.cfg.lr,
            betas=(self.cfg.beta1, self.cfg.beta2),
        )
        self.rng = make_rng(self.cfg.seed)
        self.step = 0
        self.history: list[dict] = []
        self.best = float("inf")
        self.bad_evals = 0
        if not isinstance(resume, bool):
            raise ConfigError(f"`resume` must be True or False, got {resume!r}")
        if resume and self.out is None:
            raise ConfigError("`resume=True` needs `out_dir`, the run folder to continue")
        if self.out is not None:
            ckpt = self.out / "checkpoint"
            if self.rank == 0:
                recover_directory(ckpt)  # a save interrupted between its two renames
            if self.world > 1:
                import torch.distributed as dist

                dist.barrier()
            if resume:
                if not ckpt.exists():
                    raise CheckpointError(
                        f"resume=True, but {ckpt} does not exist: there is nothing to resume. "
                        f"Check `out_dir`, or pass resume=False to start from scratch"
                    )
                self.resume(ckpt)
            elif ckpt.exists():
                raise CheckpointError(
                    f"{self.out} already holds a training checkpoint ({ckpt}); resume=False "
                    f"would overwrite it. Pass resume=True (CLI: --resume) to continue it, or "
                    f"choose a new `out_dir` (or delete this one) to start from scratch"
                )
        if self.world > 1:
            import torch.distributed as dist

            for p in self.model.parameters():  # every process starts from rank 0's weights
                dist.broadcast(p.data, src=0)
            dist.barrier()  # every process has checked out_dir before rank 0 writes to it

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate(self, split: str = "val") -> float:
        self.model.eval()
        rng = np.random.default_rng(12345)  # the same batches at every evaluation
        losses = []
        for i in range(self.cfg.eval_batches):
            x, y = self.data.batch(split, self.cfg.batch_size, self.cfg.seq_len, rng)
            if i % self.world == self.rank:  # over several processes, each takes its share
                losses.append(token_loss(self.model, x, y))
        self.model.train()
        if self.world == 1:
            return float(np.mean(losses))
        import torch.distributed as dist

        total = torch.tensor([math.fsum(losses), len(losses)], dtype=torch.float64)
        dist.all_reduce(total)
        return float(total[0] / total[1])

    # ------------------------------------------------------------------ checkpoints
    def _save(self, name: str) -> None:
        if self.out is None or self.rank != 0:  # one writer: every process holds the same
            return
        with atomic_directory(self.out / name) as tmp:
            write_model_files(self.model, tmp)
            opt_meta = optimizer_to_files(self.opt, tmp)
            state = {
                "step": self.step,
                "best": self.best,
                "bad_evals": self.bad_evals,
                "rng": self.rng.bit_generator.state,
                "config": asdict(self.cfg),
                "optimizer": opt_meta,
                "history": self.history,
                "torch_rng": self.torch_rng_state(),
            }
            (tmp / "trainer.json").write_text(json.dumps(state), encoding="utf-8")
            write_checkpoint_manifest(tmp, self._identity())

    def _identity(self) -> dict[str, Any]:
        """What a checkpoint must agree with to be resumed by this trainer."""
        return {
            "arch": arch_of(self.model),
            "model_config": self.model.config.as_dict(),
            "train_config": asdict(self.cfg),
            "data": self.data.digest(),
        }

    @staticmethod
    def torch_rng_state() -> list[int]:
        return torch.get_rng_state().tolist()

    def resume(self, folder: str | os.PathLike[str]) -> None:
        """Restore weights, optimizer moments, step, RNG streams and history exactly, after
        verifying the checkpoint: every file's sha256, and the model config, the training
        config (all but ``max_time``) and the data digest against this trainer's."""
        from safetensors.torch import load_file

        folder = Path(folder)
        manifest = read_checkpoint_manifest(folder)
        mine = self._identity()
        if manifest.get("arch") != mine["arch"]:
            raise CheckpointError(
                f"{folder} holds a {manifest.get('arch')!r} model, this trainer has "
                f"{mine['arch']!r}; resume with the same architecture or use a new run folder"
            )
        checks = (
            ("model config", "model_config", _RESUME_MODEL_MAY_CHANGE),
            ("training config", "train_config", _RESUME_MAY_CHANGE),
            ("training data", "data", ()),
        )
        for what, key, skip in checks:
            diff = _differences(manifest.get(key), mine[key], skip)
            if diff:
                raise CheckpointError(
                    f"{folder}: the {what} differs from the saved one: {'; '.join(diff)}. "
                    f"Resume with the same {what}, or start a new run folder"
                )
        self.model.load_state_dict(load_file(folder / "model.safetensors"))
        try:
            state = json.loads((folder / "trainer.json").read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"{folder / 'trainer.json'}: not valid JSON ({exc})") from exc
        optimizer_from_files(self.opt, folder, state["optimizer"])
        self.step, self.best, self.bad_evals = state["step"], state["best"], state["bad_evals"]
        self.rng.bit_generator.state = state["rng"]
        torch.set_rng_state(torch.tensor(state["torch_rng"], dtype=torch.uint8))
        self.history = state["history"]
        log.info("resumed from %s at step %d", folder, self.step)

    # ------------------------------------------------------------------ training
    def fit(self, callback: ProgressCallback | None = None, *, log_every: int = 1) -> dict:
        """Train to ``max_steps`` (or until ``max_time``, ``patience`` evaluations without
        improvement, or the callback's stop) and return a summary: ``step``, ``val_loss``,
        ``best_val_loss``, ``history`` and ``stopped`` (True when the callback stopped it).

        Every ``log_every`` steps, and at the last, ``callback`` gets a
        :class:`~neurofabric.core.progress.Progress` (task "seq.train", ``done`` the step of
        ``max_steps``, unit "step"; metrics ``loss`` (the step's training loss), ``lr``,
        ``grad_norm``, ``tokens_per_s`` (this call's average) and ``val_loss`` at evaluation
        steps). Returning True stops after that step; the checkpoint is then written there
        (with a validation loss), so ``resume=True`` continues the run exactly."""
        cfg = self.cfg
        check_int("log_every", log_every, min_value=1)
        report = ProgressReporter("seq.train", cfg.max_steps, "step", callback)
        tokens_per_step = cfg.batch_size * cfg.seq_len * cfg.grad_accum
        first = self.step
        self.model.train()
        t0 = time.perf_counter()
        stop = False
        while self.step < cfg.max_steps and not stop:
            lr = cfg.lr_at(self.step)
            loss, norm = self._train_step(lr)
            self.step += 1
            seconds = time.perf_counter() - t0
            record = {
                "step": self.step,
                "train_loss": loss,
                "lr": lr,
                "grad_norm": norm,
                "seconds": seconds,
            }
            if self.step % cfg.eval_every == 0 or self.step == cfg.max_steps:
                stop = self._evaluate_and_save(record)
            if cfg.max_time is not None and time.perf_counter() - t0 > cfg.max_time:
                stop = True
            if self.step % log_every and self.step != cfg.max_steps and not stop:
                if self.world > 1:
                    stop = _from_rank_0(stop)
                continue
            metrics = {"loss": loss, "lr": lr, "grad_norm": norm}
            metrics["tokens_per_s"] = (self.step - first) * tokens_per_step / max(seconds, 1e-9)
            if "val_loss" in record:
                metrics["val_loss"] = record["val_loss"]
            if report.update(self.step, **metrics):
                log.info("seq.train: stopped by the callback after step %d", self.step)
                stop = True
            if self.world > 1:  # rank 0's clock and callback decide for every process
                stop = _from_rank_0(stop)
        last = self.history[-1] if self.history else {}
        if "val_loss" not in last or last["step"] != self.step:
            rec = {
                "step": self.step,
                "val_loss": self.evaluate(),
                "seconds": time.perf_counter() - t0,
            }
            self.history.append(rec)
            self._save("checkpoint")
            self._write_metrics()
        final = self.history[-1]["val_loss"]
        return {
            "step": self.step,
            "val_loss": final,
            "best_val_loss": min(self.best, final),
            "history": self.history,
            "stopped": report.stopped,
        }

    def _train_step(self, lr: float) -> tuple[float, float]:
        """One optimizer step at learning rate ``lr``: (mean training loss, gradient norm)."""
        cfg = self.cfg
        for g in self.opt.param_groups:
            g["lr"] = lr
        self.opt.zero_grad(set_to_none=True)
        total = 0.0
        for _ in range(cfg.grad_accum):
            x, y = self.data.batch("train", cfg.batch_size, cfg.seq_len, self.rng)
            if self.world > 1:  # the same global batch everywhere; this process's rows
                share = cfg.batch_size // self.world
                x = x[self.rank * share : (self.rank + 1) * share]
                y = y[self.rank * share : (self.rank + 1) * share]
            logits = _logits_of(self.model(x))
            loss = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), y.reshape(-1)
            )
            (loss / cfg.grad_accum).backward()
            total += loss.item() / cfg.grad_accum
        if self.world > 1:
            total = _average_gradients(self.model, total, self.world)
        clip = cfg.grad_clip or float("inf")
        norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip))
        self.opt.step()
        return total, norm

    def _evaluate_and_save(self, record: dict) -> bool:
        """Add ``val_loss`` to ``record``, keep ``best``, save the checkpoint and the metrics;
        True when ``patience`` evaluations in a row did not improve."""
        record["val_loss"] = self.evaluate()
        stop = False
        if record["val_loss"] < self.best:
            self.best, self.bad_evals = record["val_loss"], 0
            self._save("best")
        else:
            self.bad_evals += 1
            stop = self.cfg.patience is not None and self.bad_evals >= self.cfg.patience
        self.history.append(record)
        self._save("checkpoint")
        self._write_metrics()
        return stop

    def _write_metrics(self) -> None:
        if self.out is None or self.rank != 0:
            return
        lines = "".join(json.dumps(r) + "\n" for r in self.history)
        atomic_write(self.out / "metrics.jsonl", lines)
        table = io.StringIO(newline="")
        w = csv.DictWriter(table, fieldnames=sorted({k for r in self.history for k in r}))
        w.writeheader()
        w.writerows(self.history)
        atomic_write(self.out / "metrics.csv", table.getvalue())

    def plot(self, path: str | os.PathLike[str]) -> Path:
        """Train and validation loss against step (PNG)."""
        from neurofabric.core.figures import pyplot, save_figure

        plt = pyplot()
        fig, ax = plt.subplots(figsize=(7, 4))
        steps = [r["step"] for r in self.history if "train_loss" in r]
        ax.plot(
            steps,
            [r["train_loss"] for r in self.history if "train_loss" in r],
            label="train (at eval steps)",
        )
        vs = [(r["step"], r["val_loss"]) for r in self.history if "val_loss" in r]
        ax.plot([s for s, _ in vs], [v for _, v in vs], label="validation")
        ax.set_xlabel("step")
        ax.set_ylabel("loss (nats per token)")
        ax.legend()
        fig.tight_layout()
        return save_figure(fig, path)
