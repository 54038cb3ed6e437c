"""``neurofabric snn``: run example networks and the Diehl & Cook MNIST pipeline."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import typer
from rich.table import Table

from neurofabric.cli.common import BACKEND_OPTION, JSON_OPTION, ProgressView, emit, handles_errors
from neurofabric.cli.render import console, print_report
from neurofabric.core.errors import ConfigError

snn_app = typer.Typer(help="The spiking-network simulator.", no_args_is_help=True)
mnist_app = typer.Typer(
    help="Unsupervised MNIST learning (Diehl & Cook 2015).", no_args_is_help=True
)
snn_app.add_typer(mnist_app, name="mnist")


def run_snn(
    model: str,
    *,
    neurons: int,
    duration: float,
    synapses_per_neuron: float = 80.0,
    storage: str = "csr",
    propagation: str = "auto",
    backend: str = "auto",
    device: str = "cpu",
    dtype: str = "float64",
    seed: int = 0,
    plot: Path | None = None,
    voltage_plot: Path | None = None,
    export: Path | None = None,
    save: Path | None = None,
    show_progress: bool = True,
    mpi: bool | None = None,
) -> dict:
    """Build, run and report one example network; returns the summary dict. ``mpi``: split
    the network over the MPI ranks (:mod:`neurofabric.snn.distributed`); None: when started
    by ``mpiexec`` with more than one rank. Then every rank returns the summary, with its
    ``rank``; plots and exports are written by rank 0."""
    from neurofabric.snn.distributed import launched_by_mpiexec

    distributed = launched_by_mpiexec() if mpi is None else mpi
    if distributed and voltage_plot:
        raise ConfigError("--voltage-plot does not work across MPI ranks yet; run in one process")
    from neurofabric.snn import SpikeMonitor, StateMonitor
    from neurofabric.snn.models import build_model

    kwargs = {
        "n_neurons": neurons,
        "storage": storage,
        "propagation": propagation,
        "backend": backend,
        "device": device,
        "seed": seed,
    }
    if model in ("cuba", "coba"):
        kwargs.update(synapses_per_neuron=synapses_per_neuron, dtype=dtype)
    t0 = time.perf_counter()
    net = build_model(model, **kwargs)
    if not distributed:
        net.compile_ahead()  # before the spinner's thread starts (see its docstring)
    with console.status(f"building {model}: {neurons} neurons ({storage})"):
        net.build()
    build_s = time.perf_counter() - t0
    monitors = []
    if plot or export:
        monitors.append(SpikeMonitor())
    if voltage_plot:
        monitors.append(StateMonitor(neurons=[0, 1, 2], every=1))
    rank = 0
    extra: dict = {}
    if distributed:
        from neurofabric.snn.distributed import run_distributed

        with console.status(f"running {model} over MPI ranks"):
            d = run_distributed(net, duration)
        result = d.to_run_result(net.n_synapses, net.backend_)
        rank = d.rank
        extra = {
            "rank": rank,
            "ranks": d.ranks,
            "window_steps": d.window_steps,
            "exchanges": d.exchanges,
            "exchange_s": d.exchange_s,
            "bytes_exchanged": d.bytes_exchanged,
        }
    else:
        info = lambda p: f"{p['spikes']} spikes"  # noqa: E731
        with ProgressView(model, show=show_progress, info=info) as view:
            result = net.run(duration, monitors=monitors, callback=view.callback)
    summary = result.summary() | {
        "model": model,
        "storage": storage,
        "build_s": build_s,
        "synapse_bytes": net.synapse_memory_bytes(),
        **extra,
    }
    if distributed and save:  # every rank sends its neurons to rank 0, which writes
        from neurofabric.snn.distributed import save_distributed

        if save_distributed(net, save) is not None:
            summary["saved"] = str(save)
    if rank != 0:
        return summary
    if plot:
        from neurofabric.snn.plots import plot_raster

        title = f"{model}: {result.n_neurons} neurons, {result.mean_rate_hz:.2f} Hz"
        plot_raster(result, plot, title=title)
        summary["plot"] = str(plot)
    if voltage_plot:
        from neurofabric.snn.plots import plot_voltage

        plot_voltage(result, voltage_plot, v_th=float(net.neuron.arrays(1)["v_th"][0]))
        summary["voltage_plot"] = str(voltage_plot)
    if export:
        result.export_spikes(export)
        summary["export"] = str(export)
    if save and not distributed:
        net.save(save)
        summary["saved"] = str(save)
    return summary


def summary_table(summary: dict) -> Table:
    """The figures of one ``run_snn``."""
    table = Table(
        title=f"{summary['model']} ({summary['backend']} backend, {summary['storage']})",
        show_header=False,
    )
    synapse_bytes, synapses = summary["synapse_bytes"], summary["synapses"]
    per_bio_s = summary["wall_s_per_bio_s"]
    rows = [
        ("neurons", f"{summary['neurons']:,}"),
        ("synapses", f"{synapses:,}"),
        (
            "synapse memory",
            f"{synapse_bytes / 2**20:.1f} MiB ({synapse_bytes / max(synapses, 1):.2f} B/synapse)",
        ),
        ("biological time", f"{summary['duration_s']:g} s"),
        ("spikes", f"{summary['spikes']:,}"),
        ("mean rate", f"{summary['mean_rate_hz']:.2f} Hz"),
        ("build time", f"{summary['build_s']:.2f} s"),
        ("wall time", f"{summary['wall_s']:.3f} s"),
        (
            "speed",
            f"{per_bio_s:.4f} s per biological second ({1 / max(per_bio_s, 1e-12):.1f}x real time)",
        ),
        ("steps event / dense", f"{summary['event_steps']} / {summary['dense_steps']}"),
    ]
    if "ranks" in summary:
        rows.append(
            (
                "MPI ranks",
                f"{summary['ranks']}: {summary['exchanges']} exchanges, one per "
                f"{summary['window_steps']}-step window ({summary['exchange_s']:.2f} s in them "
                f"on rank 0)",
            )
        )
    for name, value in rows:
        table.add_row(name, value)
    return table


@snn_app.command("run")
@handles_errors
def snn_run(
    model: str = typer.Argument(..., help="cuba, coba or brunel"),
    neurons: int = typer.Option(4000, help="Number of neurons."),
    duration: float = typer.Option(1.0, help="Biological time in seconds."),
    synapses_per_neuron: float = typer.Option(80.0, help="Mean out-degree (cuba/coba)."),
    storage: str = typer.Option("csr", help="csr or procedural."),
    propagation: str = typer.Option("auto", help="auto, event or dense."),
    backend: str = BACKEND_OPTION,
    device: str = typer.Option("cpu", help="cpu, cuda or cuda:N (with --backend torch)."),
    dtype: str = typer.Option("float64", help="float64 or float32 (cuba/coba)."),
    seed: int = typer.Option(0, help="Seed of connectivity, initial state and inputs."),
    mpi: bool | None = typer.Option(
        None,
        "--mpi/--no-mpi",
        help="Split the network over MPI ranks (default: when run by mpiexec -n K, K > 1).",
    ),
    plot: Path | None = typer.Option(None, help="Write a raster + rate PNG here."),
    voltage_plot: Path | None = typer.Option(None, help="Write voltage traces PNG here."),
    export: Path | None = typer.Option(None, help="Write spikes to .parquet or .arrow."),
    save: Path | None = typer.Option(None, help="Save the network checkpoint here."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Run an example network and print neurons, synapses, spikes, rate and wall time."""
    summary = run_snn(
        model,
        neurons=neurons,
        duration=duration,
        synapses_per_neuron=synapses_per_neuron,
        storage=storage,
        propagation=propagation,
        backend=backend,
        device=device,
        dtype=dtype,
        seed=seed,
        plot=plot,
        voltage_plot=voltage_plot,
        export=export,
        save=save,
        show_progress=not json_out,
        mpi=mpi,
    )
    if summary.get("rank", 0) != 0:  # rank 0 reports for all
        return
    emit(summary, json_out, summary_table)
    if plot and not json_out:
        console.print(f"raster and rate plot: {plot}")


