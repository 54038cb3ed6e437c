"""Rich tables shared by the commands."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

console = Console()
err_console = Console(stderr=True)


def print_report(
    console: Console, rep: dict[str, Any], title: str, names: list[str] | None = None
) -> None:
    """Per-class precision/recall and the confusion matrix of a classification report."""
    k = len(rep["support"])
    names = names or [str(c) for c in range(k)]
    table = Table(title=f"{title}: accuracy {rep['accuracy']:.4f}, macro-F1 {rep['macro_f1']:.4f}")
    for col in ("class", "precision", "recall", "support"):
        table.add_column(col, justify="right")
    for c in range(k):
        table.add_row(
            names[c],
            f"{rep['precision'][c]:.3f}",
            f"{rep['recall'][c]:.3f}",
            str(rep["support"][c]),
        )
    console.print(table)
    cm = Table(title="confusion matrix (rows: true, columns: predicted)")
    cm.add_column("")
    for c in range(k):
        cm.add_column(names[c], justify="right")
    for c, row in enumerate(rep["confusion"]):
        cm.add_row(names[c], *[str(v) for v in row])
    console.print(cm)


def progress_bar(label: str, counter: str = "{task.percentage:>3.0f}%") -> Progress:
    """A transient progress bar on stderr: label, bar, counter, an ``info`` field, times."""
    return Progress(
        TextColumn(label),
        BarColumn(),
        TextColumn(counter),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    )
