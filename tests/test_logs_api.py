"""The logs and analytics admin API over HTTP, on both backends: admin token, v4 envelope, list with filters
and cursors, one record and its bodies, feedback PATCH, delete by filter, analytics, and store outages."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from click.testing import CliRunner, Result
from sqlalchemy import delete, insert
from sqlalchemy.ext.asyncio import AsyncEngine

from switchpoint import cli
from switchpoint.analytics import SqlLogStore
from switchpoint.config import Config
from switchpoint.store import db
from switchpoint.store.tables import LOG_COLUMNS, logs
from switchpoint.surfaces.common import RUNTIME
from switchpoint.surfaces.logs_api import LOG_STORE, LOGS_ROUTES
from tests.store.conftest import record
from tests.support.postgres import free_port, pg_database, pg_url, store_urls

__all__ = ["pg_database", "store_urls"]

TOKEN = "admin-token-0123456789"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
GW = "/client/v4/accounts/acct/ai-gateway/gateways"
BASE = 1_750_000_000.0
RECORDS = [
    record(i, created_at=BASE + i, provider=("openai", "anthropic")[i % 2], gateway="prod" if i == 9 else "default",
           success=i % 4 != 3, metadata={"user": f"u{i % 3}"}, request_body=None if i == 2 else b'{"q":1}')
    for i in range(10)
]  # fmt: skip
Client = TestClient[web.Request, web.Application]
MakeClient = Callable[[web.Application], Awaitable[Client]]


def build_app(engine: AsyncEngine, admin_token: str | None = TOKEN) -> web.Application:
    app = web.Application()
    config = Config(gateways={"default": {}, "prod": {}}, admin_token=admin_token)
    app[RUNTIME] = SimpleNamespace(config=config)  # type: ignore[assignment]  # the API reads only config
    app[LOG_STORE] = SqlLogStore(engine)
    for method, path, handler in LOGS_ROUTES:
        app.router.add_route(method, path, handler)
    return app


@pytest.fixture
async def aengine(store_urls: db.StoreUrls) -> AsyncIterator[AsyncEngine]:
    engine = db.async_engine(store_urls)
    async with engine.begin() as conn:
        await conn.execute(delete(logs))
        await conn.execute(insert(logs), [{name: r.get(name) for name in LOG_COLUMNS} for r in RECORDS])
    yield engine
    await engine.dispose()


@pytest.fixture
async def client(aengine: AsyncEngine, aiohttp_client: MakeClient) -> Client:
    return await aiohttp_client(build_app(aengine))


async def call(client: Client, method: str, path: str, status: int = 200, **kw: Any) -> Any:
    resp = await client.request(method, GW + path, headers=kw.pop("headers", ADMIN), **kw)
    body = await resp.json()
    assert resp.status == status, body
    assert set(body) >= {"success", "result", "errors", "messages"} and body["success"] is (status < 400)
    return body


async def test_the_admin_token_is_required(aengine: AsyncEngine, aiohttp_client: MakeClient) -> None:
    client = await aiohttp_client(build_app(aengine))
    for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": TOKEN}):
        body = await call(client, "GET", "/default/logs", 401, headers=headers)
        assert body["errors"][0]["code"] == 10000
    closed = await aiohttp_client(build_app(aengine, admin_token=None))
    await call(closed, "GET", "/default/logs", 401)


async def test_list_with_filters_and_cursor_pages(client: Client) -> None:
    first = await call(client, "GET", "/default/logs", params={"per_page": "4"})
    assert [r["id"] for r in first["result"]] == [RECORDS[i]["id"] for i in (8, 7, 6, 5)]
    assert first["result_info"]["count"] == 4 and first["result"][0]["created_at"] == "2025-06-15T15:06:48.000Z"
    rest = await call(
        client, "GET", "/default/logs", params={"per_page": "10", "cursor": first["result_info"]["cursor"]}
    )
    assert [r["id"] for r in rest["result"]] == [RECORDS[i]["id"] for i in (4, 3, 2, 1, 0)]
    assert rest["result_info"]["cursor"] is None
    params = [("provider", "anthropic"), ("metadata.user", "u1"), ("meta_info", "true")]
    filtered = await call(client, "GET", "/default/logs", params=params)
    assert [r["id"] for r in filtered["result"]] == [RECORDS[i]["id"] for i in (7, 1)]
    assert filtered["result_info"]["total_count"] == 2
    every = await call(
        client, "GET", "/*/logs", params={"filters": '[{"key":"success","operator":"eq","value":[false]}]'}
    )
    assert [r["id"] for r in every["result"]] == [RECORDS[i]["id"] for i in (7, 3)]


async def test_bad_parameters_and_gateways(client: Client) -> None:
    body = await call(client, "GET", "/default/logs", 400, params={"min_cost": "cheap"})
    assert body["errors"][0]["code"] == 7001 and "min_cost" in body["errors"][0]["message"]
    body = await call(client, "GET", "/nope/logs", 404)
    assert body["errors"][0]["code"] == 2001


async def test_one_record_and_its_bodies(client: Client) -> None:
    log_id = RECORDS[1]["id"]
    one = await call(client, "GET", f"/default/logs/{log_id}")
    assert one["result"]["request_body"] == {"q": 1} and set(one["result"]["response_body"]) == {"$b64"}
    assert (await call(client, "GET", f"/default/logs/{log_id}/request"))["result"] == {"q": 1}
    assert (await call(client, "GET", f"/default/logs/{log_id}/response"))["result"]["$b64"].startswith("AAEC")
    missing = await call(client, "GET", f"/default/logs/{RECORDS[2]['id']}/request", 404)
    assert missing["errors"][0]["code"] == 7404 and "not collected" in missing["errors"][0]["message"]
    await call(client, "GET", f"/prod/logs/{log_id}", 404)  # another gateway's record
    await call(client, "GET", "/default/logs/no-such-id/response", 404)


async def test_feedback_patch(client: Client) -> None:
    log_id = RECORDS[4]["id"]
    body = await call(client, "PATCH", f"/default/logs/{log_id}", json={"feedback": 1, "score": 90})
    assert (body["result"]["feedback"], body["result"]["score"]) == (1, 90.0)
    listed = await call(client, "GET", "/default/logs", params={"feedback": "1"})
    assert [r["id"] for r in listed["result"]] == [log_id]
    await call(client, "PATCH", f"/default/logs/{log_id}", 400, json={"feedback": 5})
    await call(client, "PATCH", f"/default/logs/{log_id}", 400, data=b"{not json")
    await call(client, "PATCH", "/default/logs/no-such-id", 404, json={"score": 1})


async def test_delete_by_filter(client: Client) -> None:
    body = await call(client, "DELETE", "/default/logs", params={"provider": "anthropic", "limit": "2"})
    assert body["result"] == {"deleted": 2}
    body = await call(client, "DELETE", "/default/logs", params={"provider": "anthropic"})
    assert body["result"] == {"deleted": 2}  # 1, 3, 5, 7 are anthropic in `default`
    left = await call(client, "GET", "/*/logs", params={"per_page": "100"})
    assert len(left["result"]) == len(RECORDS) - 4


async def test_analytics(client: Client) -> None:
    params = {"start_date": str(BASE), "end_date": str(BASE + 3600), "interval": "hour", "group_by": "provider"}
    body = await call(client, "GET", "/default/analytics", params=params)
    result = body["result"]
    assert result["group_by"] == "provider" and result["interval"] == 3600
    assert {b["group"]: b["requests"] for b in result["buckets"]} == {"openai": 5, "anthropic": 4}
    assert result["totals"]["errors"] == 2 and result["buckets"][0]["duration_p95"] == 12.5
    await call(client, "GET", "/default/analytics", 400, params={"interval": "fortnight"})


async def test_a_store_outage_is_a_503(aiohttp_client: MakeClient, tmp_path: Path) -> None:
    dead = db.async_engine(db.StoreUrls.resolve(pg_url("nowhere", free_port()), tmp_path))
    try:
        client = await aiohttp_client(build_app(dead))
        body = await call(client, "GET", "/default/logs", 503)
        assert body["errors"][0]["code"] == 7503
    finally:
        await dead.dispose()


# -- the same queries from the command line -------------------------------------------------------------


@pytest.fixture
def run_cli(store_urls: db.StoreUrls, aengine: AsyncEngine, tmp_path: Path) -> Callable[..., Result]:
    """`switchpoint ARGS` on this backend's store (already holding RECORDS)."""
    config = tmp_path / "switchpoint.yaml"
    url = "" if store_urls.is_sqlite else f"database_url: {store_urls.sync_url}\n"
    config.write_text("gateways: {default: {}, prod: {}}\n" + url)

    def invoke(*args: str) -> Result:
        common = ["--config", str(config), "--data-dir", str(store_urls.data_dir)]
        return CliRunner().invoke(cli.main, [*args, *common])

    return invoke


