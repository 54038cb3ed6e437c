"""``neurofabric thermo``: train and evaluate networks by Metropolis-Hastings annealing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer
from rich.table import Table

from neurofabric.cli.common import BACKEND_OPTION, JSON_OPTION, ProgressView, emit, handles_errors
from neurofabric.cli.render import console, print_report
from neurofabric.core.errors import ConfigError

thermo_app = typer.Typer(
    help="The thermodynamic trainer: gradient-free learning with a growing and pruning topology.",
    no_args_is_help=True,
)


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.iterdir() if f.is_file())


def train_thermo(
    *,
    dataset: str,
    data_dir: Path | None,
    out: Path | None,
    hidden: list[int],
    proposals: int,
    generation: int,
    lambda_l0: float,
    lambda_l1: float,
    w_prune: float,
    schedule: str,
    w_max: float = 2.0,
    t_start: float,
    t_end: float,
    batch_size: int | None,
    replicas: int,
    max_time: float | None,
    init: Path | None,
    seed: int,
    plot: Path | None,
    n_train: int | None = None,
    replica_ratio: float = 2.0,
    backend: str = "auto",
    show_progress: bool = True,
    mpi: bool | None = False,
) -> dict:
    """Train on a dataset with a rich progress bar; returns a summary (used by the demo).
    ``mpi``: spread the replicas over the MPI ranks (None: when started by ``mpiexec`` with
    more than one rank); every rank returns the summary with its ``rank``, and rank 0 alone
    shows progress, saves and plots."""
    from neurofabric.core import mpi as mpi_
    from neurofabric.core.metrics import classification_report
    from neurofabric.data import load_classification
    from neurofabric.thermo import NeuralFabric, ThermoClassifier, plot_history
    from neurofabric.thermo.schedules import make_schedule

    Xtr, Xte, ytr, yte = load_classification(dataset, data_dir=data_dir, n_train=n_train)
    start = None
    if init is not None:
        start = NeuralFabric.from_safetensors(init)
    sched = make_schedule(
        schedule, **({} if schedule == "constant" else {"t_start": t_start, "t_end": t_end})
    )
    if schedule == "constant":
        sched = make_schedule("constant", temperature=t_start)
    model = ThermoClassifier(
        hidden=tuple(hidden),
        n_proposals=proposals,
        generation=generation,
        lambda_l0=lambda_l0,
        lambda_l1=lambda_l1,
        w_prune=w_prune,
        w_max=w_max,
        schedule=sched,
        batch_size=batch_size,
        replicas=replicas,
        replica_ratio=replica_ratio,
        max_time=max_time,
        seed=seed,
        backend=backend,
    )
    distributed = mpi_.launched_by_mpiexec() if mpi is None else mpi
    comm = mpi_.world(needed_by="--mpi") if distributed else None
    rank = comm.Get_rank() if comm is not None else 0
    show = show_progress and rank == 0
    with ProgressView("annealing", show=show, info=_generation_info) as view:
        model.fit(Xtr, ytr, init=start, callback=view.callback if rank == 0 else None, comm=comm)
    pred = model.predict(Xte)
    rep = classification_report(yte, pred, n_classes=len(model.classes_))
    h = model.history_
    summary = {
        "dataset": dataset,
        "test_accuracy": rep["accuracy"],
        "train_accuracy": float(np.mean(model.predict(Xtr) == ytr)),
        "connections": model.fabric_.n_edges,
        "sparsity": model.fabric_.sparsity,
        "proposals": model.n_proposals_done_,
        "seconds": h.rows[-1]["seconds"],
        "proposals_per_s": model.n_proposals_done_ / max(h.rows[-1]["seconds"], 1e-9),
        "backend": model.backend_,
        "replicas": replicas,
        "swap_rate": model.swap_rate_.tolist(),
        "report": rep,
    }
    if comm is not None:
        summary.update(rank=rank, ranks=model.ranks_)
    if rank != 0:
        return summary
    if out is not None:
        model.save(out)
        summary["bytes_on_disk"] = _dir_bytes(out)
    if plot is not None:
        plot_history(h, plot, title=f"{dataset}: Metropolis-Hastings annealing")
    return summary


def _generation_info(p) -> str:
    return (
        f"E={p['energy']:.1f} acc={p['train_accuracy']:.3f} T={p['temperature']:.2g} "
        f"accept={p['acceptance']:.2f} sparsity={p['sparsity']:.2f}"
    )


def summary_table(s: dict) -> Table:
    t = Table(title=f"{s['dataset']}: trained by Metropolis-Hastings (no gradients)")
    t.add_column("figure")
    t.add_column("value", justify="right")
    t.add_row("test accuracy", f"{s['test_accuracy']:.4f}")
    t.add_row("train accuracy", f"{s['train_accuracy']:.4f}")
    t.add_row("connections kept", f"{s['connections']:,} ({1 - s['sparsity']:.1%})")
    t.add_row(
        "proposals" + (" per replica" if s.get("replicas", 1) > 1 else ""),
        f"{s['proposals']:,} in {s['seconds']:.1f} s ({s['proposals_per_s']:,.0f}/s)",
    )
    if s.get("replicas", 1) > 1:
        rates = ", ".join(f"{r:.2f}" for r in s["swap_rate"])
        where = f" on {s['ranks']} MPI ranks" if "ranks" in s else ""
        t.add_row("replicas", f"{s['replicas']}{where}; swap acceptance {rates}")
    if "bytes_on_disk" in s:
        t.add_row("model on disk", f"{s['bytes_on_disk']:,} bytes")
    return t


@thermo_app.command("train")
@handles_errors
def thermo_train(
    out: Path = typer.Option(..., help="Folder to save the trained model in (Arrow columns)."),
    dataset: str = typer.Option("digits", help="digits (scikit-learn), mnist or fashion_mnist."),
    data_dir: Path | None = typer.Option(None, help="Folder holding mnist/ (or NEUROFABRIC_DATA)."),
    hidden: list[int] = typer.Option([32], help="Hidden layer width (repeat for more layers)."),
    proposals: int = typer.Option(600_000, help="Metropolis-Hastings proposals in all."),
    generation: int = typer.Option(20_000, help="Proposals between adaptations."),
    lambda_l0: float = typer.Option(2.0, help="Energy per connection (nats)."),
    lambda_l1: float = typer.Option(0.5, help="Energy per unit of |w|."),
    w_prune: float = typer.Option(0.05, help="|w| at or below which a connection may die."),
    w_max: float = typer.Option(2.0, help="Bound on |w| and |b|."),
    schedule: str = typer.Option("geometric", help="geometric, linear, adaptive or constant."),
    t_start: float = typer.Option(1.0, help="Start temperature (the constant one for 'constant')."),
    t_end: float = typer.Option(0.005, help="Final temperature."),
    batch_size: int | None = typer.Option(None, help="Minibatch per generation (default: all)."),
    replicas: int = typer.Option(1, help="Parallel tempering replicas."),
    replica_ratio: float = typer.Option(
        2.0, help="Temperature ratio of neighbouring replicas (near 1 for large networks)."
    ),
    max_time: float | None = typer.Option(None, help="Stop after this many seconds."),
    init: Path | None = typer.Option(None, help="Start from dense weights in a safetensors file."),
    seed: int = typer.Option(0, help="Seed of the initial network and the chain."),
    plot: Path | None = typer.Option(None, help="Write the training history PNG here."),
    n_train: int | None = typer.Option(None, help="Use only the first N training samples."),
    mpi: bool | None = typer.Option(
        None,
        "--mpi/--no-mpi",
        help="Spread the replicas over MPI ranks (default: when run by mpiexec -n K, K > 1).",
    ),
    backend: str = BACKEND_OPTION,
    json_out: bool = JSON_OPTION,
) -> None:
    """Train a classifier without gradients and save it (under `mpiexec -n K` with
    --replicas R >= K, the replicas run on K processes; rank 0 saves and reports)."""
    s = train_thermo(
        dataset=dataset,
        data_dir=data_dir,
        out=out,
        hidden=hidden,
        proposals=proposals,
        generation=generation,
        lambda_l0=lambda_l0,
        lambda_l1=lambda_l1,
        w_prune=w_prune,
        schedule=schedule,
        t_start=t_start,
        t_end=t_end,
        batch_size=batch_size,
        w_max=w_max,
        replicas=replicas,
        replica_ratio=replica_ratio,
        max_time=max_time,
        init=init,
        seed=seed,
        plot=plot,
        n_train=n_train,
        backend=backend,
        show_progress=not json_out,
        mpi=mpi,
    )
    if s.get("rank", 0) != 0:  # rank 0 reports for all
        return
    s["model"] = str(out)
    if json_out:
        emit(s, True, None)
        return
    console.print(summary_table(s))
    console.print(f"model saved to {out}" + (f"; history plot: {plot}" if plot else ""))


@thermo_app.command("compile")
def thermo_compile() -> None:
    """Compile the numba kernels into the on-disk cache (make runs this once after installing),
    so the first training run does not pay the compile time."""
    import time

    from neurofabric.thermo import ThermoClassifier

    t = time.perf_counter()
    rng = np.random.default_rng(0)
    X = rng.random((40, 6))
    y = np.arange(40) % 3
    ThermoClassifier(hidden=(4,), n_proposals=500, generation=500, seed=0).fit(X, y).predict(X)
    console.print(f"thermo kernels compiled and cached in {time.perf_counter() - t:.1f} s")


@thermo_app.command("eval")
@handles_errors
def thermo_eval(
    model: Path = typer.Argument(..., help="Folder written by `thermo train`."),
    dataset: str = typer.Option("digits", help="digits, mnist or fashion_mnist."),
    data_dir: Path | None = typer.Option(None, help="Folder holding mnist/ (or NEUROFABRIC_DATA)."),
    confusion_png: Path | None = typer.Option(None, help="Write a confusion heatmap PNG here."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Accuracy, macro-F1, per-class precision/recall and the confusion matrix on the test split
    (the model is memory-mapped, checksums verified)."""
    from neurofabric.core.metrics import classification_report
    from neurofabric.data import load_classification
    from neurofabric.thermo import ThermoClassifier

    clf = ThermoClassifier.load(model)
    _, Xte, _, yte = load_classification(dataset, data_dir=data_dir)
    if Xte.shape[1] != clf.fabric_.n_in:
        raise ConfigError(
            f"the model takes {clf.fabric_.n_in} inputs but {dataset} has {Xte.shape[1]}; "
            "evaluate on the dataset it was trained on"
        )
    pred = clf.predict(Xte)
    rep = classification_report(yte, pred, n_classes=len(clf.classes_))
    fab = clf.fabric_
    if confusion_png is not None:
        from neurofabric.snn.plots import plot_confusion

        plot_confusion(rep["confusion"], confusion_png, title=f"{dataset} (thermo)")
    if json_out:
        summary = {
            "dataset": dataset,
            "samples": len(yte),
            "connections": fab.n_edges,
            "pairs": fab.n_pairs,
            "bytes_on_disk": _dir_bytes(model),
            "report": rep,
        }
        emit(summary, True, None)
        return
    console.print(
        f"{fab!r}: {fab.n_edges:,} connections ({1 - fab.sparsity:.1%} of {fab.n_pairs:,}), "
        f"{_dir_bytes(model):,} bytes on disk"
    )
    print_report(console, rep, f"{dataset} test, {len(yte)} samples")
    if confusion_png is not None:
        console.print(f"figure: {confusion_png}")
