"""``neurofabric seq``: tokenizers, training and generation for RWKV-4/7 and Mamba-1/2."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.table import Table

from neurofabric.cli.common import JSON_OPTION, ProgressView, emit, handles_errors
from neurofabric.cli.render import console
from neurofabric.core.errors import ConfigError

seq_app = typer.Typer(
    help="Sequence models: RWKV-4, RWKV-7, Mamba-1 and Mamba-2 language models.",
    no_args_is_help=True,
)
tok_app = typer.Typer(
    help="Train tokenizers (HF tokenizers) and a character tokenizer.", no_args_is_help=True
)
seq_app.add_typer(tok_app, name="tokenizer")


@tok_app.command("train")
@handles_errors
def tokenizer_train(
    data: list[Path] = typer.Option(..., help="Text file(s) to train on."),
    out: Path = typer.Option(..., help="tokenizer.json to write."),
    kind: str = typer.Option("bpe", help="bpe (byte-level), wordpiece, unigram or char."),
    vocab_size: int = typer.Option(8000, help="Vocabulary size (not for char)."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Train a tokenizer and save it as JSON."""
    from neurofabric.seq.tokenizers import train_tokenizer

    lines = []
    for path in data:
        if not path.is_file():
            raise ConfigError(f"--data {path} not found")
        lines.extend(path.read_text(encoding="utf-8").splitlines())
    tok = train_tokenizer(kind, lines, vocab_size=vocab_size)
    tok.save(out)
    if json_out:
        emit({"kind": kind, "vocab_size": tok.vocab_size, "out": str(out)}, True, None)
        return
    console.print(f"{kind} tokenizer with {tok.vocab_size:,} tokens -> {out}")


