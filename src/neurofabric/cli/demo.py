"""``neurofabric demo``: a one-minute tour of the five engines, with figures."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import typer
from rich.table import Table

from neurofabric.cli.common import handles_errors
from neurofabric.cli.guard import (
    compress_table,
    compress_text,
    rhythm_table,
    router_table,
    run_rhythm,
    run_router,
    train_text,
)
from neurofabric.cli.guard import summary_table as guard_summary_table
from neurofabric.cli.render import console
from neurofabric.cli.seq import train_seq
from neurofabric.cli.snn import run_snn
from neurofabric.cli.snn import summary_table as snn_summary_table
from neurofabric.cli.thermo import summary_table as thermo_summary_table
from neurofabric.cli.thermo import train_thermo


@handles_errors
def demo(
    out: Path = typer.Option(Path("demo-output"), help="Folder for the figures."),
    duration: float = typer.Option(1.0, help="Biological seconds to simulate."),
) -> None:
    """A one-minute tour of what works today."""
    console.rule("[bold]neurofabric demo")
    _demo_snn(out, duration)
    _demo_thermo(out)
    _demo_guard(out)
    _demo_field(out)
    _demo_seq(out)
    console.rule()
    console.print("Benchmarks against Brian2, NEST, BindsNET and backprop: docs/benchmarks.md.")


def _demo_snn(out: Path, duration: float) -> None:
    console.print(
        "[bold]1. Spiking simulator[/bold]: the Vogels & Abbott CUBA network "
        "(4000 LIF neurons, 80 synapses each), as in Brian2's example."
    )
    raster, voltage = out / "cuba_raster.png", out / "cuba_voltage.png"
    summary = run_snn("cuba", neurons=4000, duration=duration, plot=raster, voltage_plot=voltage)
    console.print(snn_summary_table(summary))
    console.print(f"figures: {raster}, {voltage}")
    console.print(
        "The same network with procedural connectivity (synapses regenerated from "
        "the seed on every spike, O(neurons) memory):"
    )
    proc = run_snn(
        "cuba", neurons=4000, duration=duration, storage="procedural", propagation="event"
    )
    console.print(
        f"  {proc['spikes']:,} spikes (identical synapses, identical spikes: "
        f"{proc['spikes'] == summary['spikes']}), "
        f"{proc['synapse_bytes']:,} bytes of synapse memory instead of "
        f"{summary['synapse_bytes']:,}, {proc['wall_s_per_bio_s']:.3f} s per "
        "biological second"
    )


def _demo_thermo(out: Path) -> None:
    console.print(
        "\n[bold]2. Thermodynamic trainer[/bold]: a 64-16-10 network learns scikit-learn's "
        "digits by Metropolis-Hastings annealing alone (no gradients), paying 2 nats per "
        "connection, so it prunes as it learns."
    )
    thermo = train_thermo(
        dataset="digits",
        data_dir=None,
        out=out / "thermo_digits",
        hidden=[16],
        proposals=150_000,
        generation=20_000,
        lambda_l0=2.0,
        lambda_l1=0.5,
        w_prune=0.05,
        schedule="geometric",
        t_start=1.0,
        t_end=0.005,
        batch_size=None,
        replicas=1,
        max_time=None,
        init=None,
        seed=0,
        plot=out / "thermo_history.png",
    )
    console.print(thermo_summary_table(thermo))
    console.print(
        f"figure: {out / 'thermo_history.png'}; model (Arrow columns): {out / 'thermo_digits'}"
    )


def _demo_guard(out: Path) -> None:
    from neurofabric.data.text import TextDataset

    console.print(
        "\n[bold]3. Event-driven classifier[/bold]: a field of 16-byte neuron records learns "
        "by local feedback along the pathway that fired."
    )
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(60)]
    docs, labels = [], []
    for k in range(1200):  # a small corpus: 3 topics of 20 words each, with shared noise
        c = k % 3
        topic = words[20 * c : 20 * c + 20]
        docs.append(" ".join(rng.choice(topic if rng.random() < 0.6 else words) for _ in range(8)))
        labels.append(c)
    names = ("sports", "science", "politics")
    data = TextDataset(docs, np.array(labels), names, "generated")
    train, test = data.subset(np.arange(900)), data.subset(np.arange(900, 1200))
    s = train_text(
        train=train,
        test=test,
        out=out / "guard_text",
        rule="pa1",
        epochs=5,
        n_features=1 << 12,
        word_ngrams=1,
        char_ngrams=None,
        n_jobs=1,
        weights="float32",
        seed=0,
        plot=out / "guard_confusion.png",
    )
    console.print(guard_summary_table(s))
    small = compress_text(
        out / "guard_text",
        out / "guard_text_small",
        train=train,
        test=test,
        max_features=30,
        bits=4,
    )
    console.print(compress_table(small))
    console.print(rhythm_table(run_rhythm([0, 1], [0, 1, 2, 2], 30, 4, 0, out / "rhythm.png")))
    console.print(router_table(run_router(600, 400, 0)))
    console.print(f"figures: {out / 'guard_confusion.png'}, {out / 'rhythm.png'}")


def _demo_field(out: Path, seconds: float = 8.0) -> None:
    from neurofabric.core.figures import pyplot, save_figure
    from neurofabric.field import DemandPagedField, HashGridSpec, TierConfig
    from neurofabric.field.signals import image_signal, psnr, sample_image

    console.print(
        "\n[bold]4. Demand-paged neural field[/bold]: a hash-encoded field in a 1 PiB sparse page "
        f"space learns scikit-learn's china.jpg (grey, 427 x 640) with Adam for {seconds:g} s; "
        "only the pages it touches reach the disk."
    )
    path = out / "field"
    if path.exists():
        shutil.rmtree(path)
    coords, target, shape = image_signal(sample_image("china.jpg"))
    spec = HashGridSpec(
        n_dims=2, n_levels=16, n_features=2, log2_table=18, base_resolution=16, per_level_scale=1.4
    )
    t0 = time.perf_counter()
    tiers = TierConfig(dram_pages=3 * spec.n_rows * 8 // 4096 + 1024)  # table + Adam moments
    f = DemandPagedField.create(path, spec=spec, hidden=(64,), logical_bytes=2**50, tiers=tiers)
    created = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        i = rng.integers(0, len(coords), 4096)
        f.learn(coords[i], target[i])
        steps += 1
    learn_s = time.perf_counter() - t0
    recon = np.concatenate([f.query(coords[j : j + 65536]) for j in range(0, len(coords), 65536)])
    quality = psnr(recon, target)
    f.reset_stats()
    for x in coords[rng.integers(0, len(coords), 500)]:
        f.query(x[None])
    lat = f.latency_summary()
    f.flush()
    disk = f.store.disk_bytes()
    f.close()
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, img, title in (
        (axes[0], target, "target"),
        (axes[1], np.clip(recon, 0, 1), f"field after {learn_s:.0f} s: {quality:.1f} dB"),
    ):
        ax.imshow(img.reshape(shape[:2]), cmap="gray", vmin=0, vmax=1)
        ax.set_title(title)
        ax.axis("off")
    fig.tight_layout()
    save_figure(fig, out / "field_image.png")
    t = Table(title="demand-paged field")
    t.add_column("figure")
    t.add_column("value", justify="right")
    t.add_row("logical size", f"{2**50:,} bytes (1 PiB), created in {created * 1e3:.0f} ms")
    t.add_row("learning", f"{steps} Adam steps of 4,096 pixels in {learn_s:.1f} s")
    mean = psnr(np.full_like(target, target.mean()), target)
    t.add_row(f"PSNR over all pixels (the mean grey: {mean:.1f} dB)", f"{quality:.1f} dB")
    t.add_row("on disk after learning (table + moments)", f"{disk:,} bytes")
    t.add_row("query p50 / p99 (one point)", f"{lat['p50_us']:.0f} / {lat['p99_us']:.0f} us")
    console.print(t)
    console.print(f"figure: {out / 'field_image.png'}")


def _demo_seq(out: Path) -> None:
    from neurofabric.seq.generate import generate

    console.print(
        "\n[bold]5. Sequence models[/bold]: a tiny RWKV-4 trains for a few seconds on a generated "
        "corpus, then writes with its recurrent state (constant memory per token)."
    )
    rng = np.random.default_rng(0)
    corpus = " ".join(
        f"the {rng.choice(['cat', 'dog'])} {rng.choice(['sat', 'ran'])} on a "
        f"{rng.choice(['mat', 'log'])} ."
        for _ in range(400)
    )
    shutil.rmtree(out / "seq_rwkv", ignore_errors=True)  # the demo trains afresh each time
    res = train_seq(
        arch="rwkv",
        text=corpus,
        out=out / "seq_rwkv",
        layers=2,
        dim=48,
        steps=150,
        batch_size=16,
        seq_len=48,
        lr=5e-3,
        eval_every=50,
        max_time=30.0,
        seed=0,
    )
    pieces = generate(
        res["model"], res["tokenizer"], "the ", max_new_tokens=60, temperature=0.5, seed=0
    )
    text = "".join(pieces)
    uniform = np.log(res["tokenizer"].vocab_size)
    console.print(
        f"  {res['params']:,} parameters, {res['step']} steps, validation loss "
        f"{res['val_loss']:.3f} nats/char (uniform: {uniform:.2f})"
    )
    console.print(f"  sample: [italic]the {text}[/italic]", highlight=False)
    console.print(f"  figure: {out / 'seq_rwkv' / 'loss.png'}")
    for arch, name in (("rwkv7", "RWKV-7 (generalized delta rule)"), ("mamba2", "Mamba-2 (SSD)")):
        shutil.rmtree(out / f"seq_{arch}", ignore_errors=True)
        other = train_seq(
            arch=arch,
            text=corpus,
            out=out / f"seq_{arch}",
            layers=2,
            dim=48,
            steps=150,
            batch_size=16,
            seq_len=48,
            lr=5e-3,
            eval_every=50,
            max_time=30.0,
            seed=0,
            show_progress=False,
        )
        console.print(
            f"  {name}, trained the same way: {other['params']:,} parameters, "
            f"{other['step']} steps, validation loss {other['val_loss']:.3f} nats/char"
        )
    _demo_quantized(out, res, corpus)


def _demo_quantized(out: Path, res: dict, corpus: str) -> None:
    """The trained model quantized to 4 bits with AWQ: file size and loss beside float32."""
    import copy

    import torch

    from neurofabric.quant.awq import AWQConfig, quantize_model
    from neurofabric.seq.io import save_model, save_quantized
    from neurofabric.seq.train import TextData, token_loss

    data = TextData.from_text(corpus, res["tokenizer"])

    def loss(model) -> float:
        return token_loss(model, *data.batch("val", 32, 48, np.random.default_rng(1)))

    rng = np.random.default_rng(2)
    calib = torch.stack([data.batch("train", 16, 48, rng)[0] for _ in range(4)]).flatten(0, 1)
    q = copy.deepcopy(res["model"])
    report = quantize_model(q, calib, AWQConfig(bits=4, group_size=16))
    fdir, qdir = out / "seq_rwkv_fp32", out / "seq_rwkv_int4"
    save_model(res["model"], fdir)
    save_quantized(q, qdir, quant=report.config)
    fsize = (fdir / "model.safetensors").stat().st_size
    qsize = (qdir / "model.safetensors").stat().st_size
    console.print(
        f"  AWQ 4-bit (group 16, {report.bits_per_weight:.2f} bits per linear weight): "
        f"file {qsize / 1e3:.0f} kB against {fsize / 1e3:.0f} kB in float32 (embeddings and "
        f"norms stay float); validation loss {loss(q):.3f} against {loss(res['model']):.3f}"
    )
