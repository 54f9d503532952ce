"""``cachestatus serve``: the cache over HTTP, read-only, for ArcGIS, WMTS and XYZ clients."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import UsageError
from ..request import CacheSource
from . import options
from .context import Context, command


@command
@options.status_option
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on (the loopback by default: only this machine can connect).",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8000,
    show_default=True,
    help="Port to listen on; 0 picks a free one (the URLs printed name it).",
)
@click.option("--name", default=None, help="Service name in the URLs; default: the cache's name.")
@click.option(
    "--cors",
    default=None,
    help="Comma-separated origins allowed to read the answers from web pages ('*': any).",
)
@click.option(
    "--blank-tiles",
    is_flag=True,
    help="Answer an absent tile with a transparent one (header blank-tile: true) instead of "
    "404, unless the request says blankTile=false.",
)
@options.source_options
@click.pass_obj
def serve(
    ctx: Context,
    status: str | None,
    host: str,
    port: int,
    name: str | None,
    cors: str | None,
    blank_tiles: bool,
    source: CacheSource,
) -> None:
    """Serve CACHE read-only over HTTP until Ctrl-C.

    Prints the report page's URL, the ArcGIS REST MapServer URL and the WMTS capabilities URL,
    one per line: paste them into a browser, ArcGIS Pro, QGIS or GDAL.
    """
    import sys

    from ..errors import StatusNotFound
    from ..reportpage import find_store
    from ..serve.app import SERVE_REMEDY, App
    from ..serve.server import Server
    from ..serve.service import describe

    with source.open() as reader:
        service = describe(reader, name)
        origins = [origin.strip() for origin in (cors or "").split(",") if origin.strip()]
        app = App(reader, service, Path(status) if status else None, blank_tiles, bool(origins))
        try:
            server = Server(app, host, port, origins, None if ctx.verbosity < 0 else sys.stderr)
        except OSError as exc:
            raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        with server:
            try:  # found as /report finds it, at each request: what it answers, said now
                find_store(reader, status, SERVE_REMEDY)
            except StatusNotFound as exc:
                ctx.note(str(exc))
            base = server.base_url
            map_server = f"{base}/arcgis/rest/services/{service.name}/MapServer"
            click.echo(f"{base}/report")
            click.echo(map_server)
            click.echo(f"{map_server}/WMTS/1.0.0/WMTSCapabilities.xml")
            sys.stdout.flush()
            try:
                server.serve_forever()
            except KeyboardInterrupt:
                ctx.note(f"Stopped serving {service.name}")
