"""The ``neurofabric`` command (typer + rich). The only layer that prints."""

from neurofabric.cli.app import app, main

__all__ = ["app", "main"]
