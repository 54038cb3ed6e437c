"""``neurofabric studio``: the local web app (FastAPI + uvicorn) over the engines."""

from __future__ import annotations

import ipaddress
import os
import webbrowser
from pathlib import Path

import typer

from neurofabric.cli.common import handles_errors
from neurofabric.cli.render import console, err_console
from neurofabric.core.errors import BackendUnavailableError, ConfigError


@handles_errors
def studio(
    port: int = typer.Option(8765, help="Port to serve on (0: any free port)."),
    runs: Path = typer.Option(
        Path("studio-runs"), help="Folder for runs, uploads, metrics and checkpoints."
    ),
    host: str = typer.Option(
        "127.0.0.1",
        help="Address to bind. Anything but loopback exposes training and file upload to "
        "the network, without authentication.",
    ),
    data_dir: Path | None = typer.Option(
        None, help="Folder of datasets offered beside uploads (default: NEUROFABRIC_DATA)."
    ),
    max_upload_mb: float = typer.Option(64.0, help="Largest upload accepted, in MiB."),
    no_browser: bool = typer.Option(False, "--no-browser", help="Do not open a browser."),
) -> None:
    """Train, watch, compare and try every engine from a browser."""
    try:
        import uvicorn

        from neurofabric.studio.app import create_app
    except ImportError as exc:
        raise BackendUnavailableError(
            "the studio needs FastAPI and uvicorn: pip install 'neurofabric[studio]'"
        ) from exc
    if not 0 <= port <= 65535:
        raise ConfigError(f"`--port` must lie in [0, 65535], got {port}")
    if max_upload_mb <= 0:
        raise ConfigError(f"`--max-upload-mb` must be > 0, got {max_upload_mb}")
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        err_console.print(
            f"[yellow]warning:[/yellow] binding {host}: anyone who can reach this machine can "
            "start runs and upload files (the studio has no authentication)"
        )
    if data_dir is not None:  # the environment reaches the server's threads and the workers
        os.environ["NEUROFABRIC_DATA"] = str(data_dir.resolve())
    app = create_app(runs, max_upload=int(max_upload_mb * (1 << 20)))
    config = uvicorn.Config(app, host=host, port=port, log_level="error")
    server = uvicorn.Server(config)

    url_host = host if ":" not in host else f"[{host}]"

    def announce() -> None:
        bound = server.servers[0].sockets[0].getsockname()[1] if server.servers else port
        url = f"http://{url_host}:{bound}/"
        console.print(f"neurofabric studio on [bold]{url}[/bold] (runs in {runs.resolve()})")
        if not no_browser:
            webbrowser.open(url)

    _serve(server, announce)


def _serve(server, announce) -> None:
    """Run uvicorn, printing the URL once the socket is bound (the real port with --port 0)."""
    import asyncio

    async def main() -> None:
        config = server.config
        if not config.loaded:
            config.load()
        server.lifespan = config.lifespan_class(config)
        try:
            await server.startup()
        except SystemExit:  # uvicorn's answer to a bind error (it logged the reason)
            server.should_exit = True
        if server.should_exit:
            raise ConfigError(
                f"could not serve on {config.host}:{config.port} (the address is in use or not "
                "allowed); pick another --port, or --port 0 for any free one"
            )
        announce()
        await server.main_loop()
        await server.shutdown()

    asyncio.run(main())
