"""Route rows: versions, deployments, rollback, rename, delete, gateway scoping and the routes counter."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.ext.asyncio import AsyncEngine

from switchpoint.config import Config
from switchpoint.routing.schema import RouteConflict
from switchpoint.store import routes as store
from switchpoint.store.routes import AsyncRouteRepo, RouteRepo
from switchpoint.store.tables import route_deployments, route_versions
from tests.routing.builders import REGISTRY, end, model, start

V1 = [start("m"), model("m"), end()]
V2 = [start("m"), model("m", model="gpt-4o"), end()]
V3 = [start("m"), model("m", model="gpt-4.1"), end()]


def elements(route: Any) -> Any:
    return route.version.elements if route and route.version else None


def test_versions_deployments_and_rollback(engine: Engine) -> None:
    repo = RouteRepo(engine)
    assert repo.counter() == 0
    created = repo.create_route("default", "support", V1, "first")
    assert repo.counter() == 1
    assert created.version is not None and created.version.number == 1 and created.version.active
    assert created.deployment is not None and created.deployment.version_id == created.version.version_id
    assert elements(created) == V1 and not created.read_only

    v2 = repo.add_version("default", created.id, V2, "second")
    v3 = repo.add_version("default", created.id, V3)
    assert v2 is not None and v3 is not None and (v2.number, v3.number) == (2, 3) and not v3.active
    assert repo.counter() == 3
    assert elements(repo.find_route("default", "support")) == V1  # saving does not deploy

    deployment = repo.deploy("default", created.id, v3.version_id, "go")
    assert deployment is not None and deployment.version_id == v3.version_id and deployment.comment == "go"
    live = repo.find_route("default", "support")
    assert elements(live) == V3 and live is not None and live.modified_at >= created.modified_at
    versions = repo.list_versions("default", created.id)
    assert versions is not None and [(v.number, v.active) for v in versions] == [(3, True), (2, False), (1, False)]

    rolled = repo.rollback("default", created.id)
    assert (
        rolled is not None and rolled.version_id == v2.version_id and "rollback to version 2" in (rolled.comment or "")
    )
    assert elements(repo.find_route("default", "support")) == V2
    repo.rollback("default", created.id)
    assert elements(repo.find_route("default", "support")) == V1
    with pytest.raises(RouteConflict, match="no version older"):
        repo.rollback("default", created.id)
    assert repo.counter() == 6


def test_names_are_unique_per_gateway_and_scoped(engine: Engine) -> None:
    repo = RouteRepo(engine)
    a = repo.create_route("default", "support", V1)
    b = repo.create_route("prod", "support", V2)  # the same name on another gateway is another route
    with pytest.raises(RouteConflict, match="already exists"):
        repo.create_route("default", "support", V2)
    assert [r.name for r in repo.list_routes("default")] == ["support"]
    assert {r.id for r in repo.list_routes()} == {a.id, b.id}
    assert repo.list_versions("prod", a.id) is None  # another gateway's route is invisible
    assert repo.deploy("default", a.id, "no-such-version") is None
    assert repo.deploy("default", a.id, repo.list_versions("prod", b.id)[0].version_id) is None  # type: ignore[index]


def test_undeployed_route(engine: Engine) -> None:
    repo = RouteRepo(engine)
    route = repo.create_route("default", "draft", V1, deploy=False)
    assert route.version is None and route.deployment is None
    versions = repo.list_versions("default", route.id)
    assert versions is not None and [v.active for v in versions] == [False]
    with pytest.raises(RouteConflict, match="no version is deployed"):
        repo.rollback("default", route.id)
    assert repo.rollback("default", "missing") is None


async def test_async_repo_rename_delete_and_live_set(engine: Engine, aengine: AsyncEngine) -> None:
    repo = AsyncRouteRepo(aengine)
    route = await repo.create_route("default", "support", V1)
    other = await repo.create_route("default", "other", V2)
    assert await store.routes_version(aengine) == 2

    renamed = await repo.rename_route("default", route.id, "help")
    assert renamed is not None and renamed.name == "help"
    with pytest.raises(RouteConflict):
        await repo.rename_route("default", route.id, "other")
    assert await repo.rename_route("default", "missing", "x") is None
    assert await repo.find_route("default", "support") is None

    version = await repo.add_version("default", route.id, V3)
    assert version is not None and await repo.get_version("default", route.id, version.version_id) == version
    assert await repo.deploy("default", route.id, version.version_id) is not None
    deployments = await repo.list_deployments("default", route.id)
    assert deployments is not None and [d.version_id for d in deployments][0] == version.version_id
    assert len(deployments) == 2

    live = await store.load_live_routes(aengine)
    assert live == {("default", "help"): (version.version_id, V3), ("default", "other"): (other.version.version_id, V2)}  # type: ignore[union-attr]

    deleted = await repo.delete_route("default", route.id)
    assert deleted is not None and deleted.id == route.id
    assert await repo.get_route("default", route.id) is None and await repo.delete_route("default", route.id) is None
    assert (
        await repo.list_versions("default", route.id) is None
        and await repo.list_deployments("default", route.id) is None
    )
    with engine.connect() as conn:  # nothing of it is left behind
        assert conn.execute(select(route_versions).where(route_versions.c.route_id == route.id)).all() == []
        assert conn.execute(select(route_deployments).where(route_deployments.c.route_id == route.id)).all() == []
    assert [r.name for r in await repo.list_routes("default")] == ["other"]
    assert await store.routes_version(aengine) == 6


async def test_load_route_table_compiles_config_and_stored_routes(aengine: AsyncEngine) -> None:
    repo = AsyncRouteRepo(aengine)
    await repo.create_route("default", "stored", V1)
    config = Config(routes={"declared": {"elements": V2}})
    table = await store.load_route_table(aengine, config, REGISTRY)
    assert table.version == 1 and table.problems == ()
    assert sorted(table.routes) == [("default", "declared"), ("default", "stored")]
    stored = table.get("default", "stored")
    assert stored is not None and stored.gateway == "default" and stored.version_id is not None