def _microcircuit_table(summary: dict) -> Table:
    table = Table(
        title=(
            f"cortical microcircuit, scale {summary['scale']:g}, k_scale {summary['k_scale']:g}: "
            f"{summary['neurons']:,} neurons, {summary['synapses']:,} synapses"
        )
    )
    for col in ("population", "rate (Hz)", "ISI CV", "synchrony"):
        table.add_column(col, justify="left" if col == "population" else "right")

    def cell(x: float, digits: int) -> str:
        return "-" if x != x else f"{x:.{digits}f}"  # NaN: too few spikes to say

    for name, st in summary["populations"].items():
        table.add_row(name, cell(st["rate_hz"], 3), cell(st["isi_cv"], 2), cell(st["synchrony"], 2))
    table.caption = (
        f"rates over [{summary['presim_s']:g}, {summary['duration_s']:g}) s; build "
        f"{summary['build_s']:.1f} s, run {summary['run_s']:.1f} s"
    )
    return table


@snn_app.command("microcircuit")
@handles_errors
def snn_microcircuit(
    scale: float = typer.Option(0.1, help="Neurons: a fraction of the 77,169 (0 < scale <= 1)."),
    k_scale: float = typer.Option(0.1, help="In-degrees: a fraction of the full ones."),
    background: str = typer.Option("poisson", help="poisson or dc."),
    duration: float = typer.Option(1.5, help="Biological seconds, warm-up included."),
    presim: float = typer.Option(0.5, help="Warm-up seconds left out of the statistics."),
    seed: int = typer.Option(0, help="Seed of connectivity, initial potentials and inputs."),
    backend: str = BACKEND_OPTION,
    plot: Path | None = typer.Option(None, help="Write a raster by population (PNG) here."),
    json_out: bool = JSON_OPTION,
) -> None:
    """The Potjans & Diesmann (2014) cortical microcircuit: per-population rate, ISI CV and
    synchrony (and a raster by layer with --plot)."""
    from neurofabric.snn import SpikeMonitor
    from neurofabric.snn.analysis import population_stats
    from neurofabric.snn.microcircuit import microcircuit, microcircuit_spec

    if not 0 <= presim < duration:
        raise ConfigError(
            f"`presim` must lie in [0, duration = {duration}) s, got {presim}; shorten it"
        )
    t0 = time.perf_counter()
    net = microcircuit(scale, k_scale, background, seed, backend=backend)
    with console.status(f"building the microcircuit at scale {scale:g}"):
        net.build()
    build_s = time.perf_counter() - t0
    with ProgressView(
        "microcircuit", show=not json_out, info=lambda p: f"{p['spikes']} spikes"
    ) as view:
        t0 = time.perf_counter()
        result = net.run(duration, monitors=[SpikeMonitor()], callback=view.callback)
        run_s = time.perf_counter() - t0
    groups = microcircuit_spec(scale, k_scale).groups()
    summary = {
        "scale": scale,
        "k_scale": k_scale,
        "background": background,
        "neurons": net.n_neurons,
        "synapses": int(net.csr_.n_synapses),
        "presim_s": presim,
        "duration_s": duration,
        "build_s": build_s,
        "run_s": run_s,
        "backend": net.backend,
        "populations": population_stats(result, groups, t_start=presim),
    }
    if plot:
        from neurofabric.snn.plots import plot_raster_groups

        plot_raster_groups(
            result,
            groups,
            plot,
            t_start=max(presim, duration - 0.1),
            title=f"microcircuit, scale {scale:g}, k_scale {k_scale:g}",
        )
        summary["plot"] = str(plot)
    emit(summary, json_out, _microcircuit_table)


