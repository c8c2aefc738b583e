"""The `switchpoint` command line: serve, check, tokens, keys and logs.

Tables go to stdout through rich; notes go to stderr, so scripts can read stdout (`tokens create` prints
the token alone on its last line). Operator mistakes exit 2 with a report, never a traceback.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
import orjson
from alembic.util import CommandError
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from switchpoint import __version__, app, auth
from switchpoint.config import Config, ConfigError, load_config
from switchpoint.store import db, repo
from switchpoint.store.secrets import Sealer, SecretError, load_master_key

F = TypeVar("F", bound=Callable[..., Any])
FOLLOW_POLL_S = 0.5
# `logs tail --follow` re-reads this far back: a batch can land slightly after newer records did.
FOLLOW_OVERLAP_S = 10.0
_NON_TTY_WIDTH = 200
_pause = time.sleep  # the follow loop's clock (tests replace it to step the loop)


def _fail(message: str, code: int = 1) -> NoReturn:
    click.echo(message, err=True)
    raise click.exceptions.Exit(code)


def _console() -> Console:
    """Stdout as rich sees it; piped output gets a fixed wide width instead of rich's 80 columns."""
    return Console(width=None if sys.stdout.isatty() else _NON_TTY_WIDTH, highlight=False)


class _Group(click.Group):
    """Turns operator-facing failures (key file, database, disk) into one line on stderr and exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SecretError as exc:
            _fail(f"error: {exc}")
        except (SQLAlchemyError, CommandError) as exc:
            _fail(f"database error: {exc}")
        except OSError as exc:  # e.g. a data directory that cannot be created
            _fail(f"error: {exc}")


def _common_options(func: F) -> F:
    func = click.option(
        "--data-dir",
        type=click.Path(path_type=Path, file_okay=False),
        default=None,
        help="Data directory (database, key file, log spool); overrides the config.",
    )(func)
    return click.option(
        "--config",
        "config_path",
        type=click.Path(path_type=Path, dir_okay=False),
        envvar="SWITCHPOINT_CONFIG",
        default=None,
        help="YAML config file [env SWITCHPOINT_CONFIG].",
    )(func)


def _load_config(config_path: Path | None, data_dir: Path | None) -> Config:
    try:
        config = load_config(config_path, data_dir)
        app.check_config(config, str(config_path) if config_path else "(defaults)")
        return config
    except ConfigError as exc:
        _fail(str(exc), 2)


def _urls(config: Config) -> db.StoreUrls:
    try:
        return db.StoreUrls.resolve(config.database_url, config.data_dir)
    except ValueError as exc:
        _fail(f"invalid config: database_url: {exc}", 2)


@contextmanager
def _store(config_path: Path | None, data_dir: Path | None) -> Iterator[tuple[Config, Engine]]:
    """Load the config, bring the database to the newest schema and yield a sync engine on it."""
    config = _load_config(config_path, data_dir)
    urls = _urls(config)
    db.migrate(urls)
    engine = db.sync_engine(urls)
    try:
        yield config, engine
    finally:
        engine.dispose()


def _require_gateway(config: Config, gateway: str) -> None:
    if gateway not in config.gateways:
        known = ", ".join(sorted(config.gateways)) or "none"
        _fail(f"error: unknown gateway '{gateway}' (configured: {known})", 2)


def _when(ts: float | None) -> str:
    return "" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


@click.group(cls=_Group)
@click.version_option(__version__)
def main() -> None:
    """Switchpoint: a self-hosted AI gateway that speaks Cloudflare AI Gateway's URL scheme."""


@main.command()
@_common_options
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8787, type=click.IntRange(0, 65535), show_default=True)
@click.option("--workers", default=1, type=click.IntRange(min=1), show_default=True)
def serve(config_path: Path | None, data_dir: Path | None, host: str, port: int, workers: int) -> None:
    """Run the gateway."""
    config = _load_config(config_path, data_dir)
    db.migrate(_urls(config))
    app.run(config, host=host, port=port, workers=workers)


