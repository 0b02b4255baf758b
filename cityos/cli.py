"""The ``cityos`` command: serve | migrate | version | check-config | contexts."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

import click
import httpx
import orjson

from cityos import __version__
from cityos.config import SETTINGS_HELP, Settings, load_settings

__all__ = ["main"]


def _settings(**overrides: Any) -> Settings:
    try:
        return load_settings(overrides)
    except (ValueError, OSError) as exc:
        raise click.ClickException(f"Invalid configuration: {exc}") from exc


def _store_options(command: Any) -> Any:
    """--data-dir, --database and --config: where a command finds the store."""
    options = [
        click.option(
            "--data-dir",
            type=click.Path(path_type=Path),
            default=None,
            help=SETTINGS_HELP["data_dir"],
        ),
        click.option("--database", default=None, help=SETTINGS_HELP["database_url"]),
        click.option(
            "--config",
            type=click.Path(exists=True, dir_okay=False),
            default=None,
            help="TOML file with settings.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """City OS: an urban data platform with the ETSI NGSI-LD API.

    Run `cityos serve` to start on embedded SQLite in ./cityos-data.
    """


@main.command()
@click.option("--host", default=None, help=SETTINGS_HELP["host"] + " [default: 127.0.0.1]")
@click.option("--port", type=int, default=None, help=SETTINGS_HELP["port"] + " [default: 8000]")
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=None,
    help=SETTINGS_HELP["data_dir"] + " [default: ./cityos-data]",
)
@click.option("--database", default=None, help=SETTINGS_HELP["database_url"])
@click.option(
    "--config",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="TOML file with settings.",
)
def serve(
    host: str | None,
    port: int | None,
    data_dir: Path | None,
    database: str | None,
    config: str | None,
) -> None:
    """Start City OS and serve the NGSI-LD API."""
    import uvicorn

    from cityos.app import build_app

    settings = _settings(
        host=host, port=port, data_dir=data_dir, database_url=database, config=config
    )
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    app = build_app(settings)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop" if sys.platform != "win32" else "asyncio",
        http="httptools",
        access_log=False,
        log_level=settings.log_level,
        backlog=2048,
        timeout_graceful_shutdown=5,
    )


@main.command(short_help="Print the version.")
def version() -> None:
    """Print the version of City OS and of the NGSI-LD API it implements."""
    click.echo(f"cityos {__version__} (ETSI GS CIM 009 NGSI-LD 1.8.1)")


@main.command("check-config")
@click.option(
    "--config",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="TOML file with settings.",
)
def check_config(config: str | None) -> None:
    """Validate the configuration and print the effective settings."""
    settings = _settings(config=config)
    for name in SETTINGS_HELP:
        value = getattr(settings, name)
        if name == "database_url":
            value = _hide_password(value)
        click.echo(f"{name} = {value!s}")
    click.echo("configuration is valid")


def _hide_password(url: str) -> str:
    """``postgresql://user:***@host/db``: a password never reaches a terminal or a log."""
    scheme, sep, rest = url.partition("://")
    credentials, at, location = rest.rpartition("@")
    if not sep or not at or ":" not in credentials:
        return url
    return f"{scheme}://{credentials.split(':', 1)[0]}:***@{location}"


@main.command(short_help="Apply the store's schema migrations.")
@_store_options
def migrate(data_dir: Path | None, database: str | None, config: str | None) -> None:
    """Bring the store's schema up to date. Safe to run twice, and run by every start too."""
    from cityos.app import open_store

    settings = _settings(data_dir=data_dir, database_url=database, config=config)

    async def run() -> None:
        store = open_store(settings)
        await store.open()  # applies the migrations not applied yet
        await store.close()

    try:
        asyncio.run(run())
    except ConnectionError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"schema is up to date ({_hide_password(settings.database_url) or 'SQLite'})")


