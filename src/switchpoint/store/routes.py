"""Dynamic routes in the store: routes, immutable versions and deployments, written by the CLI (`RouteRepo`)
and the admin API (`AsyncRouteRepo`), and the live set every gateway polls.

Each function below runs inside one transaction and every change bumps `routes_version.counter` in it, so a
running gateway notices a deploy by polling one row (`routes_version`) and rebuilds its table
(`load_route_table`). Elements are stored as plain normalized JSON; callers validate with
`routing.compile.compile_route` before storing.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, delete, func, insert, select, true, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from switchpoint.config import Config
from switchpoint.providers.registry import Registry
from switchpoint.routing.compile import RouteTable, build_route_table
from switchpoint.routing.schema import DeploymentRecord, RouteConflict, RouteRecord, VersionRecord
from switchpoint.store.tables import route_deployments, route_versions, routes
from switchpoint.store.tables import routes_version as counter_table

T = TypeVar("T")
Elements = list[dict[str, Any]]
LiveRoutes = dict[tuple[str, str], tuple[str, Elements]]


def _new_id() -> str:
    return uuid.uuid4().hex


def _bump(conn: Connection) -> None:
    bumped = conn.execute(
        update(counter_table).where(counter_table.c.id == 1).values(counter=counter_table.c.counter + 1)
    )
    if bumped.rowcount == 0:
        conn.execute(insert(counter_table).values(id=1, counter=1))


def _read_counter(conn: Connection) -> int:
    return int(conn.scalar(select(counter_table.c.counter).where(counter_table.c.id == 1)) or 0)


# -- reads ----------------------------------------------------------------------------------------------------


def _deployment(row: Any) -> DeploymentRecord:
    return DeploymentRecord(row.deployment_id, row.route_id, row.version_id, row.created_at, row.comment)


def _version(row: Any, live: str | None) -> VersionRecord:
    elements = list(row.elements)
    return VersionRecord(
        row.version_id, row.route_id, row.number, elements, row.created_at, row.comment, live == row.version_id
    )


def _live_deployments(conn: Connection, route_ids: list[str]) -> dict[str, DeploymentRecord]:
    """The newest deployment of each route."""
    d = route_deployments.c
    newest = (
        select(d.route_id, func.max(d.number).label("number")).where(d.route_id.in_(route_ids)).group_by(d.route_id)
    )
    newest_sub = newest.subquery()
    query = select(route_deployments).join(
        newest_sub, (d.route_id == newest_sub.c.route_id) & (d.number == newest_sub.c.number)
    )
    return {row.route_id: _deployment(row) for row in conn.execute(query)}


def _records(conn: Connection, where: Any) -> list[RouteRecord]:
    rows = conn.execute(select(routes).where(where).order_by(routes.c.created_at, routes.c.id)).all()
    live = _live_deployments(conn, [r.id for r in rows])
    ids = [dep.version_id for dep in live.values()]
    versions = {
        v.version_id: v for v in conn.execute(select(route_versions).where(route_versions.c.version_id.in_(ids)))
    }
    records = []
    for r in rows:
        dep = live.get(r.id)
        version = _version(versions[dep.version_id], dep.version_id) if dep and dep.version_id in versions else None
        records.append(RouteRecord(r.id, r.gateway, r.name, r.created_at, r.modified_at, version, dep))
    return records


def list_routes(conn: Connection, gateway: str | None) -> list[RouteRecord]:
    """Oldest first; every gateway's when `gateway` is None."""
    return _records(conn, routes.c.gateway == gateway if gateway is not None else true())


def get_route(conn: Connection, gateway: str, route_id: str) -> RouteRecord | None:
    found = _records(conn, (routes.c.id == route_id) & (routes.c.gateway == gateway))
    return found[0] if found else None


def find_route(conn: Connection, gateway: str, name: str) -> RouteRecord | None:
    found = _records(conn, (routes.c.name == name) & (routes.c.gateway == gateway))
    return found[0] if found else None


def list_versions(conn: Connection, gateway: str, route_id: str) -> list[VersionRecord] | None:
    """Newest first; None when the route does not exist on the gateway."""
    route = get_route(conn, gateway, route_id)
    if route is None:
        return None
    live = route.deployment.version_id if route.deployment else None
    query = select(route_versions).where(route_versions.c.route_id == route_id).order_by(route_versions.c.number.desc())
    return [_version(row, live) for row in conn.execute(query)]


def get_version(conn: Connection, gateway: str, route_id: str, version_id: str) -> VersionRecord | None:
    return next((v for v in list_versions(conn, gateway, route_id) or [] if v.version_id == version_id), None)


def list_deployments(conn: Connection, gateway: str, route_id: str) -> list[DeploymentRecord] | None:
    """Newest first; None when the route does not exist on the gateway."""
    if get_route(conn, gateway, route_id) is None:
        return None
    d = route_deployments.c
    return [
        _deployment(row)
        for row in conn.execute(select(route_deployments).where(d.route_id == route_id).order_by(d.number.desc()))
    ]