@main.command()
@_common_options
def check(config_path: Path | None, data_dir: Path | None) -> None:
    """Validate the config without touching the data directory."""
    config = _load_config(config_path, data_dir)
    _urls(config)
    click.echo(f"ok: {len(config.gateways)} gateways, {len(config.custom_providers)} custom providers")


# -- tokens -------------------------------------------------------------------------------------------


@main.group()
def tokens() -> None:
    """Gateway tokens (cf-aig-authorization)."""


@tokens.command("create")
@_common_options
@click.option("--gateway", required=True, help="Gateway the token authenticates to.")
@click.option("--name", default=None, help="A label to recognise the token by.")
def tokens_create(config_path: Path | None, data_dir: Path | None, gateway: str, name: str | None) -> None:
    """Mint a token; it is printed once, alone on the last line of stdout."""
    with _store(config_path, data_dir) as (config, engine):
        _require_gateway(config, gateway)
        minted = auth.mint_token()
        repo.insert_token(engine, minted.token_id, gateway, name, minted.secret_hash)
    note = f"Created token {minted.token_id} for gateway '{gateway}'. It is shown only once; store it now."
    if not config.gateways[gateway].authentication:
        note += f"\nnote: gateway '{gateway}' has authentication: false, so it accepts calls without a token."
    click.echo(note, err=True)
    click.echo(minted.plaintext)


@tokens.command("list")
@_common_options
@click.option("--gateway", default=None, help="Only this gateway's tokens.")
def tokens_list(config_path: Path | None, data_dir: Path | None, gateway: str | None) -> None:
    """List tokens (ids and labels; secrets are never stored)."""
    with _store(config_path, data_dir) as (_config, engine):
        rows = repo.list_tokens(engine, gateway)
    table = Table("ID", "Gateway", "Name", "Created", "Revoked")
    for t in rows:
        table.add_row(t.token_id, t.gateway, t.name or "", _when(t.created_at), _when(t.revoked_at))
    _console().print(table)


@tokens.command("revoke")
@_common_options
@click.argument("token_id")
def tokens_revoke(config_path: Path | None, data_dir: Path | None, token_id: str) -> None:
    """Revoke a token by its id (or by the full token)."""
    parsed = auth.parse_token(token_id)
    token_id = parsed[0] if parsed else token_id
    with _store(config_path, data_dir) as (_config, engine):
        if not repo.revoke_token(engine, token_id):
            _fail(f"error: no live token with id '{token_id}'")
    click.echo(f"Revoked token {token_id}.")


# -- keys ---------------------------------------------------------------------------------------------


def _slot_options(func: F) -> F:
    func = click.option("--gateway", default="default", show_default=True)(func)
    func = click.option("--alias", default="default", show_default=True)(func)
    return click.argument("provider")(func)


@main.group()
def keys() -> None:
    """Provider keys stored encrypted for BYOK injection."""


def _read_key() -> str:
    text = click.prompt("Key", hide_input=True, err=True) if sys.stdin.isatty() else sys.stdin.read()
    key = str(text).strip()
    if not key:
        _fail('error: no key given on stdin (pipe it in: printf %s "$KEY" | switchpoint keys set ...)', 2)
    return key


@keys.command("set")
@_common_options
@_slot_options
def keys_set(config_path: Path | None, data_dir: Path | None, provider: str, alias: str, gateway: str) -> None:
    """Store a provider key read from stdin (never echoed)."""
    with _store(config_path, data_dir) as (config, engine):
        _require_gateway(config, gateway)
        key = _read_key()
        repo.set_key(engine, Sealer(load_master_key(config.data_dir)), gateway, provider, alias, key)
    click.echo(f"Stored {provider} key '{alias}' for gateway '{gateway}' ({repo.key_preview(key)}).")


@keys.command("list")
@_common_options
@click.option("--gateway", default=None, help="Only this gateway's keys.")
def keys_list(config_path: Path | None, data_dir: Path | None, gateway: str | None) -> None:
    """List stored keys by slot, with their last four characters only."""
    with _store(config_path, data_dir) as (_config, engine):
        rows = repo.list_keys(engine, gateway)
    table = Table("Gateway", "Provider", "Alias", "Key", "Updated")
    for k in rows:
        table.add_row(k.gateway, k.provider, k.alias, k.preview, _when(k.updated_at))
    _console().print(table)


