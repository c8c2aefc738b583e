"""The dynamic-routes management API through aiohttp's test client: auth, envelopes, 7001 paths, 404/409."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from switchpoint.config import Config
from switchpoint.exchange import Runtime
from switchpoint.providers.registry import build_registry
from switchpoint.routing.limits_memory import MemoryLimiter
from switchpoint.store import db
from switchpoint.store import routes as store
from switchpoint.store.routes import AsyncRouteRepo
from switchpoint.surfaces.admin import ADMIN_ROUTES, ROUTE_LIMITER, ROUTE_STORE
from switchpoint.surfaces.common import RUNTIME
from tests.routing.builders import cond, end, model, rate, start

TOKEN = "admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
BASE = "/client/v4/accounts/acct/ai-gateway/gateways/default/routes"
ELEMENTS = [
    start("is_paid"),
    cond("is_paid", {"metadata.plan": "paid"}, "m_big", "quota"),
    rate("quota", "m_small", "end", key="metadata.user_id", limit=1, window=3600),
    model("m_big", fallback="m_small"),
    model("m_small"),
    end(),
]
V2 = [start("m"), model("m", model="gpt-4o"), end()]

Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def client(
    aiohttp_client: Callable[[web.Application], Awaitable[Client]], tmp_path: Path
) -> AsyncIterator[Client]:
    config = Config(
        admin_token=TOKEN,
        data_dir=tmp_path,
        gateways={"default": {}, "pinned": {"account_id": "other"}},
        routes={"declared": {"elements": V2}},
    )
    urls = db.StoreUrls.resolve(None, tmp_path)
    db.migrate(urls)
    engine = db.async_engine(urls)
    app = web.Application()
    # the admin API reads only `config` and `registry` from the runtime
    app[RUNTIME] = cast(Runtime, SimpleNamespace(config=config, registry=build_registry(config)))
    app[ROUTE_STORE] = AsyncRouteRepo(engine)
    app[ROUTE_LIMITER] = MemoryLimiter()
    for method, path, handler in ADMIN_ROUTES:
        app.router.add_route(method, path, handler)
    try:
        yield await aiohttp_client(app)
    finally:
        await engine.dispose()


async def call(client: Client, method: str, path: str, body: Any = None, status: int = 200, **kw: Any) -> Any:
    headers = kw.pop("headers", AUTH)
    data = body if isinstance(body, bytes) else (None if body is None else orjson.dumps(body))
    response = await client.request(method, BASE + path, data=data, headers=headers, **kw)
    payload = await response.json()
    assert response.status == status, payload
    assert response.content_type == "application/json"
    assert payload["success"] is (status < 400) and payload["messages"] == []
    assert isinstance(payload["errors"], list) and (status < 400) is (payload["errors"] == [])
    return payload


async def test_auth_is_required(client: Client) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong-token-0000000"}, {"Authorization": TOKEN}):
        payload = await call(client, "GET", "", status=401, headers=headers)
        assert payload["errors"][0]["code"] == 10000 and payload["result"] is None


async def test_unknown_or_pinned_gateway_is_404(client: Client) -> None:
    response = await client.get(BASE.replace("/default/", "/nope/"), headers=AUTH)
    assert response.status == 404 and (await response.json())["errors"][0]["code"] == 2001
    response = await client.get(BASE.replace("/default/", "/pinned/"), headers=AUTH)
    assert response.status == 404


async def test_create_get_list_and_the_route_object(client: Client) -> None:
    created = (await call(client, "POST", "", {"name": "support", "elements": ELEMENTS}))["result"]
    assert created["name"] == "support" and created["gateway_id"] == "default" and created["account_tag"] == "acct"
    assert created["elements"][2]["type"] == "rate" and created["elements"][2]["properties"]["technique"] == "sliding"
    assert created["version"]["active"] == "true" and orjson.loads(created["version"]["data"]) == created["elements"]
    assert created["deployment"]["version_id"] == created["version"]["version_id"]  # version 1 auto-deployed
    assert created["created_at"].endswith("Z") and created["read_only"] is False

    fetched = (await call(client, "GET", f"/{created['id']}"))["result"]
    assert fetched == created
    listed = (await call(client, "GET", ""))["data"]
    assert [r["name"] for r in listed["routes"]] == ["declared", "support"]
    assert listed["routes"][0]["read_only"] is True and listed["routes"][0]["id"] == "config-declared"
    assert (listed["page"], listed["per_page"], listed["order_by"], listed["order_by_direction"]) == (
        1,
        20,
        "created_at",
        "desc",
    )
    page2 = (await call(client, "GET", "", params={"page": "2", "per_page": "1"}))["data"]
    assert [r["name"] for r in page2["routes"]] == ["support"]
    await call(client, "GET", "", status=400, params={"per_page": "1000"})


async def test_validation_errors_carry_7001_and_paths(client: Client) -> None:
    bad = [start("m"), {"id": "m", "type": "model", "properties": {"model": "x"}, "outputs": {}}, end()]
    payload = await call(client, "POST", "", {"name": "bad", "elements": bad}, status=400)
    assert payload["errors"] == [{"code": 7001, "message": "elements.1.properties.provider (element 'm'): Required",
                                  "path": ["body", "elements", 1, "properties", "provider"]}]  # fmt: skip
    graph = [start("m"), model("m", provider="nope", fallback="gone"), end()]
    payload = await call(client, "POST", "", {"name": "bad", "elements": graph}, status=400)
    assert [e["path"] for e in payload["errors"]] == [
        ["body", "elements", 1, "outputs", "fallback", "elementId"],
        ["body", "elements", 1, "properties", "provider"],
    ]
    payload = await call(client, "POST", "", {"elements": V2}, status=400)
    assert payload["errors"][0]["path"] == ["body", "name"]
    payload = await call(client, "POST", "", b"{not json", status=400)
    assert payload["errors"][0] == {"code": 7001, "message": payload["errors"][0]["message"], "path": ["body"]}


async def test_conflicts_and_read_only_config_routes(client: Client) -> None:
    await call(client, "POST", "", {"name": "support", "elements": V2})
    assert (await call(client, "POST", "", {"name": "support", "elements": V2}, status=409))["errors"][0][
        "code"
    ] == 7409
    await call(client, "POST", "", {"name": "declared", "elements": V2}, status=409)
    declared = (await call(client, "GET", "/config-declared"))["result"]
    assert declared["read_only"] is True and declared["elements"][1]["properties"]["model"] == "gpt-4o"
    for method, path, body in (
        ("PATCH", "/config-declared", {"name": "x"}),
        ("DELETE", "/config-declared", None),
        ("POST", "/config-declared/versions", {"elements": V2}),
        ("POST", "/config-declared/deployments", {"version_id": declared["version"]["version_id"]}),
    ):
        payload = await call(client, method, path, body, status=409)
        assert "read-only" in payload["errors"][0]["message"]
    versions = (await call(client, "GET", "/config-declared/versions"))["data"]["versions"]
    assert [v["version_id"] for v in versions] == [declared["version"]["version_id"]]


async def test_unknown_route_and_version_are_404(client: Client) -> None:
    for method, path in (("GET", "/nope"), ("PATCH", "/nope"), ("DELETE", "/nope"), ("GET", "/nope/versions"),
                         ("GET", "/nope/deployments"), ("POST", "/nope/explain"), ("GET", "/config-nope")):  # fmt: skip
        payload = await call(client, method, path, {"name": "x"} if method == "PATCH" else None, status=404)
        assert payload["errors"][0]["code"] == 7404
    created = (await call(client, "POST", "", {"name": "support", "elements": V2}))["result"]
    await call(client, "GET", f"/{created['id']}/versions/nope", status=404)
    await call(client, "POST", f"/{created['id']}/deployments", {"version_id": "nope"}, status=404)
    await call(client, "POST", f"/{created['id']}/deployments", {}, status=400)


async def test_versions_deployments_rollback_rename_delete(client: Client) -> None:
    app = client.server.app
    engine = app[ROUTE_STORE]._engine  # type: ignore[attr-defined]
    created = (await call(client, "POST", "", {"name": "support", "elements": ELEMENTS}))["result"]
    rid, v1 = created["id"], created["version"]["version_id"]
    counter = await store.routes_version(engine)

    added = (await call(client, "POST", f"/{rid}/versions", {"elements": V2, "comment": "smaller"}))["result"]
    v2 = added["version"]["version_id"]
    assert added["version"]["active"] == "false" and added["version"]["comment"] == "smaller"
    assert added["deployment"]["version_id"] == v1  # saved, not deployed
    assert await store.routes_version(engine) == counter + 1

    versions = (await call(client, "GET", f"/{rid}/versions"))["data"]["versions"]
    assert [(v["version_id"], v["active"]) for v in versions] == [(v2, "false"), (v1, "true")]
    one = (await call(client, "GET", f"/{rid}/versions/{v2}"))["result"]
    assert one["version_id"] == v2 and one["elements"] == orjson.loads(one["data"]) and one["name"] == "support"

    deployed = (await call(client, "POST", f"/{rid}/deployments", {"version_id": v2}))["result"]
    assert deployed["deployment"]["version_id"] == v2 and deployed["version"]["version_id"] == v2
    live = await store.load_live_routes(engine)
    assert live[("default", "support")][0] == v2
    await call(client, "POST", f"/{rid}/deployments", {"version_id": v1})  # rollback = deploy an older one
    deployments = (await call(client, "GET", f"/{rid}/deployments"))["data"]["deployments"]
    assert [d["version_id"] for d in deployments] == [v1, v2, v1]

    renamed = await call(client, "PATCH", f"/{rid}", {"name": "help"})
    assert renamed["result"]["name"] == "help" and renamed["route"] == renamed["result"]
    await call(client, "PATCH", f"/{rid}", {"name": "bad name"}, status=400)
    deleted = (await call(client, "DELETE", f"/{rid}"))["result"]
    assert deleted["id"] == rid and deleted["name"] == "help"
    await call(client, "GET", f"/{rid}", status=404)


async def test_explain_endpoint(client: Client) -> None:
    created = (await call(client, "POST", "", {"name": "support", "elements": ELEMENTS}))["result"]
    body = {"metadata": {"plan": "free", "user_id": "u1"}, "headers": {"X-Team": "a"}, "body": {"max_tokens": 5}}
    result = (await call(client, "POST", f"/{created['id']}/explain", body))["result"]
    assert result["path"] == ["start", "is_paid", "quota", "m_small", "end"]
    assert result["model_element"] == "m_small" and result["limits_checked"] is True
    assert result["version_id"] == created["version"]["version_id"]
    reason = 'metadata.plan = "free": does not match {"metadata.plan": "paid"}'
    step = {"element_id": "is_paid", "type": "conditional", "decision": "false", "next": "quota", "reason": reason}
    assert result["steps"][1] == step
    limiter = client.server.app[ROUTE_LIMITER]
    assert isinstance(limiter, MemoryLimiter) and limiter.used("route:default/support/quota=u1", 3600, "sliding") == 0
    await call(client, "POST", f"/{created['id']}/explain", {"metadata": [1]}, status=400)
    declared = (await call(client, "POST", "/config-declared/explain", {}))["result"]
    assert declared["path"] == ["start", "m", "end"]
