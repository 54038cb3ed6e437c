"""``neurofabric``: run the engines from a shell.

neurofabric demo
neurofabric snn run cuba --neurons 4000 --duration 1.0 --plot raster.png

This module only assembles the command groups; each engine's commands live in
``cli/<engine>.py`` and share ``cli/common.py`` (errors, progress, ``--json``, ``--backend``).
"""

from __future__ import annotations

import logging

import typer
from rich.logging import RichHandler

from neurofabric import __version__
from neurofabric.cli.demo import demo
from neurofabric.cli.field import field_app
from neurofabric.cli.guard import guard_app
from neurofabric.cli.render import console, err_console
from neurofabric.cli.seq import seq_app
from neurofabric.cli.snn import snn_app
from neurofabric.cli.studio import studio
from neurofabric.cli.thermo import thermo_app

app = typer.Typer(
    help="neurofabric: sparse, brain-inspired computing, measured.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(snn_app, name="snn")
app.add_typer(thermo_app, name="thermo")
app.add_typer(guard_app, name="guard")
app.add_typer(field_app, name="field")
app.add_typer(seq_app, name="seq")
app.command("demo")(demo)
app.command("studio")(studio)


def _print_version(value: bool) -> None:
    if value:  # eager: answered before a missing command is an error
        console.print(f"neurofabric {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log what happens."),
    version: bool = typer.Option(
        False, "--version", help="Print the version.", callback=_print_version, is_eager=True
    ),
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=err_console, show_path=False)],
    )


def main() -> None:
    app()