@keys.command("delete")
@_common_options
@_slot_options
def keys_delete(config_path: Path | None, data_dir: Path | None, provider: str, alias: str, gateway: str) -> None:
    """Delete the stored key of one slot."""
    with _store(config_path, data_dir) as (_config, engine):
        if not repo.delete_key(engine, gateway, provider, alias):
            _fail(f"error: no {provider} key '{alias}' stored for gateway '{gateway}'")
    click.echo(f"Deleted {provider} key '{alias}' for gateway '{gateway}'.")


# -- logs ---------------------------------------------------------------------------------------------


@main.group()
def logs() -> None:
    """Call logs."""


_LOG_COLUMNS: list[tuple[str, str, int]] = [  # header, key, width
    ("Time", "created_at", 19),
    ("Gateway", "gateway", 12),
    ("Provider", "provider", 12),
    ("Model", "model", 28),
    ("Status", "status_code", 6),
    ("In", "tokens_in", 7),
    ("Out", "tokens_out", 7),
    ("ms", "duration_ms", 8),
    ("TTFB", "ttfb_ms", 8),
    ("ID", "id", 36),
]


def _cell(key: str, value: Any) -> str:
    if value is None:
        return ""
    if key == "created_at":
        return _when(value)
    if isinstance(value, float):
        return f"{value:.0f}"
    return str(value)


def _print_logs(rows: list[dict[str, Any]], as_json: bool, header: bool) -> None:
    if as_json:
        for row in rows:
            click.echo(orjson.dumps(row).decode())
        return
    table = Table(show_header=header, box=None, pad_edge=False)
    for title, key, width in _LOG_COLUMNS:
        numeric = key in {"status_code", "tokens_in", "tokens_out", "duration_ms", "ttfb_ms"}
        table.add_column(title, width=width, no_wrap=True, justify="right" if numeric else "left")
    for row in rows:
        table.add_row(*(_cell(key, row.get(key)) for _title, key, _width in _LOG_COLUMNS))
    _console().print(table)


def _follow(engine: Engine, gateway: str | None, rows: list[dict[str, Any]], as_json: bool) -> None:
    """Poll for records newer than those shown, re-reading a short overlap and skipping ids already shown."""
    seen = {r["id"]: r["created_at"] for r in rows}
    since = max(seen.values(), default=time.time() - FOLLOW_OVERLAP_S)
    while True:
        _pause(FOLLOW_POLL_S)
        fresh = [
            r
            for r in repo.recent_logs(engine, 1000, gateway, after_created_at=since - FOLLOW_OVERLAP_S)
            if r["id"] not in seen
        ]
        if fresh:
            _print_logs(fresh, as_json, header=False)
            seen.update((r["id"], r["created_at"]) for r in fresh)
            since = max(since, *(r["created_at"] for r in fresh))
            seen = {i: t for i, t in seen.items() if t > since - FOLLOW_OVERLAP_S}


@logs.command("tail")
@_common_options
@click.option("-n", "--lines", "limit", default=20, show_default=True, type=click.IntRange(min=1))
@click.option("--follow", "-f", is_flag=True, help="Keep printing new records as they arrive.")
@click.option("--gateway", default=None, help="Only this gateway's records.")
@click.option("--json", "as_json", is_flag=True, help="NDJSON, one record per line, without bodies.")
def logs_tail(
    config_path: Path | None, data_dir: Path | None, limit: int, follow: bool, gateway: str | None, as_json: bool
) -> None:
    """Show the newest call records, oldest first."""
    with _store(config_path, data_dir) as (_config, engine):
        rows = repo.recent_logs(engine, limit, gateway)
        if not rows and not as_json:
            click.echo("no log records yet" + (" (waiting for new ones)" if follow else ""), err=True)
        _print_logs(rows, as_json, header=True)
        if follow:
            try:
                _follow(engine, gateway, rows, as_json)
            except KeyboardInterrupt:
                pass


# -- logs list / show / export (the logs API's queries, on the sync engine) ---------------------------------
# These imports sit with the commands (added while others edited this file); hoist them at will.

import os  # noqa: E402
from datetime import datetime  # noqa: E402
from typing import IO  # noqa: E402