def _ids(result: Result) -> list[str]:
    return [orjson.loads(line)["id"] for line in result.stdout.splitlines()]


async def test_cli_list_filters_and_pages(run_cli: Callable[..., Result]) -> None:
    found = run_cli("logs", "list", "--json", "--filter", "provider=anthropic", "--filter", "metadata.user=u1")
    assert found.exit_code == 0, found.output
    assert _ids(found) == [RECORDS[i]["id"] for i in (7, 1)]
    table = run_cli("logs", "list", "-n", "4", "--since", "2025-06-15T15:06:41Z")
    lines = table.stdout.splitlines()
    assert "Model" in lines[0] and [line.split()[-1] for line in lines[1:]] == [RECORDS[i]["id"] for i in (9, 8, 7, 6)]
    cursor = table.stderr.split("--cursor ")[1].strip()
    rest = run_cli("logs", "list", "--json", "--since", "2025-06-15T15:06:41Z", "--cursor", cursor)
    assert _ids(rest) == [RECORDS[i]["id"] for i in (5, 4, 3, 2, 1)] and "--cursor" not in rest.stderr
    for bad in (["--filter", "nonsense"], ["--filter", "colour=red"], ["--since", "yesterday"], ["--cursor", "x"]):
        refused = run_cli("logs", "list", *bad)
        assert refused.exit_code == 2 and "error:" in refused.stderr and "Traceback" not in refused.output


async def test_cli_show(run_cli: Callable[..., Result]) -> None:
    shown = run_cli("logs", "show", RECORDS[1]["id"])
    assert shown.exit_code == 0 and orjson.loads(shown.stdout)["request_body"] == {"q": 1}
    missing = run_cli("logs", "show", RECORDS[9]["id"], "--gateway", "default")
    assert missing.exit_code == 1 and "no log record" in missing.stderr


async def test_cli_export_ndjson(run_cli: Callable[..., Result], tmp_path: Path) -> None:
    out = tmp_path / "export.ndjson"
    done = run_cli("logs", "export", "--format", "ndjson", "--gateway", "default", "--bodies", "-o", str(out))
    assert done.exit_code == 0 and "exported 9 record(s)" in done.stderr
    rows = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert [r["id"] for r in rows] == [RECORDS[i]["id"] for i in range(9)]  # oldest first
    assert rows[0]["request_body"] == {"q": 1} and (out.stat().st_mode & 0o777) == 0o600
    piped = run_cli("logs", "export", "--filter", "success=false")
    assert _ids(piped) == [RECORDS[i]["id"] for i in (3, 7)] and "request_body" not in piped.stdout
