"""The ``cityos`` command: serve | migrate | version | check-config | contexts."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Any, BinaryIO

import click
import httpx
import orjson

from cityos import __version__
from cityos.config import SETTINGS_HELP, Settings, load_settings
from cityos.errors import CityOSError

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
@click.option("--auth/--no-auth", default=None, help=SETTINGS_HELP["auth"])
@click.option("--insecure", is_flag=True, default=None, help=SETTINGS_HELP["insecure"])
def serve(  # noqa: PLR0913 - one parameter per option
    host: str | None,
    port: int | None,
    data_dir: Path | None,
    database: str | None,
    config: str | None,
    auth: bool | None,
    insecure: bool | None,
) -> None:
    """Start City OS and serve the NGSI-LD API."""
    import uvicorn

    from cityos.app import build_app

    settings = _settings(
        host=host,
        port=port,
        data_dir=data_dir,
        database_url=database,
        config=config,
        auth=auth,
        insecure=insecure,
    )
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    _check_exposure(settings)
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


_LOOPBACK = ("127.", "::1", "localhost")


def _check_exposure(settings: Settings) -> None:
    """Safe defaults: open (no authentication) only on loopback, and loudly."""
    if settings.auth:
        return
    if not settings.host.startswith(_LOOPBACK) and not settings.insecure:
        raise click.ClickException(
            f"Refusing to serve {settings.host} without authentication: switch it on "
            "(--auth, auth = true) or, knowing that anyone who reaches this address may read, "
            "change and delete every tenant's data, pass --insecure"
        )
    logging.getLogger("cityos").warning(
        "AUTHENTICATION IS OFF: every client that reaches %s:%s may read, change and delete "
        "all data of every tenant. Switch it on with --auth before real data arrives.",
        settings.host,
        settings.port,
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
    if settings.auth_issuers:
        from cityos.auth.tokens import load_issuers

        try:
            issuers = load_issuers(Path(settings.auth_issuers))
        except (OSError, ValueError) as exc:
            raise click.ClickException(f"auth_issuers: {exc}") from exc
        for issuer in issuers:
            click.echo(f"trusted issuer {issuer.issuer}")
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


# -- the audit log (cityos/core/audit.py, docs/howto/audit.md) ------------------------------

_AUDIT_PAGE = 1000


@main.group(short_help="Verify and export the tamper-evident audit log.")
def audit() -> None:
    """The hash-chained audit log of the trust layer: reads of personal data, consent,
    policy and API key changes, refused authentications. See docs/howto/audit.md."""


@audit.command("verify", short_help="Check the audit log's hash chain.")
@click.option(
    "--expect-head",
    default=None,
    metavar="HASH",
    help="A head hash printed by an earlier verify: fail if that record is gone.",
)
@_store_options
def audit_verify(
    expect_head: str | None, data_dir: Path | None, database: str | None, config: str | None
) -> None:
    """Read the whole audit log and check the hash and link of every record; exit 1 and
    name the seq of each problem if one was edited, removed or moved.

    Keep the head hash it prints and pass it back with --expect-head: records removed
    from the end of the log leave a shorter chain that is valid on its own."""
    from cityos.core.audit import Verifier

    settings = _settings(data_dir=data_dir, database_url=database, config=config)
    verifier = Verifier(expect_head)

    async def check(store: Any) -> None:
        after = 0
        while page := await store.audit_read(after=after, limit=_AUDIT_PAGE):
            for record in page:
                verifier.feed(record)
            after = page[-1].seq

    _on_store(settings, check)
    report = verifier.report()
    if report.ok:
        click.echo(f"audit log intact: {report.checked} records, head {report.head}")
        return
    for problem in report.problems:
        click.echo(problem)
    click.echo(
        f"audit log is NOT intact: {len(report.problems)} problems in {report.checked} records",
        err=True,
    )
    raise SystemExit(1)


@audit.command("export", short_help="Write the audit log as JSON Lines.")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="File to write [default: standard output].",
)
@click.option("--person", default=None, help="Only the records about this data subject.")
@click.option("--tenant", default=None, help="Only the records of this tenant.")
@click.option(
    "--after", type=int, default=0, show_default=True, help="Only the records after this seq."
)
@_store_options
def audit_export(**opts: Any) -> None:
    """Write the audit log, oldest first, one JSON object per line with its seq, prev
    and hash. A whole export can be checked offline; a filtered one is a disclosure, not
    a chain (it skips the records of others)."""
    from cityos.core.audit import entry_to_doc

    settings = _settings(
        data_dir=opts["data_dir"], database_url=opts["database"], config=opts["config"]
    )
    output: Path | None = opts["output"]
    sink: BinaryIO = output.open("wb") if output is not None else sys.stdout.buffer

    async def export(store: Any) -> None:
        after = opts["after"]
        while page := await store.audit_read(
            after=after, limit=_AUDIT_PAGE, person=opts["person"], tenant=opts["tenant"]
        ):
            sink.write(b"".join(orjson.dumps(entry_to_doc(r)) + b"\n" for r in page))
            after = page[-1].seq

    try:
        _on_store(settings, export)
    finally:
        sink.flush()
        if output is not None:
            sink.close()


def _on_store(settings: Settings, action: Any) -> None:
    """Runs ``await action(store)`` on the configured store, opened and closed."""
    from cityos.app import open_store

    async def run() -> None:
        store = open_store(settings)
        await store.open()
        try:
            await action(store)
        finally:
            await store.close()

    try:
        asyncio.run(run())
    except ConnectionError as exc:
        raise click.ClickException(str(exc)) from exc


# -- administration without a running server: the first key, policies ----------------------

_CLI_ACTOR = "cli"  # the audit log's actor for what an operator does at the console


@main.group(short_help="Create, list and revoke API keys.")
def apikey() -> None:
    """API keys for services, devices and the first administrator (docs/howto/trust.md).

    With authentication on, the first credential comes from here:
    `cityos apikey create --tenant '*' --name operator --role admin`."""


@apikey.command("create", short_help="Create a key and print it once.")
@click.option("--tenant", required=True, help="Its tenant ('*': every tenant).")
@click.option("--name", required=True, help="The client it is for, e.g. mimamori-service.")
@click.option("--role", "roles", multiple=True, help="A role it holds (repeatable).")
@click.option("--expires", default=None, metavar="DATETIME", help="When it stops working.")
@_store_options
def apikey_create(**opts: Any) -> None:
    """Create an API key. Its secret is printed this once and stored only as a hash."""
    from cityos.auth import apikeys
    from cityos.core.model import now_iso
    from cityos.storage.base import AuditEntry
    from cityos.trust import APIKEY

    settings = _store_settings(opts)
    try:
        plain, key = apikeys.new_key(
            tenant=opts["tenant"],
            name=opts["name"],
            roles=list(opts["roles"]),
            expires_at=opts["expires"],
            now=now_iso(),
        )
    except CityOSError as exc:
        raise click.ClickException(exc.detail) from exc
    entry = AuditEntry(
        now_iso(), "apikey.create", _CLI_ACTOR, key.tenant, key.id, detail={"name": key.name}
    )

    async def save(store: Any) -> None:
        await store.trust_put(
            APIKEY, key.tenant, key.id, apikeys.to_doc(key), key=key.id, audit=[entry]
        )

    _on_store(settings, save)
    click.echo(orjson.dumps({**apikeys.render(key), "key": plain}, option=orjson.OPT_INDENT_2))


@apikey.command("list", short_help="List the keys (never their secrets).")
@click.option("--tenant", default=None, help="Only this tenant's keys.")
@_store_options
def apikey_list(**opts: Any) -> None:
    """List the API keys, one JSON object a line: id, tenant, name, roles, expiry and
    revocation. Neither secrets nor their hashes are shown."""
    from cityos.auth import apikeys
    from cityos.trust import APIKEY

    async def show(store: Any) -> None:
        for _, _, doc in await store.trust_list(APIKEY, opts["tenant"]):
            click.echo(orjson.dumps(apikeys.render(apikeys.from_doc(doc))))

    _on_store(_store_settings(opts), show)


@apikey.command("revoke", short_help="Revoke a key at once.")
@click.argument("key_id")
@_store_options
def apikey_revoke(key_id: str, **opts: Any) -> None:
    """Revoke the key KEY_ID. A running City OS refuses it within a second."""
    from cityos.auth import apikeys
    from cityos.core.model import now_iso
    from cityos.storage.base import AuditEntry
    from cityos.trust import APIKEY

    async def revoke(store: Any) -> None:
        found = [d for _, _, d in await store.trust_list(APIKEY, None, key_id)]
        if not found:
            raise click.ClickException(f"No API key {key_id}")
        key = apikeys.revoke(apikeys.from_doc(found[0]), now_iso())
        entry = AuditEntry(now_iso(), "apikey.revoke", _CLI_ACTOR, key.tenant, key.id)
        await store.trust_put(
            APIKEY, key.tenant, key.id, apikeys.to_doc(key), key=key.id, audit=[entry]
        )

    _on_store(_store_settings(opts), revoke)
    click.echo(f"revoked {key_id}")


@main.group(short_help="Show and set a tenant's access policy.")
def policy() -> None:
    """A tenant's access policy: grants, data classification, open data, data subjects
    (docs/howto/trust.md). The admin API's PUT /cityos/v1/policy does the same over HTTP."""