from switchpoint.errors import BadRequest  # noqa: E402
from switchpoint.store import logquery  # noqa: E402
from switchpoint.store import logs as log_queries  # noqa: E402


def _filter_options(func: F) -> F:
    func = click.option("--until", default=None, help="Only records up to this time (ISO-8601 or Unix seconds).")(func)
    func = click.option("--since", default=None, help="Only records from this time (ISO-8601 or Unix seconds).")(func)
    func = click.option(
        "--filter",
        "filters",
        multiple=True,
        metavar="KEY=VALUE",
        help="A logs API parameter, e.g. provider=openai, min_cost=0.01, success=false, metadata.user=u1 (repeatable).",
    )(func)
    return click.option("--gateway", default=None, help="Only this gateway's records.")(func)


def _log_query(gateway: str | None, filters: tuple[str, ...], since: str | None, until: str | None,
               *controls: tuple[str, str]) -> log_queries.LogQuery:  # fmt: skip
    """The --filter/--since/--until options (and paging `controls`) as a LogQuery; mistakes exit 2."""
    pairs: list[tuple[str, str]] = []
    for item in filters:
        key, sep, value = item.partition("=")
        if not sep or not key:
            _fail(f"error: --filter '{item}' is not KEY=VALUE", 2)
        pairs.append((key, value))
    pairs += [(name, value) for name, value in (("start_date", since), ("end_date", until)) if value is not None]
    try:
        return logquery.parse_log_query(gateway, [*pairs, *controls])
    except BadRequest as exc:
        _fail(f"error: {exc.message}", 2)


def _table_row(row: dict[str, Any]) -> dict[str, Any]:
    """An API-shaped record in the shape `_print_logs` tabulates (epoch time, *_ms names)."""
    created = datetime.fromisoformat(row["created_at"]).timestamp()
    return {**row, "created_at": created, "duration_ms": row["duration"], "ttfb_ms": row["ttfb"]}


@logs.command("list")
@_common_options
@_filter_options
@click.option("-n", "--limit", default=20, show_default=True, type=click.IntRange(1, logquery.MAX_PER_PAGE))
@click.option("--order-by", default="created_at", show_default=True, type=click.Choice(log_queries.ORDERABLE))
@click.option("--asc", is_flag=True, help="Ascending (oldest, smallest first); default descending.")
@click.option("--cursor", default=None, help="Continue after the page that printed this cursor.")
@click.option("--json", "as_json", is_flag=True, help="NDJSON in the logs API's shape, without bodies.")
def logs_list(config_path: Path | None, data_dir: Path | None, gateway: str | None, filters: tuple[str, ...],
              since: str | None, until: str | None, limit: int, order_by: str, asc: bool, cursor: str | None,
              as_json: bool) -> None:  # fmt: skip
    """List call records matching filters, newest first; prints the next page's --cursor on stderr."""
    controls = [("per_page", str(limit)), ("order_by", order_by), ("order_by_direction", "asc" if asc else "desc")]
    q = _log_query(gateway, filters, since, until, *controls, *([("cursor", cursor)] if cursor else []))
    with _store(config_path, data_dir) as (_config, engine), engine.connect() as conn:
        try:
            page = log_queries.list_logs(conn, q)
        except BadRequest as exc:  # a cursor this command did not print
            _fail(f"error: {exc.message}", 2)
    if as_json:
        for row in page.rows:
            click.echo(orjson.dumps(row).decode())
    elif page.rows:
        _print_logs([_table_row(row) for row in page.rows], False, header=True)
    else:
        click.echo("no matching log records", err=True)
    if page.info["cursor"] is not None:
        click.echo(f"more: --cursor {page.info['cursor']}", err=True)


@logs.command("show")
@_common_options
@click.argument("log_id")
@click.option("--gateway", default=None, help="Only look in this gateway.")
def logs_show(config_path: Path | None, data_dir: Path | None, log_id: str, gateway: str | None) -> None:
    """Print one call record as JSON with its bodies (null when payload collection was off)."""
    with _store(config_path, data_dir) as (_config, engine), engine.connect() as conn:
        row = log_queries.get_log(conn, gateway, log_id)
    if row is None:
        _fail(f"error: no log record '{log_id}'" + (f" in gateway '{gateway}'" if gateway else ""))
    click.echo(orjson.dumps(row, option=orjson.OPT_INDENT_2).decode())