def train_seq(
    *,
    arch: str,
    text: str,
    out: Path | None,
    layers: int,
    dim: int,
    steps: int,
    batch_size: int,
    seq_len: int,
    lr: float,
    eval_every: int,
    max_time: float | None,
    seed: int,
    tokenizer_path: Path | None = None,
    plot: Path | None = None,
    resume: bool = False,
    backend: str = "auto",
    show_progress: bool = True,
) -> dict:
    """Train on a text with a progress bar; returns a summary (used by the demo).

    ``backend``: the training kernel ("auto", "numba" or "chunked": the WKV of RWKV-4 and
    RWKV-7, the scan of Mamba-1 and Mamba-2); the GPT has none, so only "auto" for it.

    ``resume``: continue ``out/checkpoint`` (which must exist, verified against this data and
    config); without it an ``out`` that holds a checkpoint is refused, never overwritten."""
    from neurofabric.seq.io import LM_ARCHS, build_lm
    from neurofabric.seq.tokenizers import load_tokenizer
    from neurofabric.seq.train import TextData, TrainConfig, Trainer

    if arch not in LM_ARCHS:
        raise ConfigError(f"--arch must be one of {', '.join(LM_ARCHS)}, got {arch!r}")
    tok = load_tokenizer(tokenizer_path) if tokenizer_path else None
    data = TextData.from_text(text, tok)
    if arch == "gpt" and backend != "auto":
        raise ConfigError(
            f"--backend {backend!r} chooses the training kernel of RWKV and Mamba (auto, numba "
            f"or chunked); the GPT has none, so leave it at auto"
        )
    model = build_lm(
        arch, data.vocab_size, layers=layers, width=dim, seq_len=seq_len, seed=seed, scan=backend
    )
    cfg = TrainConfig(
        max_steps=steps,
        batch_size=batch_size,
        seq_len=seq_len,
        lr=lr,
        eval_every=eval_every,
        max_time=max_time,
        seed=seed,
        warmup_steps=min(100, steps // 10),
    )
    trainer = Trainer(model, data, cfg, out_dir=out, resume=resume)
    lead = trainer.rank == 0  # under torchrun, rank 0 shows progress and writes the files
    with ProgressView(f"training {arch}", show=show_progress and lead, info=_step_info) as view:
        res = trainer.fit(callback=view.callback if lead else None)
    res.update(rank=trainer.rank, processes=trainer.world)
    if out is not None and lead:
        data.tokenizer.save(Path(out) / "tokenizer.json")
        trainer.plot(plot or Path(out) / "loss.png")
    res.update(
        arch=arch,
        params=sum(p.numel() for p in model.parameters()),
        model=model,
        tokenizer=data.tokenizer,
    )
    return res


def _step_info(p) -> str:
    val = f" val {p['val_loss']:.3f}" if "val_loss" in p.metrics else ""
    return f"loss {p['loss']:.3f}{val}"


@seq_app.command("train")
@handles_errors
def seq_train(
    data: Path = typer.Option(
        ..., help="A plain-text file (first 90 % train, last 10 % validation)."
    ),
    out: Path = typer.Option(
        ..., help="Run folder: checkpoint/, best/, metrics, tokenizer, loss.png."
    ),
    arch: str = typer.Option(
        "rwkv",
        help="rwkv (RWKV-4), rwkv7 (RWKV-7), mamba (Mamba-1), mamba2 (Mamba-2) or gpt (the transformer baseline).",
    ),
    tokenizer: Path | None = typer.Option(
        None, help="A tokenizer.json (default: characters of the data)."
    ),
    layers: int = typer.Option(4, help="Layers."),
    dim: int = typer.Option(128, help="Model width."),
    steps: int = typer.Option(2000, help="Optimizer steps."),
    batch_size: int = typer.Option(16),
    seq_len: int = typer.Option(128),
    lr: float = typer.Option(1e-3),
    eval_every: int = typer.Option(100),
    max_time: float | None = typer.Option(None, help="Stop after this many seconds."),
    seed: int = typer.Option(0),
    resume: bool = typer.Option(
        False,
        "--resume",
        help="Continue OUT/checkpoint exactly (it must exist and match this command's data "
        "and settings). Without it, an OUT that holds a checkpoint is refused.",
    ),
    backend: str = typer.Option(
        "auto",
        "--backend",
        help="Training kernel (RWKV's WKV, Mamba's scan): auto, numba or chunked (torch).",
    ),
    json_out: bool = JSON_OPTION,
) -> None:
    """Train a language model; rerunning the same command with --resume continues it exactly.
    Under `torchrun --nproc-per-node K -m neurofabric seq train ...` the K processes train on
    equal shares of every batch (gradients averaged, the losses of one process); rank 0
    reports and writes the run folder."""
    if not data.is_file():
        raise ConfigError(f"--data {data} not found")
    res = train_seq(
        arch=arch,
        text=data.read_text(encoding="utf-8"),
        out=out,
        layers=layers,
        dim=dim,
        steps=steps,
        batch_size=batch_size,
        seq_len=seq_len,
        lr=lr,
        eval_every=eval_every,
        max_time=max_time,
        seed=seed,
        tokenizer_path=tokenizer,
        resume=resume,
        backend=backend,
        show_progress=not json_out,
    )
    if res["rank"] != 0:  # under torchrun, rank 0 reports for every process
        return
    if json_out:
        drop = ("model", "tokenizer")
        emit({k: v for k, v in res.items() if k not in drop} | {"out": str(out)}, True, None)
        return
    t = Table(title=f"{arch}: {res['params']:,} parameters")
    t.add_column("figure")
    t.add_column("value", justify="right")
    t.add_row("steps", f"{res['step']:,}")
    t.add_row("validation loss (nats/token)", f"{res['val_loss']:.4f}")
    t.add_row("best validation loss", f"{res['best_val_loss']:.4f}")
    console.print(t)
    console.print(f"run folder: {out} (loss curve: {out / 'loss.png'})")


@seq_app.command("generate")
@handles_errors
def seq_generate(
    checkpoint: Path = typer.Option(..., help="A run folder (uses best/) or a model folder."),
    prompt: str = typer.Option(..., help="Text to continue."),
    max_tokens: int = typer.Option(200),
    temperature: float = typer.Option(0.8),
    top_k: int | None = typer.Option(None),
    top_p: float | None = typer.Option(None),
    seed: int = typer.Option(0),
    stop: list[str] = typer.Option([], help="Stop after this text appears (repeatable)."),
    backend: str = typer.Option(
        "auto",
        "--backend",
        help="auto (the fused decoder, numba where installed), numba, reference or torch.",
    ),
    json_out: bool = JSON_OPTION,
) -> None:
    """Stream a continuation of the prompt."""
    from neurofabric.seq.generate import generate
    from neurofabric.seq.io import load_model
    from neurofabric.seq.tokenizers import load_tokenizer

    folder, tok_path = _model_folder(checkpoint)
    model = load_model(folder)
    tok = load_tokenizer(tok_path)
    pieces = generate(
        model,
        tok,
        prompt,
        max_new_tokens=max_tokens,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        seed=seed,
        stop=tuple(stop),
        backend=backend,
    )
    if json_out:
        t0 = time.perf_counter()
        text = "".join(pieces)
        seconds = time.perf_counter() - t0
        emit({"prompt": prompt, "text": text, "seconds": seconds}, True, None)
        return
    console.print(prompt, end="", style="bold")
    for piece in pieces:
        console.print(piece, end="", highlight=False, markup=False)
    console.print()


def _model_folder(checkpoint: Path) -> tuple[Path, Path]:
    """The model folder of a run folder (its best/) or of a model folder, and the
    tokenizer.json beside it."""
    folder = checkpoint / "best" if (checkpoint / "best" / "config.json").is_file() else checkpoint
    tok = checkpoint / "tokenizer.json"
    return folder, tok if tok.is_file() else folder / "tokenizer.json"


def _token_windows(path: Path, tok, n: int, seq_len: int, seed: int):
    """``n`` windows of ``seq_len`` token ids from the text file ``path`` (random starts)."""
    import numpy as np
    import torch

    if not path.is_file():
        raise ConfigError(f"--data {path} not found")
    ids = np.asarray(tok.encode(path.read_text(encoding="utf-8")), dtype=np.int64)
    if len(ids) <= seq_len + 1:
        raise ConfigError(
            f"--data {path} has {len(ids)} tokens; it needs more than --seq-len + 1 = {seq_len + 1}"
        )
    starts = np.random.default_rng(seed).integers(0, len(ids) - seq_len - 1, n)
    return torch.from_numpy(np.stack([ids[s : s + seq_len + 1] for s in starts]))


@seq_app.command("quantize")
@handles_errors
def seq_quantize(
    model_dir: Path = typer.Argument(..., help="A run folder (uses best/) or a model folder."),
    out: Path = typer.Argument(..., help="The quantized model folder to write."),
    method: str = typer.Option("awq", help="awq (needs --data) or rtn (round to nearest)."),
    bits: int = typer.Option(4, help="Bits per weight (2-8; the int4 decoder runs 4)."),
    group: int = typer.Option(128, help="Inputs per scale and zero point."),
    data: Path | None = typer.Option(None, help="Calibration text (AWQ): the training corpus."),
    calib_seqs: int = typer.Option(128, help="Calibration sequences."),
    seq_len: int = typer.Option(128, help="Tokens per calibration sequence."),
    seed: int = typer.Option(0),
    layout: str = typer.Option(
        "packed", help="packed (ours, any bits) or autoawq-gemm (AutoAWQ's int32 layout, 4-bit)."
    ),
    json_out: bool = JSON_OPTION,
) -> None:
    """Quantize a model's linear layers (AWQ or RTN, group-wise INT-b, really packed)."""
    import shutil

    from neurofabric.quant.awq import AWQConfig, quantize_model
    from neurofabric.seq.io import load_model, save_quantized
    from neurofabric.seq.tokenizers import load_tokenizer

    cfg = AWQConfig(bits=bits, group_size=group, method=method, seed=seed)
    folder, tok_path = _model_folder(model_dir)
    model = load_model(folder)
    calib = None
    if method == "awq":
        if data is None:
            raise ConfigError("--method awq needs --data (calibration text); or use --method rtn")
        calib = _token_windows(data, load_tokenizer(tok_path), calib_seqs, seq_len, seed)[:, :-1]
        calib = calib.split(16)
    float_bytes = sum(p.numel() * 4 for p in model.parameters())
    t0 = time.perf_counter()
    report = quantize_model(model, calib, cfg)
    seconds = time.perf_counter() - t0
    save_quantized(model, out, quant=cfg.as_dict(), layout=layout)
    if tok_path.is_file():
        shutil.copyfile(tok_path, out / "tokenizer.json")
    size = (out / "model.safetensors").stat().st_size
    summary = {
        "method": method,
        "bits": bits,
        "group": group,
        "layers": len(report.layers),
        "per_layer": report.layers,
        "skipped": report.skipped,
        "bits_per_weight": report.bits_per_weight,
        "file_bytes": size,
        "float32_bytes": float_bytes,
        "seconds": seconds,
        "out": str(out),
    }

    def table(sm):
        t = Table(title=f"{method.upper()} w{bits} g{group} -> {out}")
        for col in ("layers", "bits per weight", "file (MB)", "float32 (MB)", "seconds"):
            t.add_column(col, justify="right")
        t.add_row(
            str(sm["layers"]),
            f"{sm['bits_per_weight']:.3f}",
            f"{size / 1e6:.2f}",
            f"{float_bytes / 1e6:.2f}",
            f"{seconds:.1f}",
        )
        return t

    emit(summary, json_out, table)


@seq_app.command("eval")
@handles_errors
def seq_eval(
    model_dir: Path = typer.Argument(..., help="A run folder, a model folder or a quantized one."),
    data: Path = typer.Option(..., help="Text to score."),
    n_seqs: int = typer.Option(64, help="Sequences to score."),
    seq_len: int = typer.Option(128, help="Tokens per sequence."),
    seed: int = typer.Option(0),
    json_out: bool = JSON_OPTION,
) -> None:
    """Mean cross-entropy (nats per token) of a model on random windows of a text."""
    from neurofabric.seq.io import load_model
    from neurofabric.seq.tokenizers import load_tokenizer
    from neurofabric.seq.train import token_loss

    folder, tok_path = _model_folder(model_dir)
    model = load_model(folder)
    windows = _token_windows(data, load_tokenizer(tok_path), n_seqs, seq_len, seed)
    model.eval()
    losses = [token_loss(model, c[:, :-1], c[:, 1:]) * len(c) for c in windows.split(16)]
    loss = sum(losses) / len(windows)
    summary = {"loss": loss, "sequences": len(windows), "seq_len": seq_len, "model": str(folder)}
    emit(summary, json_out, _eval_table)


def _eval_table(sm):
    t = Table(title=f"{sm['model']}")
    t.add_column("loss (nats/token)", justify="right")
    t.add_column("sequences", justify="right")
    t.add_row(f"{sm['loss']:.4f}", str(sm["sequences"]))
    return t


@seq_app.command("info")
@handles_errors
def seq_info(checkpoint: Path = typer.Argument(..., help="A model folder.")) -> None:
    """Architecture, config and parameter count of a saved model."""
    from neurofabric.seq.io import read_meta

    meta = read_meta(checkpoint)
    emit({k: meta[k] for k in ("arch", "config")}, True, None)


@seq_app.command("memory")
@handles_errors
def seq_memory(
    checkpoint: Path | None = typer.Option(None, help="A model folder (its config is used)."),
    arch: str = typer.Option("rwkv", help="rwkv, rwkv7, mamba or mamba2 (without --checkpoint)."),
    layers: int = typer.Option(4, help="Layers (without --checkpoint)."),
    dim: int = typer.Option(384, help="Model width (without --checkpoint)."),
    vocab: int = typer.Option(256, help="Vocabulary size (without --checkpoint)."),
    batch_size: int = typer.Option(16, help="Sequences per training step."),
    seq_len: int = typer.Option(128, help="Tokens per sequence."),
    measure: bool = typer.Option(False, help="Also run one training step and measure."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Memory of a model: parameters, AdamW state, state per sequence, training activations."""
    from neurofabric.seq.io import build_model, read_meta
    from neurofabric.seq.mamba import MambaConfig
    from neurofabric.seq.mamba2 import Mamba2Config
    from neurofabric.seq.memory import estimate_memory, measure_memory
    from neurofabric.seq.rwkv import RWKVConfig
    from neurofabric.seq.rwkv7 import RWKV7Config

    configs = {
        "rwkv4": RWKVConfig,
        "rwkv7": RWKV7Config,
        "mamba": MambaConfig,
        "mamba2": Mamba2Config,
    }
    if checkpoint is not None:
        meta = read_meta(checkpoint)
        name, config = meta["arch"], meta["config"]
    elif arch in ("rwkv", "rwkv7"):
        name = "rwkv4" if arch == "rwkv" else arch
        config = {"vocab_size": vocab, "n_layer": layers, "n_embd": dim}
    elif arch in ("mamba", "mamba2"):
        name, config = arch, {"vocab_size": vocab, "n_layer": layers, "d_model": dim}
    else:
        raise ConfigError(f"--arch must be rwkv, rwkv7, mamba or mamba2, got {arch!r}")
    if name not in configs:
        raise ConfigError(
            f"{checkpoint} is a {name} model; `seq memory` covers rwkv4, rwkv7, mamba and mamba2 "
            f"(a transformer's decoding state is its KV cache, which grows with the context)"
        )
    try:
        cfg = configs[name](**config)
    except TypeError as exc:
        raise ConfigError(f"the config of {checkpoint} does not fit {name}: {exc}") from exc
    est = meas = None
    try:
        est = estimate_memory(cfg, batch_size=batch_size, seq_len=seq_len)
    except ConfigError:
        if not measure:  # e.g. RWKV-7's chunked WKV: no count, but it can be measured
            raise
    if measure:
        meas = measure_memory(build_model(name, config), batch_size=batch_size, seq_len=seq_len)
    rows = (
        ("parameters", "parameters"),
        ("gradients", "gradients"),
        ("optimizer", "AdamW state"),
        ("activations", "training activations"),
        ("training", "training total"),
        ("state_per_sequence", "state per sequence"),
    )
    columns = [(kind, res) for kind, res in (("estimate", est), ("measured", meas)) if res]
    if json_out:
        summary = {"arch": name, "batch_size": batch_size, "seq_len": seq_len}
        for kind, res in columns:
            summary[f"{kind}_bytes"] = {key: getattr(res, key) for key, _ in rows}
        emit(summary, True, None)
        return
    t = Table(title=f"{name}, batch {batch_size} x {seq_len} tokens, float32")
    t.add_column("memory")
    for kind, _ in columns:
        t.add_column(f"{kind} (MiB)", justify="right")
    for key, label in rows:
        t.add_row(label, *(f"{getattr(res, key) / 2**20:,.3f}" for _, res in columns))
    console.print(t)