@snn_app.command("compile")
def snn_compile() -> None:
    """Compile the simulator's kernels into numba's on-disk cache (done once by `make`)."""
    from neurofabric.snn.models import brunel, coba, cuba, microcircuit

    t0 = time.perf_counter()
    nets = [
        build(200, synapses_per_neuron=20, storage=storage, seed=0)
        for build in (cuba, coba)
        for storage in ("csr", "procedural")
    ]
    nets += [brunel(500, seed=0), microcircuit(0.005, 0.005, seed=0)]
    # helpers compile the step loops meanwhile (started before the spinner's thread)
    ahead = sum(net.compile_ahead() for net in nets)
    with console.status("compiling kernels (once per installation)"):
        for net in nets:
            net.run(1e-3)
    console.print(
        f"kernels compiled and cached in {time.perf_counter() - t0:.1f} s "
        f"({ahead} step loops compiled ahead, in helper processes)"
    )


def _load_digits_set(split: str, dataset: str, data_dir: Path | None, n: int):
    from neurofabric.data import load_mnist

    x, y = load_mnist(split, dataset=dataset, data_dir=data_dir)
    return x[:n], y[:n]


def _images_info(p) -> str:
    acc = "" if p["accuracy"] is None else f", ~{p['accuracy']:.1%} acc"
    return f"{p['images_per_s']:.1f} img/s{acc}"