@logs.command("export")
@_common_options
@_filter_options
@click.option("--format", "fmt", type=click.Choice(["ndjson"]), default="ndjson", show_default=True)
@click.option("--bodies", is_flag=True, help="Include request and response bodies (JSON, text or {$b64}).")
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Write to this file (created 0600) instead of stdout.")  # fmt: skip
def logs_export(config_path: Path | None, data_dir: Path | None, gateway: str | None, filters: tuple[str, ...],
                since: str | None, until: str | None, fmt: str, bodies: bool, output: Path | None) -> None:  # fmt: skip
    """Write every matching record, oldest first, one JSON object a line; read in pages, so any size fits."""
    q = _log_query(gateway, filters, since, until, ("order_by_direction", "asc"))
    count = 0
    with _store(config_path, data_dir) as (_config, engine):
        out: IO[bytes]
        if output is None:
            out = sys.stdout.buffer
        else:
            out = os.fdopen(os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb")
        try:
            for row in log_queries.export_logs(engine, q, bodies):
                out.write(orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE))
                count += 1
        finally:
            out.flush()
            if output is not None:
                out.close()
    click.echo(f"exported {count} record(s) as {fmt}", err=True)


# -- routes -------------------------------------------------------------------------------------------------
# These imports sit with the group (it was appended while others edited this file); hoist them at will.

import asyncio  # noqa: E402

import yaml  # noqa: E402

from switchpoint.providers.registry import build_registry  # noqa: E402
from switchpoint.routing.compile import CompiledRoute, compile_route  # noqa: E402
from switchpoint.routing.conditions import RouteRequest  # noqa: E402
from switchpoint.routing.explain import explain  # noqa: E402
from switchpoint.routing.schema import (  # noqa: E402
    RouteConflict,
    RouteInvalid,
    RouteRecord,
    VersionRecord,
    config_route,
    parse_route,
)
from switchpoint.store.routes import RouteRepo  # noqa: E402


@main.group()
def routes() -> None:
    """Dynamic routes (`model: "dynamic/NAME"`): versions and deployments."""


def _gateway_option(func: F) -> F:
    return click.option("--gateway", default="default", show_default=True, help="Gateway the route is on.")(func)


def _read_route_file(path: Path) -> dict[str, Any]:
    """A route document in JSON or YAML: `{name?, elements: [...]}`, or just the list of elements."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        _fail(f"error: cannot read {path}: {exc}", 2)
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError:
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            _fail(f"error: {path} is neither JSON nor YAML: {exc}", 2)
    if isinstance(doc, list):
        doc = {"elements": doc}
    if not isinstance(doc, dict):
        _fail(f"error: {path} must hold an object with 'elements' (or a list of elements)", 2)
    return doc


def _compiled(config: Config, gateway: str, name: str, doc: Any) -> CompiledRoute:
    """Validate against the config's providers; a bad route is reported element by element (exit 2)."""
    try:
        return compile_route(name, doc, build_registry(config), gateway=gateway)
    except RouteInvalid as exc:
        problems = "\n".join(f"  {p}" for p in exc.problems)
        _fail(f"error: route '{name}' is invalid:\n{problems}", 2)


def _find(config: Config, repo_: RouteRepo, gateway: str, name: str) -> RouteRecord:
    if name in config.routes:
        return config_route(name, config.routes[name], gateway)
    found = repo_.find_route(gateway, name)
    if found is None:
        _fail(f"error: no route '{name}' on gateway '{gateway}' (see: switchpoint routes list)")
    return found


def _writable(config: Config, repo_: RouteRepo, gateway: str, name: str) -> RouteRecord:
    route = _find(config, repo_, gateway, name)
    if route.read_only:
        _fail(f"error: route '{name}' is declared in the config file and is read-only; edit the file instead", 2)
    return route