def load_live(conn: Connection) -> tuple[int, LiveRoutes]:
    """The counter, then every deployed route as (gateway, name) -> (version_id, elements)."""
    counter = _read_counter(conn)
    return counter, {
        (r.gateway, r.name): (r.version.version_id, r.version.elements) for r in list_routes(conn, None) if r.version
    }


# -- writes ---------------------------------------------------------------------------------------------------


def _touch(conn: Connection, route_id: str, now: float) -> None:
    conn.execute(update(routes).where(routes.c.id == route_id).values(modified_at=now))
    _bump(conn)


def _insert_version(conn: Connection, route_id: str, elements: Elements, comment: str | None, now: float) -> str:
    number = conn.scalar(
        select(func.coalesce(func.max(route_versions.c.number), 0)).where(route_versions.c.route_id == route_id)
    )
    version_id = _new_id()
    values = {"route_id": route_id, "number": int(number or 0) + 1, "elements": elements, "comment": comment}
    conn.execute(insert(route_versions).values(version_id=version_id, created_at=now, **values))
    return version_id


def _insert_deployment(conn: Connection, route_id: str, version_id: str, comment: str | None, now: float) -> None:
    d = route_deployments.c
    number = conn.scalar(select(func.coalesce(func.max(d.number), 0)).where(d.route_id == route_id))
    values = {"route_id": route_id, "version_id": version_id, "number": int(number or 0) + 1, "comment": comment}
    conn.execute(insert(route_deployments).values(deployment_id=_new_id(), created_at=now, **values))


def create_route(
    conn: Connection, gateway: str, name: str, elements: Elements, comment: str | None = None, deploy: bool = True
) -> RouteRecord:
    """A new route with version 1, deployed unless `deploy` is False. Raises `RouteConflict` on a taken name."""
    if find_route(conn, gateway, name) is not None:
        raise RouteConflict(f"a route named '{name}' already exists on gateway '{gateway}'")
    now, route_id = time.time(), _new_id()
    conn.execute(insert(routes).values(id=route_id, gateway=gateway, name=name, created_at=now, modified_at=now))
    version_id = _insert_version(conn, route_id, elements, comment, now)
    if deploy:
        _insert_deployment(conn, route_id, version_id, comment, now)
    _bump(conn)
    route = get_route(conn, gateway, route_id)
    assert route is not None
    return route


def add_version(
    conn: Connection, gateway: str, route_id: str, elements: Elements, comment: str | None = None
) -> VersionRecord | None:
    """A new (not deployed) version; None when the route does not exist on the gateway."""
    if get_route(conn, gateway, route_id) is None:
        return None
    now = time.time()
    version_id = _insert_version(conn, route_id, elements, comment, now)
    _touch(conn, route_id, now)
    return get_version(conn, gateway, route_id, version_id)


def deploy(
    conn: Connection, gateway: str, route_id: str, version_id: str, comment: str | None = None
) -> DeploymentRecord | None:
    """Make `version_id` live; None when the route or that version of it does not exist."""
    if get_version(conn, gateway, route_id, version_id) is None:
        return None
    now = time.time()
    _insert_deployment(conn, route_id, version_id, comment, now)
    _touch(conn, route_id, now)
    route = get_route(conn, gateway, route_id)
    return route.deployment if route else None


def rollback(conn: Connection, gateway: str, route_id: str, comment: str | None = None) -> DeploymentRecord | None:
    """Deploy the newest version older than the live one. None when the route does not exist; raises
    `RouteConflict` when there is no older version."""
    versions = list_versions(conn, gateway, route_id)
    if versions is None:
        return None
    live = next((v for v in versions if v.active), None)
    if live is None:
        raise RouteConflict("no version is deployed yet; deploy one first")
    older = [v for v in versions if v.number < live.number]
    if not older:
        raise RouteConflict("no version older than the live one to roll back to")
    return deploy(conn, gateway, route_id, older[0].version_id, comment or f"rollback to version {older[0].number}")


def rename_route(conn: Connection, gateway: str, route_id: str, name: str) -> RouteRecord | None:
    """None when the route does not exist; raises `RouteConflict` when the name is taken by another route."""
    other = find_route(conn, gateway, name)
    if other is not None and other.id != route_id:
        raise RouteConflict(f"a route named '{name}' already exists on gateway '{gateway}'")
    if get_route(conn, gateway, route_id) is None:
        return None
    conn.execute(update(routes).where(routes.c.id == route_id).values(name=name))
    _touch(conn, route_id, time.time())
    return get_route(conn, gateway, route_id)