@policy.command("show", short_help="Print a tenant's policy.")
@click.option("--tenant", default="", help="The tenant [default: the default tenant].")
@_store_options
def policy_show(**opts: Any) -> None:
    """Print the tenant's policy as it was set."""
    from cityos.trust import POLICY

    async def show(store: Any) -> None:
        doc = await store.trust_get(POLICY, opts["tenant"], "policy")
        if doc is None:
            raise click.ClickException(f"Tenant {opts['tenant'] or '(default)'} has no policy")
        click.echo(orjson.dumps(doc["body"], option=orjson.OPT_INDENT_2))

    _on_store(_store_settings(opts), show)


@policy.command("set", short_help="Set a tenant's policy from a JSON file.")
@click.option("--tenant", default="", help="The tenant [default: the default tenant].")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_store_options
def policy_set(file: Path, **opts: Any) -> None:
    """Validate the policy in FILE and make it the tenant's. A running City OS applies it
    within a second."""
    from cityos.core.access import policy_document
    from cityos.core.model import now_iso
    from cityos.storage.base import AuditEntry
    from cityos.trust import POLICY

    try:
        body = orjson.loads(file.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise click.ClickException(f"{file} is not valid JSON: {exc}") from exc
    tenant = opts["tenant"]

    async def put(registry: Any, store: Any) -> None:
        compiled = await registry.compile(body.get("@context") if isinstance(body, dict) else None)
        doc = policy_document(body, tenant, compiled.expand)
        entry = AuditEntry(now_iso(), "policy.put", _CLI_ACTOR, tenant, "policy")
        await store.trust_put(POLICY, tenant, "policy", doc, audit=[entry])

    try:
        asyncio.run(_with_store(_store_settings(opts), put))
    except CityOSError as exc:
        raise click.ClickException(exc.detail) from exc
    click.echo(f"policy of tenant {tenant or '(default)'} set")


@main.group(short_help="List residents' consents.")
def consent() -> None:
    """Residents' consents (docs/howto/trust.md). Residents grant and withdraw them with
    their own token over /cityos/v1/consents; this lists them for the town's staff."""


@consent.command("list", short_help="List consents, one JSON object a line.")
@click.option("--tenant", default=None, help="Only this tenant's consents.")
@click.option("--subject", default=None, help="Only those of this data subject.")
@click.option("--recipient", default=None, help="Only those given to this client.")
@_store_options
def consent_list(**opts: Any) -> None:
    """List consents with their status, validity and history."""
    from cityos.core import consent as consents
    from cityos.trust import CONSENT

    async def show(store: Any) -> None:
        for _, _, doc in await store.trust_list(CONSENT, opts["tenant"], opts["recipient"]):
            found = consents.from_doc(doc)
            if opts["subject"] in (None, found.subject):
                click.echo(orjson.dumps(consents.to_doc(found)))

    _on_store(_store_settings(opts), show)


def _store_settings(opts: dict[str, Any]) -> Settings:
    return _settings(
        data_dir=opts["data_dir"], database_url=opts["database"], config=opts["config"]
    )