def _versions(repo_: RouteRepo, route: RouteRecord) -> list[VersionRecord]:
    if route.read_only:
        return [route.version] if route.version else []
    return repo_.list_versions(route.gateway, route.id) or []


def _pick_version(versions: list[VersionRecord], ref: str, name: str) -> VersionRecord:
    """A version by its number (`3`) or its id."""
    found = next((v for v in versions if ref in (str(v.number), v.version_id)), None)
    if found is None:
        _fail(f"error: route '{name}' has no version '{ref}' (see: switchpoint routes versions {name})")
    return found


def _label(version: VersionRecord | None) -> str:
    return "" if version is None else f"{version.number} ({version.version_id})"


@routes.command("list")
@_common_options
@click.option("--gateway", default=None, help="Only this gateway's routes.")
def routes_list(config_path: Path | None, data_dir: Path | None, gateway: str | None) -> None:
    """List routes: those in the config file (read-only) and those pushed to the store."""
    with _store(config_path, data_dir) as (config, engine):
        stored = RouteRepo(engine).list_routes(gateway)
    gateways = [gateway] if gateway is not None else sorted(config.gateways)
    declared = [config_route(n, d, g) for g in gateways for n, d in sorted(config.routes.items())]
    table = Table("Gateway", "Name", "Source", "Live version", "Modified", "ID")
    for r in [*declared, *stored]:
        source = "config" if r.read_only else "store"
        modified = "" if r.read_only else _when(r.modified_at)
        table.add_row(r.gateway, r.name, source, _label(r.version) or "not deployed", modified, r.id)
    _console().print(table)


@routes.command("push")
@_common_options
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@_gateway_option
@click.option("--name", default=None, help="Route name [default: the file's `name`].")
@click.option("--no-deploy", is_flag=True, help="Save a new version without making it live.")
@click.option("--comment", default=None, help="A note stored with the version.")
def routes_push(
    config_path: Path | None,
    data_dir: Path | None,
    file: Path,
    gateway: str,
    name: str | None,
    no_deploy: bool,
    comment: str | None,
) -> None:
    """Validate FILE and save it as a new version of its route (created if new), deployed unless --no-deploy."""
    doc = _read_route_file(file)
    name = name or (doc.get("name") if isinstance(doc.get("name"), str) else None)
    if not name:
        _fail('error: the route needs a name: put "name" in the file or pass --name', 2)
    with _store(config_path, data_dir) as (config, engine):
        _require_gateway(config, gateway)
        if name in config.routes:
            _fail(f"error: route '{name}' is declared in the config file and is read-only; edit the file instead", 2)
        _compiled(config, gateway, name, doc)
        elements = parse_route(doc).elements_json()
        repo_ = RouteRepo(engine)
        existing = repo_.find_route(gateway, name)
        if existing is None:
            created = repo_.create_route(gateway, name, elements, comment, deploy=not no_deploy)
            version = _versions(repo_, created)[0]
        else:
            added = repo_.add_version(gateway, existing.id, elements, comment)
            assert added is not None
            version = added
            if not no_deploy:
                repo_.deploy(gateway, existing.id, version.version_id, comment)
    what = "Created route" if existing is None else "Saved a new version of route"
    state = "not deployed" if no_deploy else "deployed; running gateways pick it up within a second"
    click.echo(f"{what} '{name}' on gateway '{gateway}': version {_label(version)}, {state}.")
    if no_deploy:
        click.echo(f"Deploy it with: switchpoint routes deploy {name} {version.number} --gateway {gateway}", err=True)


@routes.command("deploy")
@_common_options
@click.argument("route")
@click.argument("version")
@_gateway_option
@click.option("--comment", default=None, help="A note stored with the deployment.")
def routes_deploy(
    config_path: Path | None, data_dir: Path | None, route: str, version: str, gateway: str, comment: str | None
) -> None:
    """Make VERSION (its number or id) of ROUTE live."""
    with _store(config_path, data_dir) as (config, engine):
        repo_ = RouteRepo(engine)
        record = _writable(config, repo_, gateway, route)
        chosen = _pick_version(_versions(repo_, record), version, route)
        _compiled(config, gateway, route, {"elements": chosen.elements})
        repo_.deploy(gateway, record.id, chosen.version_id, comment)
    click.echo(f"Deployed version {_label(chosen)} of route '{route}' on gateway '{gateway}'.")


