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
        return load_config(config_path, data_dir)
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