@mnist_app.command("train")
@handles_errors
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
    backend: str = BACKEND_OPTION,
    json_out: bool = JSON_OPTION,
) -> None:
    """Train a Diehl & Cook network without labels, label its neurons, save it.

    A checkpoint is written every --checkpoint-every images; after an interruption the same
    command with --resume continues where it stopped and ends with the same model."""
    from neurofabric.snn.diehl_cook import DiehlCookClassifier

    ck = checkpoint if checkpoint is not None else out.with_name(out.name + ".checkpoint")
    x, y = _load_digits_set("train", dataset, data_dir, images)
    if rule not in ("code", "paper"):
        raise ConfigError(f"`--rule` must be 'code' or 'paper', got {rule!r}")
    the_rule = DiehlCookClassifier.code_rule(a2_plus) if rule == "code" else "paper"
    clf = DiehlCookClassifier(
        n_neurons=neurons, seed=seed, weight_bits=weight_bits, rule=the_rule, backend=backend
    )
    t0 = time.perf_counter()
    with ProgressView("training", show=not json_out, info=_images_info) as view:
        clf.fit(
            x,
            y,
            label_images=0,
            checkpoint=ck,
            checkpoint_every=checkpoint_every,
            resume=resume,
            callback=view.callback,
        )
    fit_s = time.perf_counter() - t0
    resumed_after = view.first.done - 1 if view.first is not None else 0
    n_label = min(label_images, len(x))
    with console.status(f"labelling the neurons from {n_label} images"):
        clf.relabel(x[:label_images], y[:label_images])
    clf.save(out)
    shutil.rmtree(ck, ignore_errors=True)
    summary = {
        "dataset": dataset,
        "neurons": neurons,
        "images": len(x),
        "label_images": n_label,
        "resumed_after_image": resumed_after,
        "fit_s": fit_s,
        "backend": clf.backend_,
        "model": str(out),
    }
    if json_out:
        emit(summary, True, None)
        return
    if resumed_after > 0:
        console.print(f"resumed from the checkpoint after image {resumed_after}")
    console.print(f"trained {neurons} neurons on {len(x)} images; model saved to {out}")


