"""`GET /health` and the JSON 404 for paths outside the gateway's URL scheme."""

from __future__ import annotations

from aiohttp import web

from switchpoint.errors import NotFound
from switchpoint.formats import cloudflare
from switchpoint.surfaces.common import JSON, RUNTIME

_OK = b'{"status":"ok"}'


async def health(request: web.Request) -> web.Response:
    return web.Response(body=_OK, content_type=JSON)


async def not_found(request: web.Request) -> web.Response:
    err = NotFound(
        f"No route for {request.method} {request.path}; gateway paths start with /v1/{{account}}/{{gateway}}/"
    )
    return web.Response(status=404, body=cloudflare.error_body(404, None, err.message), content_type=JSON)


async def metrics(request: web.Request) -> web.Response:
    """Prometheus exposition of this worker's metrics (or all workers' in multiprocess mode)."""
    body, content_type = request.app[RUNTIME].metrics.render()
    return web.Response(body=body, headers={"Content-Type": content_type})
