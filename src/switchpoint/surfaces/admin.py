"""The dynamic-routes management API, shaped like Cloudflare's
(`/client/v4/accounts/{account}/ai-gateway/gateways/{gateway}/routes...`), behind the admin token.

Handlers validate with `routing.compile` and persist through the `RouteStore` set under `ROUTE_STORE` (the
store's `AsyncRouteRepo`); routes declared in the YAML config are listed too, read-only. Bodies use the v4
envelope; a bad route is a 400 whose errors carry code 7001 and the JSON `path` of each bad field. Of the
runtime (`RUNTIME`) only `config` and `registry` are read.
"""

from __future__ import annotations

import datetime
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from aiohttp import web

from switchpoint import auth
from switchpoint.errors import Unauthorized, UnknownGateway
from switchpoint.exchange import Runtime
from switchpoint.routing.compile import CompiledRoute, compile_route
from switchpoint.routing.conditions import RouteRequest
from switchpoint.routing.evaluate import LimitPeek
from switchpoint.routing.explain import explain
from switchpoint.routing.schema import (
    CONFIG_PREFIX,
    DeploymentRecord,
    RouteConflict,
    RouteInvalid,
    RouteRecord,
    VersionRecord,
    check_name,
    config_route,
    config_routes,
    parse_route,
)
from switchpoint.surfaces.common import JSON, RUNTIME, resolve_gateway

PREFIX = "/client/v4/accounts/{account}/ai-gateway/gateways/{gateway}/routes"
VALIDATION_CODE = 7001
NOT_FOUND_CODE = 7404
CONFLICT_CODE = 7409
AUTH_CODE = 10000
UNKNOWN_GATEWAY_CODE = 2001
MAX_PER_PAGE = 100

Elements = list[dict[str, Any]]


class RouteStore(Protocol):
    """What the admin API needs from the store (implemented by `store.routes.AsyncRouteRepo`). Lookups are
    scoped to a gateway; None means "no such route (or version) there". Name clashes raise `RouteConflict`."""

    async def list_routes(self, gateway: str) -> list[RouteRecord]: ...
    async def get_route(self, gateway: str, route_id: str) -> RouteRecord | None: ...
    async def create_route(
        self, gateway: str, name: str, elements: Elements, comment: str | None = None
    ) -> RouteRecord: ...
    async def rename_route(self, gateway: str, route_id: str, name: str) -> RouteRecord | None: ...
    async def delete_route(self, gateway: str, route_id: str) -> RouteRecord | None: ...
    async def list_versions(self, gateway: str, route_id: str) -> list[VersionRecord] | None: ...
    async def get_version(self, gateway: str, route_id: str, version_id: str) -> VersionRecord | None: ...
    async def add_version(
        self, gateway: str, route_id: str, elements: Elements, comment: str | None = None
    ) -> VersionRecord | None: ...
    async def list_deployments(self, gateway: str, route_id: str) -> list[DeploymentRecord] | None: ...
    async def deploy(
        self, gateway: str, route_id: str, version_id: str, comment: str | None = None
    ) -> DeploymentRecord | None: ...


ROUTE_STORE: web.AppKey[RouteStore] = web.AppKey("route_store")
# Optional: the limiter the gateway's routes consume from, so `explain` can peek at live counters.
ROUTE_LIMITER: web.AppKey[LimitPeek] = web.AppKey("route_limiter")


class _ApiError(Exception):
    def __init__(self, status: int, code: int, message: str, path: list[str | int] | None = None) -> None:
        super().__init__(message)
        error: dict[str, Any] = {"code": code, "message": message}
        if path is not None:
            error["path"] = path
        self.status, self.errors = status, [error]


def _respond(status: int = 200, errors: list[dict[str, Any]] | None = None, **fields: Any) -> web.Response:
    body = {"success": status < 400, **fields, "errors": errors or [], "messages": []}
    return web.Response(status=status, body=orjson.dumps(body), content_type=JSON)


def _invalid(exc: RouteInvalid) -> web.Response:
    errors = [{"code": VALIDATION_CODE, "message": str(p), "path": ["body", *p.path]} for p in exc.problems]
    return _respond(400, result=None, errors=errors)