@routes.command("rollback")
@_common_options
@click.argument("route")
@_gateway_option
def routes_rollback(config_path: Path | None, data_dir: Path | None, route: str, gateway: str) -> None:
    """Deploy the newest version older than the live one."""
    with _store(config_path, data_dir) as (config, engine):
        repo_ = RouteRepo(engine)
        record = _writable(config, repo_, gateway, route)
        try:
            deployment = repo_.rollback(gateway, record.id)
        except RouteConflict as exc:
            _fail(f"error: route '{route}': {exc}")
        live = next((v for v in _versions(repo_, record) if deployment and v.version_id == deployment.version_id), None)
    click.echo(f"Rolled back route '{route}' on gateway '{gateway}' to version {_label(live)}.")


@routes.command("versions")
@_common_options
@click.argument("route")
@_gateway_option
def routes_versions(config_path: Path | None, data_dir: Path | None, route: str, gateway: str) -> None:
    """List the versions of ROUTE, newest first; `live` marks the deployed one."""
    with _store(config_path, data_dir) as (config, engine):
        repo_ = RouteRepo(engine)
        versions = _versions(repo_, _find(config, repo_, gateway, route))
    table = Table("Version", "ID", "Created", "Live", "Elements", "Comment")
    for v in versions:
        created = "" if v.created_at == 0 else _when(v.created_at)
        live = "live" if v.active else ""
        table.add_row(str(v.number), v.version_id, created, live, str(len(v.elements)), v.comment or "")
    _console().print(table)


def _json_option(value: str | None, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    try:
        parsed = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        _fail(f"error: {what} is not valid JSON: {exc}", 2)
    if not isinstance(parsed, dict):
        _fail(f"error: {what} must be a JSON object", 2)
    return parsed


@routes.command("explain")
@_common_options
@click.argument("route")
@_gateway_option
@click.option("--metadata", default=None, help='cf-aig-metadata as a JSON object, e.g. {"plan": "paid"}.')
@click.option("--header", "headers", multiple=True, help="A request header as NAME=VALUE (repeatable).")
@click.option("--body", default=None, help="Request body fields as a JSON object (e.g. max_tokens).")
@click.option("--version", "version_ref", default=None, help="Explain this version (number or id), not the live one.")
@click.option("--json", "as_json", is_flag=True, help="Print the steps as JSON.")
def routes_explain(
    config_path: Path | None,
    data_dir: Path | None,
    route: str,
    gateway: str,
    metadata: str | None,
    headers: tuple[str, ...],
    body: str | None,
    version_ref: str | None,
    as_json: bool,
) -> None:
    """Show the path a request would take through ROUTE and why, without calling any model."""
    header_map = {}
    for item in headers:
        key, sep, value = item.partition("=")
        if not sep or not key:
            _fail(f"error: --header takes NAME=VALUE, got {item!r}", 2)
        header_map[key.strip()] = value
    request = RouteRequest.build(_json_option(metadata, "--metadata"), header_map, _json_option(body, "--body"))
    with _store(config_path, data_dir) as (config, engine):
        repo_ = RouteRepo(engine)
        record = _find(config, repo_, gateway, route)
        version = _pick_version(_versions(repo_, record), version_ref, route) if version_ref else record.version
        if version is None:
            _fail(f"error: route '{route}' has no deployed version; pass --version")
        compiled = _compiled(config, gateway, route, {"elements": version.elements})
    steps = asyncio.run(explain(compiled, request))
    if as_json:
        click.echo(orjson.dumps([s.as_json() for s in steps], option=orjson.OPT_INDENT_2).decode())
        return
    click.echo(f"Route '{route}' version {_label(version)} on gateway '{gateway}':", err=True)
    table = Table("#", "Element", "Type", "Decision", "Next", "Why")
    for n, s in enumerate(steps, 1):
        table.add_row(str(n), s.element_id, s.type, s.decision, s.next or "", s.reason)
    _console().print(table)
    click.echo("Rate limits: this command cannot see a running gateway's counters; all were assumed under.", err=True)