@main.command("import", short_help="Copy the Entities of a FIWARE Orion into this store.")
@click.option(
    "--from-orion", "orion_url", required=True, help="Base URL of the Orion (NGSI-v2) to read."
)
@click.option("--service", default="", help="Fiware-Service to read (the town's tenant).")
@click.option(
    "--service-path",
    default="/#",
    show_default=True,
    help="Fiware-ServicePath to read; a single path is kept as the Entities' scope.",
)
@click.option("--tenant", default=None, help="Tenant to write into [default: the service].")
@click.option(
    "--header",
    "headers",
    multiple=True,
    help="Extra request header NAME:VALUE for Orion, e.g. 'X-Auth-Token: ...' (repeatable).",
)
@_store_options
def import_command(**opts: Any) -> None:
    """Copy every Entity of an Orion service (path) into this City OS, over Orion's NGSI-v2
    API, with a progress bar. Safe to run again: it updates what it imported."""
    from cityos.v2.orion_import import OrionSource

    extra = {}
    for header in opts["headers"]:
        name, sep, value = header.partition(":")
        if not sep or not name.strip():
            raise click.BadParameter(f"{header!r} is not NAME:VALUE", param_hint="--header")
        extra[name.strip()] = value.strip()
    service = opts["service"]
    source = OrionSource(opts["orion_url"], service, opts["service_path"], extra)
    settings = _settings(
        data_dir=opts["data_dir"], database_url=opts["database"], config=opts["config"]
    )
    tenant = opts["tenant"] if opts["tenant"] is not None else service.lower()
    report = asyncio.run(_import(settings, source, tenant))
    click.echo(f"imported {report.imported} of {report.total} Entities")
    for v2_id, reason in report.failed:
        click.echo(f"failed {v2_id}: {reason}", err=True)
    if report.failed:
        raise SystemExit(1)


async def _import(settings: Settings, source: Any, tenant: str) -> Any:
    from cityos.errors import CityOSError
    from cityos.v2.names import load_names
    from cityos.v2.orion_import import import_entities

    outcome: list[Any] = []

    async def run(registry: Any, store: Any) -> None:
        names = await load_names(registry, settings.v2_context, settings.v2_id_prefix)
        with click.progressbar(length=1, label="Importing") as bar:

            def progress(done: int, total: int) -> None:
                bar.length = max(total, 1)
                bar.update(done - bar.pos)

            outcome.append(await import_entities(source, store, tenant, names, progress))

    try:
        await _with_store(settings, run)
    except (CityOSError, httpx.HTTPError) as exc:
        raise click.ClickException(getattr(exc, "detail", None) or str(exc)) from exc
    return outcome[0]


@main.group(short_help="Manage the @context cache.")
def contexts() -> None:
    """Manage the @context cache, e.g. to preload contexts for a closed network (LGWAN)."""


@contexts.command("add", short_help="Preload an @context file under its URL.")
@click.argument("url")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--data-dir", type=click.Path(path_type=Path), default=None, help=SETTINGS_HELP["data_dir"]
)
def contexts_add(url: str, file: Path, data_dir: Path | None) -> None:
    """Preload the @context document FILE to be served for URL without fetching it."""
    try:
        document = orjson.loads(file.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise click.ClickException(f"{file} is not valid JSON: {exc}") from exc
    if not isinstance(document, dict) or "@context" not in document:
        raise click.ClickException(f"{file} has no top-level @context member")
    asyncio.run(
        _with_registry(
            _settings(data_dir=data_dir), lambda r: r.add_cached(url, document["@context"])
        )
    )
    click.echo(f"cached {url}")


@contexts.command("list", short_help="List the known @contexts.")
@click.option(
    "--data-dir", type=click.Path(path_type=Path), default=None, help=SETTINGS_HELP["data_dir"]
)
def contexts_list(data_dir: Path | None) -> None:
    """List the @contexts this City OS knows (built-in, hosted and cached)."""

    async def show(registry: Any) -> None:
        for entry in registry.entries():
            click.echo(f"{entry.kind:18} {entry.url}")

    asyncio.run(_with_registry(_settings(data_dir=data_dir), show))


async def _with_registry(settings: Settings, action: Any) -> None:
    await _with_store(settings, lambda registry, store: action(registry))


async def _with_store(settings: Settings, action: Any) -> None:
    """Runs ``action(registry, store)`` on the configured store, opened and closed."""
    from cityos.app import make_fetcher, open_store
    from cityos.core.contexts import ContextRegistry

    store = open_store(settings)
    await store.open()
    try:
        registry = ContextRegistry(store, make_fetcher(settings), settings.base_url)
        await registry.load()
        await action(registry, store)
    finally:
        await store.close()