def _iso(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _version_json(v: VersionRecord) -> dict[str, Any]:
    data = orjson.dumps(v.elements).decode()
    return {"version_id": v.version_id, "active": "true" if v.active else "false", "created_at": _iso(v.created_at),
            "data": data, "comment": v.comment, "number": v.number, "is_valid": True}  # fmt: skip


def _deployment_json(d: DeploymentRecord) -> dict[str, Any]:
    return {"deployment_id": d.deployment_id, "version_id": d.version_id, "created_at": _iso(d.created_at),
            "comment": d.comment}  # fmt: skip


def _route_json(r: RouteRecord, account: str) -> dict[str, Any]:
    return {
        "id": r.id, "account_tag": account, "name": r.name, "gateway_id": r.gateway,
        "created_at": _iso(r.created_at), "modified_at": _iso(r.modified_at),
        "elements": r.version.elements if r.version else [],
        "deployment": _deployment_json(r.deployment) if r.deployment else None,
        "version": _version_json(r.version) if r.version else None,
        "read_only": r.read_only,
    }  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Ctx:
    runtime: Runtime
    account: str
    gateway: str
    store: RouteStore

    async def route(self, route_id: str) -> RouteRecord:
        """A stored route, or one declared in the config (id `config-{name}`); 404 otherwise."""
        name = route_id.removeprefix(CONFIG_PREFIX)
        if route_id.startswith(CONFIG_PREFIX) and name in self.runtime.config.routes:
            return config_route(name, self.runtime.config.routes[name], self.gateway)
        found = await self.store.get_route(self.gateway, route_id)
        if found is None:
            raise _ApiError(404, NOT_FOUND_CODE, f"Route '{route_id}' not found on gateway '{self.gateway}'")
        return found

    async def writable(self, route_id: str) -> RouteRecord:
        route = await self.route(route_id)
        if route.read_only:
            message = f"Route '{route.name}' is declared in the config file and is read-only; change it there"
            raise _ApiError(409, CONFLICT_CODE, message)
        return route

    def compile(self, name: Any, elements: Any) -> tuple[CompiledRoute, Elements]:
        """Validate against this gateway's providers; returns the compiled route and the normalized elements."""
        compiled = compile_route(name, {"elements": elements}, self.runtime.registry, gateway=self.gateway)
        return compiled, parse_route({"elements": elements}).elements_json()

    def json(self, r: RouteRecord) -> dict[str, Any]:
        return _route_json(r, self.account)


Handler = Callable[[web.Request, _Ctx], Awaitable[web.Response]]


def _endpoint(handler: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
    """Authenticate, resolve the gateway, and map every failure to the v4 envelope."""

    async def endpoint(request: web.Request) -> web.Response:
        runtime = request.app[RUNTIME]
        try:
            auth.check_admin(runtime.config.admin_token, request.headers.get("Authorization"))
            account, gateway = request.match_info["account"], request.match_info["gateway"]
            resolve_gateway(runtime, account, gateway)
            return await handler(request, _Ctx(runtime, account, gateway, request.app[ROUTE_STORE]))
        except _ApiError as exc:
            return _respond(exc.status, result=None, errors=exc.errors)
        except RouteInvalid as exc:
            return _invalid(exc)
        except RouteConflict as exc:
            return _respond(409, result=None, errors=[{"code": CONFLICT_CODE, "message": str(exc)}])
        except Unauthorized as exc:
            return _respond(401, result=None, errors=[{"code": AUTH_CODE, "message": exc.message}])
        except UnknownGateway as exc:
            return _respond(404, result=None, errors=[{"code": UNKNOWN_GATEWAY_CODE, "message": exc.message}])

    endpoint.__name__ = handler.__name__
    return endpoint


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        value = orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        raise _ApiError(400, VALIDATION_CODE, f"body is not valid JSON: {exc}", ["body"]) from None
    if not isinstance(value, dict):
        raise _ApiError(400, VALIDATION_CODE, "body must be a JSON object", ["body"])
    return value


def _string(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise _ApiError(400, VALIDATION_CODE, f"Required: '{key}' (a string)", ["body", key])
    return value


def _listing(request: web.Request, key: str, items: list[dict[str, Any]]) -> web.Response:
    """`data: {<key>: [...], page, per_page, order_by, order_by_direction}`, newest first."""
    try:
        page, per_page = int(request.query.get("page", "1")), int(request.query.get("per_page", "20"))
    except ValueError:
        raise _ApiError(400, VALIDATION_CODE, "page and per_page must be integers", ["query"]) from None
    if page < 1 or not 1 <= per_page <= MAX_PER_PAGE:
        raise _ApiError(400, VALIDATION_CODE, f"page >= 1 and 1 <= per_page <= {MAX_PER_PAGE}", ["query"])
    chunk = items[(page - 1) * per_page : page * per_page]
    data = {key: chunk, "page": page, "per_page": per_page, "order_by": "created_at", "order_by_direction": "desc"}
    return _respond(data=data)


# -- handlers -----------------------------------------------------------------------------------------------


async def list_routes(request: web.Request, ctx: _Ctx) -> web.Response:
    stored = sorted(await ctx.store.list_routes(ctx.gateway), key=lambda r: r.created_at, reverse=True)
    declared = config_routes(ctx.runtime.config, ctx.gateway)
    return _listing(request, "routes", [ctx.json(r) for r in [*declared, *stored]])


async def create_route(request: web.Request, ctx: _Ctx) -> web.Response:
    """Validate, store version 1 and deploy it (as Cloudflare does for a route created through the API)."""
    body = await _body(request)
    name = body.get("name")
    if isinstance(name, str) and name in ctx.runtime.config.routes:
        raise RouteConflict(f"a route named '{name}' is declared in the config file")
    _, elements = ctx.compile(name, body.get("elements"))  # a missing or bad name is one of the problems
    route = await ctx.store.create_route(ctx.gateway, str(name), elements, _comment(body))
    return _respond(result=ctx.json(route))


async def get_route(request: web.Request, ctx: _Ctx) -> web.Response:
    return _respond(result=ctx.json(await ctx.route(request.match_info["route_id"])))


async def rename_route(request: web.Request, ctx: _Ctx) -> web.Response:
    """PATCH renames only; the SDK reads the route from `route`, other clients from `result`."""
    route = await ctx.writable(request.match_info["route_id"])
    name = _string(await _body(request), "name")
    if (problem := check_name(name)) is not None:
        raise _ApiError(400, VALIDATION_CODE, problem.message, ["body", "name"])
    if name in ctx.runtime.config.routes:
        raise RouteConflict(f"a route named '{name}' is declared in the config file")
    renamed = await ctx.store.rename_route(ctx.gateway, route.id, name)
    if renamed is None:
        raise _ApiError(404, NOT_FOUND_CODE, f"Route '{route.id}' not found on gateway '{ctx.gateway}'")
    return _respond(result=ctx.json(renamed), route=ctx.json(renamed))


async def delete_route(request: web.Request, ctx: _Ctx) -> web.Response:
    route = await ctx.writable(request.match_info["route_id"])
    deleted = await ctx.store.delete_route(ctx.gateway, route.id)
    return _respond(result=ctx.json(deleted or route))


async def list_versions(request: web.Request, ctx: _Ctx) -> web.Response:
    route = await ctx.route(request.match_info["route_id"])
    versions = [route.version] if route.read_only and route.version else None
    versions = versions or await ctx.store.list_versions(ctx.gateway, route.id) or []
    return _listing(request, "versions", [_version_json(v) for v in versions])


async def create_version(request: web.Request, ctx: _Ctx) -> web.Response:
    """A new version, not deployed; `version` in the result is the new one (deploy it by its `version_id`)."""
    route = await ctx.writable(request.match_info["route_id"])
    body = await _body(request)
    _, elements = ctx.compile(route.name, body.get("elements"))
    version = await ctx.store.add_version(ctx.gateway, route.id, elements, _comment(body))
    updated = await ctx.route(route.id)
    if version is None:
        raise _ApiError(404, NOT_FOUND_CODE, f"Route '{route.id}' not found on gateway '{ctx.gateway}'")
    return _respond(result={**ctx.json(updated), "elements": version.elements, "version": _version_json(version)})


async def _version(ctx: _Ctx, route: RouteRecord, version_id: str) -> VersionRecord:
    if route.read_only:
        found = route.version if route.version and route.version.version_id == version_id else None
    else:
        found = await ctx.store.get_version(ctx.gateway, route.id, version_id)
    if found is None:
        raise _ApiError(404, NOT_FOUND_CODE, f"Version '{version_id}' of route '{route.name}' not found")
    return found


async def get_version(request: web.Request, ctx: _Ctx) -> web.Response:
    route = await ctx.route(request.match_info["route_id"])
    version = await _version(ctx, route, request.match_info["version_id"])
    result = {**ctx.json(route), **_version_json(version), "elements": version.elements}
    return _respond(result={k: v for k, v in result.items() if k not in ("deployment", "version")})


async def list_deployments(request: web.Request, ctx: _Ctx) -> web.Response:
    route = await ctx.route(request.match_info["route_id"])
    deployments = [route.deployment] if route.read_only and route.deployment else None
    deployments = deployments or await ctx.store.list_deployments(ctx.gateway, route.id) or []
    return _listing(request, "deployments", [_deployment_json(d) for d in deployments])


async def create_deployment(request: web.Request, ctx: _Ctx) -> web.Response:
    """Make a stored version live (rollback = deploy an older one). It is re-validated first: providers in
    the config may have changed since it was saved."""
    route = await ctx.writable(request.match_info["route_id"])
    body = await _body(request)
    version = await _version(ctx, route, _string(body, "version_id"))
    ctx.compile(route.name, version.elements)
    deployment = await ctx.store.deploy(ctx.gateway, route.id, version.version_id, _comment(body))
    if deployment is None:
        raise _ApiError(404, NOT_FOUND_CODE, f"Version '{version.version_id}' of route '{route.name}' not found")
    updated = await ctx.route(route.id)
    return _respond(result={**ctx.json(updated), "deployment": _deployment_json(deployment)})


async def explain_route(request: web.Request, ctx: _Ctx) -> web.Response:
    """`{metadata, headers, body, version_id?}` → the path a request would take, without calling a model."""
    route = await ctx.route(request.match_info["route_id"])
    body = await _body(request)
    parts = {key: {} if body.get(key) is None else body[key] for key in ("metadata", "headers", "body")}
    for key, value in parts.items():
        if not isinstance(value, dict):
            raise _ApiError(400, VALIDATION_CODE, f"'{key}' must be an object", ["body", key])
    version_id = body.get("version_id")
    version = await _version(ctx, route, version_id) if isinstance(version_id, str) else route.version
    if version is None:
        raise _ApiError(409, CONFLICT_CODE, f"Route '{route.name}' has no deployed version; pass version_id")
    compiled, _ = ctx.compile(route.name, version.elements)
    peek = request.app.get(ROUTE_LIMITER)
    steps = await explain(compiled, RouteRequest.build(parts["metadata"], parts["headers"], parts["body"]), peek)
    model = next((s for s in reversed(steps) if s.type == "model"), None)
    result = {"route_id": route.id, "name": route.name, "version_id": version.version_id,
              "path": [s.element_id for s in steps], "model_element": model.element_id if model else None,
              "limits_checked": peek is not None, "steps": [s.as_json() for s in steps]}  # fmt: skip
    return _respond(result=result)


def _comment(body: dict[str, Any]) -> str | None:
    comment = body.get("comment")
    return comment if isinstance(comment, str) else None


_R = PREFIX + "/{route_id}"
ADMIN_ROUTES: list[tuple[str, str, Callable[[web.Request], Awaitable[web.Response]]]] = [
    ("GET", PREFIX, _endpoint(list_routes)),
    ("POST", PREFIX, _endpoint(create_route)),
    ("GET", _R, _endpoint(get_route)),
    ("PATCH", _R, _endpoint(rename_route)),
    ("DELETE", _R, _endpoint(delete_route)),
    ("GET", _R + "/versions", _endpoint(list_versions)),
    ("POST", _R + "/versions", _endpoint(create_version)),
    ("GET", _R + "/versions/{version_id}", _endpoint(get_version)),
    ("GET", _R + "/deployments", _endpoint(list_deployments)),
    ("POST", _R + "/deployments", _endpoint(create_deployment)),
    ("POST", _R + "/explain", _endpoint(explain_route)),
]