@mnist_app.command("eval")
@handles_errors
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
    json_out: bool = JSON_OPTION,
) -> None:
    """Accuracy, macro-F1, per-class precision/recall and the confusion matrix; optionally
    after rounding the weights (--quantize) or with post-training STP (--stp)."""
    from neurofabric.snn.diehl_cook import DiehlCookClassifier
    from neurofabric.snn.stp import ShortTermPlasticity

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
        if not json_out:
            console.print("evaluating with " + ", ".join(variant))
    with console.status(f"evaluating {len(x)} images"):
        rep = clf.report(x, y)
    figures = []
    if plots:
        from neurofabric.snn.plots import plot_confusion, plot_receptive_fields

        plot_confusion(rep["confusion"], plots / "confusion.png", title=f"{dataset}")
        plot_receptive_fields(
            clf.input_weights_,
            plots / "receptive_fields.png",
            image_shape=(28, 28),
            labels=clf.assignments_,
        )
        figures = [str(plots / "confusion.png"), str(plots / "receptive_fields.png")]
    if json_out:
        summary = {"dataset": dataset, "images": len(x), "variant": variant, "report": rep}
        emit(summary | {"figures": figures}, True, None)
        return
    print_report(console, rep, f"{dataset} test, {len(x)} images")
    if figures:
        console.print("figures: " + ", ".join(figures))


nir_app = typer.Typer(
    help="NIR interchange: run graphs from snnTorch, Norse, ...; export our networks.",
    no_args_is_help=True,
)
snn_app.add_typer(nir_app, name="nir")


def _nir_table(summary: dict) -> Table:
    table = Table(title=f"NIR graph {summary['graph']}", show_header=False)
    for key in ("convention", "dt", "steps", "neurons", "synapses", "wall_s", "out"):
        table.add_row(key, str(summary[key]))
    for name, count in summary["spikes"].items():
        table.add_row(f"spikes of {name}", f"{count:,}")
    return table


@nir_app.command("run")
@handles_errors
def nir_run(
    graph: Path = typer.Argument(..., help="A .nir file (nir.write's HDF5)."),
    inputs: Path = typer.Option(
        ..., "--input", help=".npy of (steps, n) spike counts, or .npz with one per Input node"
    ),
    dt: float = typer.Option(..., help="The time step in seconds (snnTorch 1.0 exports 1e-4)."),
    convention: str = typer.Option("exact", help="exact (NIR's ODEs) or euler (snnTorch, Norse)."),
    out: Path = typer.Option(Path("nir-output.npz"), help="Where the outputs go (.npz)."),
    backend: str = BACKEND_OPTION,
    json_out: bool = JSON_OPTION,
) -> None:
    """Run a NIR graph over given input spikes; write each Output's spikes per step."""
    import numpy as np

    from neurofabric.core.checkpoint import atomic_file
    from neurofabric.snn.nir import from_nir

    if not inputs.is_file():
        raise ConfigError(f"`--input` {inputs} does not exist; give a .npy or .npz file")
    loaded = np.load(inputs, allow_pickle=False)
    given = dict(loaded) if isinstance(loaded, np.lib.npyio.NpzFile) else loaded
    net = from_nir(graph, dt=dt, convention=convention, backend=backend)
    t0 = time.perf_counter()
    result = net.run(given)
    wall = time.perf_counter() - t0
    with atomic_file(out) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **result)
    summary = {
        "graph": str(graph),
        "convention": convention,
        "dt": dt,
        "steps": int(next(iter(result.values())).shape[0]),
        "neurons": net.network.n_neurons,
        "synapses": net.network.n_synapses,
        "wall_s": round(wall, 4),
        "spikes": {k: int(v.sum()) for k, v in result.items() if v.dtype == np.uint8},
        "out": str(out),
    }
    emit(summary, json_out, _nir_table)


@nir_app.command("export")
@handles_errors
def nir_export(
    checkpoint: Path = typer.Argument(..., help="A network saved by SpikingNetwork.save."),
    out: Path = typer.Argument(..., help="The .nir file to write."),
) -> None:
    """Write a saved network as a NIR graph (exact convention; see docs/snn.md)."""
    from neurofabric.snn import SpikingNetwork
    from neurofabric.snn.nir import write

    path = write(out, SpikingNetwork.load(checkpoint))
    console.print(f"NIR graph written: {path}")
