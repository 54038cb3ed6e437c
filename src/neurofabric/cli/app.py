"""``neurofabric``: run the engines from a shell.

neurofabric demo
neurofabric snn run cuba --neurons 4000 --duration 1.0 --plot raster.png
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np
import typer
from rich.logging import RichHandler
from rich.table import Table

from neurofabric import __version__
from neurofabric.cli.field import field_app
from neurofabric.cli.guard import (
    guard_app,
    rhythm_table,
    router_table,
    run_rhythm,
    run_router,
    train_text,
)
from neurofabric.cli.guard import summary_table as guard_summary_table
from neurofabric.cli.render import console, err_console, print_report, progress_bar
from neurofabric.cli.seq import seq_app, train_seq
from neurofabric.cli.thermo import summary_table as thermo_summary_table
from neurofabric.cli.thermo import thermo_app, train_thermo
from neurofabric.core.errors import ConfigError, NeurofabricError

app = typer.Typer(
    help="neurofabric: sparse, brain-inspired computing, measured.",
    no_args_is_help=True,
    add_completion=False,
)
snn_app = typer.Typer(help="The spiking-network simulator.", no_args_is_help=True)
app.add_typer(snn_app, name="snn")
app.add_typer(thermo_app, name="thermo")
app.add_typer(guard_app, name="guard")
app.add_typer(field_app, name="field")
app.add_typer(seq_app, name="seq")


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log what happens."),
    version: bool = typer.Option(False, "--version", help="Print the version."),
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=err_console, show_path=False)],
    )
    if version:
        console.print(f"neurofabric {__version__}")
        raise typer.Exit()


def _progress(total: int, label: str):
    progress = progress_bar(label)
    task = progress.add_task(label, total=total, info="")

    def callback(p) -> None:
        progress.update(task, completed=p.done, info=f"{p['spikes']} spikes")

    return progress, callback


def run_snn(
    model: str,
    *,
    neurons: int,
    duration: float,
    synapses_per_neuron: float,
    storage: str,
    propagation: str,
    backend: str,
    dtype: str,
    seed: int,
    plot: Path | None,
    voltage_plot: Path | None,
    export: Path | None,
    save: Path | None,
    show_progress: bool = True,
) -> dict:
    """Build, run and report one example network; returns the summary dict."""
    from neurofabric.snn import SpikeMonitor, StateMonitor
    from neurofabric.snn.models import build_model

    kwargs = {
        "n_neurons": neurons,
        "storage": storage,
        "propagation": propagation,
        "backend": backend,
        "seed": seed,
    }
    if model in ("cuba", "coba"):
        kwargs.update(synapses_per_neuron=synapses_per_neuron, dtype=dtype)
    t0 = time.perf_counter()
    net = build_model(model, **kwargs)
    with console.status(f"building {model}: {neurons} neurons ({storage})"):
        net.build()
    build_s = time.perf_counter() - t0
    monitors = []
    if plot or export:
        monitors.append(SpikeMonitor())
    if voltage_plot:
        monitors.append(StateMonitor(neurons=[0, 1, 2], every=1))
    steps = int(round(duration / net.dt))
    if show_progress:
        progress, callback = _progress(steps, f"{model}")
        with progress:
            result = net.run(duration, monitors=monitors, callback=callback)
    else:
        result = net.run(duration, monitors=monitors)
    summary = result.summary() | {
        "model": model,
        "storage": storage,
        "build_s": build_s,
        "synapse_bytes": net.synapse_memory_bytes(),
    }
    if plot:
        from neurofabric.snn.plots import plot_raster

        plot_raster(
            result, plot, title=f"{model}: {result.n_neurons} neurons, {result.mean_rate_hz:.2f} Hz"
        )
        summary["plot"] = str(plot)
    if voltage_plot:
        from neurofabric.snn.plots import plot_voltage

        plot_voltage(result, voltage_plot, v_th=float(net.neuron.arrays(1)["v_th"][0]))
    if export:
        result.export_spikes(export)
    if save:
        net.save(save)
    return summary


def _summary_table(summary: dict) -> Table:
    table = Table(
        title=f"{summary['model']} ({summary['backend']} backend, {summary['storage']})",
        show_header=False,
    )
    rows = [
        ("neurons", f"{summary['neurons']:,}"),
        ("synapses", f"{summary['synapses']:,}"),
        (
            "synapse memory",
            f"{summary['synapse_bytes'] / 2**20:.1f} MiB "
            f"({summary['synapse_bytes'] / max(summary['synapses'], 1):.2f} B/synapse)",
        ),
        ("biological time", f"{summary['duration_s']:g} s"),
        ("spikes", f"{summary['spikes']:,}"),
        ("mean rate", f"{summary['mean_rate_hz']:.2f} Hz"),
        ("build time", f"{summary['build_s']:.2f} s"),
        ("wall time", f"{summary['wall_s']:.3f} s"),
        (
            "speed",
            f"{summary['wall_s_per_bio_s']:.4f} s per biological second "
            f"({1 / max(summary['wall_s_per_bio_s'], 1e-12):.1f}x real time)",
        ),
        ("steps event / dense", f"{summary['event_steps']} / {summary['dense_steps']}"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


@snn_app.command("run")
def snn_run(
    model: str = typer.Argument(..., help="cuba, coba or brunel"),
    neurons: int = typer.Option(4000, help="Number of neurons."),
    duration: float = typer.Option(1.0, help="Biological time in seconds."),
    synapses_per_neuron: float = typer.Option(80.0, help="Mean out-degree (cuba/coba)."),
    storage: str = typer.Option("csr", help="csr or procedural."),
    propagation: str = typer.Option("auto", help="auto, event or dense."),
    backend: str = typer.Option("auto", help="auto, numba or reference."),
    dtype: str = typer.Option("float64", help="float64 or float32 (cuba/coba)."),
    seed: int = typer.Option(0, help="Seed of connectivity, initial state and inputs."),
    plot: Path | None = typer.Option(None, help="Write a raster + rate PNG here."),
    voltage_plot: Path | None = typer.Option(None, help="Write voltage traces PNG here."),
    export: Path | None = typer.Option(None, help="Write spikes to .parquet or .arrow."),
    save: Path | None = typer.Option(None, help="Save the network checkpoint here."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON line instead."),
) -> None:
    """Run an example network and print neurons, synapses, spikes, rate and wall time."""
    try:
        summary = run_snn(
            model,
            neurons=neurons,
            duration=duration,
            synapses_per_neuron=synapses_per_neuron,
            storage=storage,
            propagation=propagation,
            backend=backend,
            dtype=dtype,
            seed=seed,
            plot=plot,
            voltage_plot=voltage_plot,
            export=export,
            save=save,
            show_progress=not json_out,
        )
    except NeurofabricError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    if json_out:
        console.print_json(json.dumps(summary))
    else:
        console.print(_summary_table(summary))
        if plot:
            console.print(f"raster and rate plot: {plot}")


@snn_app.command("compile")
def snn_compile() -> None:
    """Compile the simulator's kernels into numba's on-disk cache (done once by `make`)."""
    from neurofabric.snn.models import brunel, coba, cuba

    t0 = time.perf_counter()
    with console.status("compiling kernels (once per installation)"):
        for build in (cuba, coba):
            for storage in ("csr", "procedural"):
                build(200, synapses_per_neuron=20, storage=storage, seed=0).run(1e-3)
        brunel(500, seed=0).run(1e-3)
    console.print(f"kernels compiled and cached in {time.perf_counter() - t0:.1f} s")


mnist_app = typer.Typer(
    help="Unsupervised MNIST learning (Diehl & Cook 2015).", no_args_is_help=True
)
snn_app.add_typer(mnist_app, name="mnist")


def _load_digits_set(split: str, dataset: str, data_dir: Path | None, n: int):
    from neurofabric.data import load_mnist

    x, y = load_mnist(split, dataset=dataset, data_dir=data_dir)
    return x[:n], y[:n]


@mnist_app.command("train")
def mnist_train(
    out: Path = typer.Option(..., help="Folder to save the trained model in."),
    data_dir: Path | None = typer.Option(None, help="Folder holding mnist/ (or NEUROFABRIC_DATA)."),
    dataset: str = typer.Option("mnist", help="mnist or fashion_mnist."),
    neurons: int = typer.Option(100, help="Excitatory neurons."),
    images: int = typer.Option(60000, help="Training images (one pass)."),
    label_images: int = typer.Option(10000, help="Images used to label the neurons."),
    seed: int = typer.Option(0, help="Seed of the network and the input spikes."),
    weight_bits: int | None = typer.Option(
        None, help="Quantization-aware learning with 2, 4 or 8-bit weights."
    ),
    rule: str = typer.Option(
        "code", help="code: the rule of the authors' published code; paper: the x_tar rule."
    ),
    a2_plus: float = typer.Option(
        0.0, help="With --rule code: pair potentiation on every postsynaptic spike."
    ),
    checkpoint: Path | None = typer.Option(
        None, help="Folder for training checkpoints (default: OUT.checkpoint)."
    ),
    checkpoint_every: int = typer.Option(1000, help="Images between checkpoints."),
    resume: bool = typer.Option(
        False, help="Continue from the checkpoint (an error if there is none)."
    ),
) -> None:
    """Train a Diehl & Cook network without labels, label its neurons, save it.

    A checkpoint is written every --checkpoint-every images; after an interruption the same
    command with --resume continues where it stopped and ends with the same model."""
    from neurofabric.snn.diehl_cook import DiehlCookClassifier

    ck = checkpoint if checkpoint is not None else out.with_name(out.name + ".checkpoint")
    try:
        x, y = _load_digits_set("train", dataset, data_dir, images)
        if rule not in ("code", "paper"):
            raise ConfigError(f"`--rule` must be 'code' or 'paper', got {rule!r}")
        the_rule = DiehlCookClassifier.code_rule(a2_plus) if rule == "code" else "paper"
        clf = DiehlCookClassifier(
            n_neurons=neurons, seed=seed, weight_bits=weight_bits, rule=the_rule
        )
        progress = progress_bar("training", "{task.completed}/{task.total} images")
        task = progress.add_task("training", total=len(x), info="")
        first: list[int | None] = [None]

        def on_image(p) -> None:
            first[0] = p.done if first[0] is None else first[0]
            acc = "" if p["accuracy"] is None else f", ~{p['accuracy']:.1%} acc"
            progress.update(task, completed=p.done, info=f"{p['images_per_s']:.1f} img/s{acc}")

        with progress:
            clf.fit(
                x,
                y,
                label_images=0,
                checkpoint=ck,
                checkpoint_every=checkpoint_every,
                resume=resume,
                callback=on_image,
            )
        if first[0] is not None and first[0] > 1:
            console.print(f"resumed from the checkpoint after image {first[0] - 1}")
        with console.status(f"labelling the neurons from {min(label_images, len(x))} images"):
            clf.relabel(x[:label_images], y[:label_images])
        clf.save(out)
        shutil.rmtree(ck, ignore_errors=True)
    except NeurofabricError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    console.print(f"trained {neurons} neurons on {len(x)} images; model saved to {out}")


@mnist_app.command("eval")
def mnist_eval(
    model: Path = typer.Argument(..., help="Folder written by `snn mnist train`."),
    data_dir: Path | None = typer.Option(None, help="Folder holding mnist/ (or NEUROFABRIC_DATA)."),
    dataset: str = typer.Option("mnist", help="mnist or fashion_mnist."),
    images: int = typer.Option(10000, help="Test images to evaluate."),
    plots: Path | None = typer.Option(None, help="Folder for confusion and receptive-field PNGs."),
    quantize: int | None = typer.Option(
        None, help="Round the learned weights to 8, 4 or 2 bits per neuron first (relabels)."
    ),
    stp: str | None = typer.Option(
        None,
        help="Post-training short-term plasticity 'U,tau_rec,tau_facil,k' (seconds; efficacy "
        "w + k w r(t); relabels).",
    ),
    label_images: int = typer.Option(
        10000, help="Training images to relabel the neurons with after --quantize/--stp."
    ),
) -> None:
    """Accuracy, macro-F1, per-class precision/recall and the confusion matrix; optionally
    after rounding the weights (--quantize) or with post-training STP (--stp)."""
    from neurofabric.snn.diehl_cook import DiehlCookClassifier
    from neurofabric.snn.stp import ShortTermPlasticity

    try:
        clf = DiehlCookClassifier.load(model)
        x, y = _load_digits_set("test", dataset, data_dir, images)
        variant = []
        if quantize is not None:
            q = clf.quantize_input_weights(quantize)
            variant.append(f"INT{quantize} weights ({q.nbytes} bytes, {q.compression_ratio:.1f}x)")
        if stp is not None:
            try:
                u, rec, fac, k = (float(v) for v in stp.split(","))
            except ValueError as exc:
                raise ConfigError(
                    f"`--stp` must be four numbers 'U,tau_rec,tau_facil,k', got {stp!r}"
                ) from exc
            clf.set_stp(ShortTermPlasticity(U=u, tau_rec=rec, tau_facil=fac, mode="modulate", k=k))
            variant.append(f"STP U={u} tau_rec={rec} tau_facil={fac} k={k}")
        if variant:
            xl, yl = _load_digits_set("train", dataset, data_dir, label_images)
            with console.status(f"relabelling the neurons from {len(xl)} training images"):
                clf.relabel(xl, yl)
            console.print("evaluating with " + ", ".join(variant))
        with console.status(f"evaluating {len(x)} images"):
            rep = clf.report(x, y)
    except NeurofabricError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    print_report(console, rep, f"{dataset} test, {len(x)} images")
    if plots:
        from neurofabric.snn.plots import plot_confusion, plot_receptive_fields

        plot_confusion(rep["confusion"], plots / "confusion.png", title=f"{dataset}")
        plot_receptive_fields(
            clf.input_weights_,
            plots / "receptive_fields.png",
            image_shape=(28, 28),
            labels=clf.assignments_,
        )
        console.print(f"figures: {plots / 'confusion.png'}, {plots / 'receptive_fields.png'}")


@app.command()
def demo(
    out: Path = typer.Option(Path("demo-output"), help="Folder for the figures."),
    duration: float = typer.Option(1.0, help="Biological seconds to simulate."),
) -> None:
    """A one-minute tour of what works today."""
    console.rule("[bold]neurofabric demo")
    console.print(
        "[bold]1. Spiking simulator[/bold]: the Vogels & Abbott CUBA network "
        "(4000 LIF neurons, 80 synapses each), as in Brian2's example."
    )
    try:
        summary = run_snn(
            "cuba",
            neurons=4000,
            duration=duration,
            synapses_per_neuron=80,
            storage="csr",
            propagation="auto",
            backend="auto",
            dtype="float64",
            seed=0,
            plot=out / "cuba_raster.png",
            voltage_plot=out / "cuba_voltage.png",
            export=None,
            save=None,
        )
    except NeurofabricError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    console.print(_summary_table(summary))
    console.print(f"figures: {out / 'cuba_raster.png'}, {out / 'cuba_voltage.png'}")
    console.print(
        "The same network with procedural connectivity (synapses regenerated from "
        "the seed on every spike, O(neurons) memory):"
    )
    proc = run_snn(
        "cuba",
        neurons=4000,
        duration=duration,
        synapses_per_neuron=80,
        storage="procedural",
        propagation="event",
        backend="auto",
        dtype="float64",
        seed=0,
        plot=None,
        voltage_plot=None,
        export=None,
        save=None,
    )
    console.print(
        f"  {proc['spikes']:,} spikes (identical synapses, identical spikes: "
        f"{proc['spikes'] == summary['spikes']}), "
        f"{proc['synapse_bytes']:,} bytes of synapse memory instead of "
        f"{summary['synapse_bytes']:,}, {proc['wall_s_per_bio_s']:.3f} s per "
        "biological second"
    )
    console.print(
        "\n[bold]2. Thermodynamic trainer[/bold]: a 64-16-10 network learns scikit-learn's "
        "digits by Metropolis-Hastings annealing alone (no gradients), paying 2 nats per "
        "connection, so it prunes as it learns."
    )
    try:
        thermo = train_thermo(
            dataset="digits", data_dir=None, out=out / "thermo_digits", hidden=[16],
            proposals=150_000, generation=20_000, lambda_l0=2.0, lambda_l1=0.5, w_prune=0.05,
            schedule="geometric", t_start=1.0, t_end=0.005, batch_size=None, replicas=1,
            max_time=None, init=None, seed=0, plot=out / "thermo_history.png",
        )  # fmt: skip
    except NeurofabricError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    console.print(thermo_summary_table(thermo))
    console.print(
        f"figure: {out / 'thermo_history.png'}; model (Arrow columns): {out / 'thermo_digits'}"
    )
    _demo_guard(out)
    _demo_field(out)
    _demo_seq(out)
    console.rule()
    console.print("Benchmarks against Brian2, NEST, BindsNET and backprop: docs/benchmarks.md.")


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
    try:
        s = train_text(train=train, test=test, out=out / "guard_text", rule="pa1", epochs=5,
                       n_features=1 << 12, word_ngrams=1, char_ngrams=None, n_jobs=1,
                       weights="float32", seed=0, plot=out / "guard_confusion.png")  # fmt: skip
        console.print(guard_summary_table(s))
        console.print(rhythm_table(run_rhythm([0, 1], [0, 1, 2, 2], 30, 4, 0, out / "rhythm.png")))
        console.print(router_table(run_router(600, 400, 0)))
    except NeurofabricError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    console.print(f"figures: {out / 'guard_confusion.png'}, {out / 'rhythm.png'}")


def _demo_field(out: Path) -> None:
    from neurofabric.field import DemandPagedField, HashGridSpec, TierConfig

    console.print(
        "\n[bold]4. Demand-paged neural field[/bold]: a hash-encoded field in a 1 PiB sparse page "
        "space learns a 2-D function; only the pages it touches reach the disk."
    )
    path = out / "field"
    if path.exists():
        shutil.rmtree(path)
    spec = HashGridSpec(n_dims=2, n_levels=12, n_features=2, log2_table=16, base_resolution=8,
                        per_level_scale=1.5)  # fmt: skip
    rng = np.random.default_rng(0)

    def target(x):
        return np.sin(3 * np.pi * x[:, :1]) * np.sin(3 * np.pi * x[:, 1:2])

    try:
        t0 = time.perf_counter()
        f = DemandPagedField.create(path, spec=spec, hidden=(32,), logical_bytes=2**50,
                                    tiers=TierConfig(dram_pages=512))  # fmt: skip
        created = time.perf_counter() - t0
        for _ in range(300):
            x = rng.random((256, 2)).astype(np.float32)
            f.learn(x, target(x), lr=0.05)
        test = rng.random((2000, 2)).astype(np.float32)
        mse = float(np.mean((f.query(test) - target(test)) ** 2))
        f.reset_stats()
        for x in test[:500]:
            f.query(x[None])
        lat = f.latency_summary()
        f.flush()
        disk = f.store.disk_bytes()
        f.close()
    except NeurofabricError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    t = Table(title="demand-paged field")
    t.add_column("figure")
    t.add_column("value", justify="right")
    t.add_row("logical size", f"{2**50:,} bytes (1 PiB), created in {created * 1e3:.0f} ms")
    t.add_row("on disk after learning", f"{disk:,} bytes")
    t.add_row("held-out MSE (variance of the target: 0.25)", f"{mse:.4f}")
    t.add_row("query p50 / p99 (one point)", f"{lat['p50_us']:.0f} / {lat['p99_us']:.0f} us")
    console.print(t)


def _demo_seq(out: Path) -> None:
    from neurofabric.seq.generate import generate

    console.print(
        "\n[bold]5. Sequence models[/bold]: a tiny RWKV-4 trains for a few seconds on a generated "
        "corpus, then writes with its recurrent state (constant memory per token)."
    )
    rng = np.random.default_rng(0)
    corpus = " ".join(f"the {rng.choice(['cat', 'dog'])} {rng.choice(['sat', 'ran'])} on a "
                      f"{rng.choice(['mat', 'log'])} ." for _ in range(400))  # fmt: skip
    shutil.rmtree(out / "seq_rwkv", ignore_errors=True)  # the demo trains afresh each time
    try:
        res = train_seq(arch="rwkv", text=corpus, out=out / "seq_rwkv", layers=2, dim=48, steps=150,
                        batch_size=16, seq_len=48, lr=5e-3, eval_every=50, max_time=30.0, seed=0)  # fmt: skip
        text = "".join(generate(res["model"], res["tokenizer"], "the ", max_new_tokens=60,
                                temperature=0.5, seed=0))  # fmt: skip
    except NeurofabricError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    console.print(f"  {res['params']:,} parameters, {res['step']} steps, validation loss "
                  f"{res['val_loss']:.3f} nats/char (uniform: {np.log(res['tokenizer'].vocab_size):.2f})")  # fmt: skip
    console.print(f"  sample: [italic]the {text}[/italic]", highlight=False)
    console.print(f"  figure: {out / 'seq_rwkv' / 'loss.png'}")


def main() -> None:
    app()