def delete_route(conn: Connection, gateway: str, route_id: str) -> RouteRecord | None:
    """Delete a route with its versions and deployments; returns what was deleted (None if nothing)."""
    route = get_route(conn, gateway, route_id)
    if route is None:
        return None
    for table in (route_deployments, route_versions):
        conn.execute(delete(table).where(table.c.route_id == route_id))
    conn.execute(delete(routes).where(routes.c.id == route_id))
    _bump(conn)
    return route


# -- access objects -------------------------------------------------------------------------------------------

_RACE = "the route changed at the same time; try again"


class RouteRepo:
    """Synchronous access for the CLI; each call is one transaction."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def _tx(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            with self._engine.begin() as conn:
                return fn(conn, *args)
        except IntegrityError as exc:  # a unique number or name taken by a concurrent writer
            raise RouteConflict(_RACE) from exc

    def list_routes(self, gateway: str | None = None) -> list[RouteRecord]:
        return self._tx(list_routes, gateway)

    def find_route(self, gateway: str, name: str) -> RouteRecord | None:
        return self._tx(find_route, gateway, name)

    def create_route(
        self, gateway: str, name: str, elements: Elements, comment: str | None = None, deploy: bool = True
    ) -> RouteRecord:
        return self._tx(create_route, gateway, name, elements, comment, deploy)

    def add_version(
        self, gateway: str, route_id: str, elements: Elements, comment: str | None = None
    ) -> VersionRecord | None:
        return self._tx(add_version, gateway, route_id, elements, comment)

    def list_versions(self, gateway: str, route_id: str) -> list[VersionRecord] | None:
        return self._tx(list_versions, gateway, route_id)

    def deploy(
        self, gateway: str, route_id: str, version_id: str, comment: str | None = None
    ) -> DeploymentRecord | None:
        return self._tx(deploy, gateway, route_id, version_id, comment)

    def rollback(self, gateway: str, route_id: str, comment: str | None = None) -> DeploymentRecord | None:
        return self._tx(rollback, gateway, route_id, comment)

    def counter(self) -> int:
        return self._tx(_read_counter)


class AsyncRouteRepo:
    """Asynchronous access for the admin API; satisfies `surfaces.admin.RouteStore`."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def _tx(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            async with self._engine.begin() as conn:
                return await conn.run_sync(fn, *args)
        except IntegrityError as exc:
            raise RouteConflict(_RACE) from exc

    async def list_routes(self, gateway: str) -> list[RouteRecord]:
        return await self._tx(list_routes, gateway)

    async def get_route(self, gateway: str, route_id: str) -> RouteRecord | None:
        return await self._tx(get_route, gateway, route_id)

    async def find_route(self, gateway: str, name: str) -> RouteRecord | None:
        return await self._tx(find_route, gateway, name)

    async def create_route(
        self, gateway: str, name: str, elements: Elements, comment: str | None = None
    ) -> RouteRecord:
        return await self._tx(create_route, gateway, name, elements, comment, True)

    async def rename_route(self, gateway: str, route_id: str, name: str) -> RouteRecord | None:
        return await self._tx(rename_route, gateway, route_id, name)

    async def delete_route(self, gateway: str, route_id: str) -> RouteRecord | None:
        return await self._tx(delete_route, gateway, route_id)

    async def list_versions(self, gateway: str, route_id: str) -> list[VersionRecord] | None:
        return await self._tx(list_versions, gateway, route_id)

    async def get_version(self, gateway: str, route_id: str, version_id: str) -> VersionRecord | None:
        return await self._tx(get_version, gateway, route_id, version_id)

    async def add_version(
        self, gateway: str, route_id: str, elements: Elements, comment: str | None = None
    ) -> VersionRecord | None:
        return await self._tx(add_version, gateway, route_id, elements, comment)

    async def list_deployments(self, gateway: str, route_id: str) -> list[DeploymentRecord] | None:
        return await self._tx(list_deployments, gateway, route_id)

    async def deploy(
        self, gateway: str, route_id: str, version_id: str, comment: str | None = None
    ) -> DeploymentRecord | None:
        return await self._tx(deploy, gateway, route_id, version_id, comment)


# -- what a running gateway polls -----------------------------------------------------------------------------


async def routes_version(engine: AsyncEngine) -> int:
    """The counter every route change bumps; poll it and reload when it moves."""
    async with engine.connect() as conn:
        return await conn.run_sync(_read_counter)


async def load_live_routes(engine: AsyncEngine) -> LiveRoutes:
    """(gateway, name) -> (version_id, elements) of every deployed route."""
    async with engine.connect() as conn:
        return (await conn.run_sync(load_live))[1]


async def load_route_table(engine: AsyncEngine, config: Config, registry: Registry) -> RouteTable:
    """Counter and live routes read in one transaction, compiled with the config's routes into a table."""
    async with engine.connect() as conn:
        counter, live = await conn.run_sync(load_live)
    return build_route_table(config, registry, live, counter)
