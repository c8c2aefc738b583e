"""Composition root: the route table, one cleanup context per resource, and the process runner. No logic.

Start-up order is list order and shutdown the reverse, so the log writer drains before the engine closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import multiprocessing
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from switchpoint import analytics, auth
from switchpoint.cache import ResponseCache
from switchpoint.config import Config, ConfigError, ConfigProblem
from switchpoint.exchange import Runtime
from switchpoint.limits import Limits, RouteLimiter
from switchpoint.observability import Metrics, reset_multiprocess_dir
from switchpoint.pricing import PriceBook
from switchpoint.providers.registry import build_registry
from switchpoint.routing.compile import RouteTable, compile_route
from switchpoint.routing.schema import RouteInvalid
from switchpoint.state import StateBackend, open_state
from switchpoint.store import db, repo
from switchpoint.store import routes as route_store
from switchpoint.store.logwriter import LogWriter
from switchpoint.store.retention import LogRetention, RetentionKeeper
from switchpoint.store.secrets import Sealer, load_master_key
from switchpoint.surfaces import admin, anthropic_ingress, compat, health, logs_api, passthrough, universal
from switchpoint.surfaces.common import RUNTIME
from switchpoint.upstream import Upstream

log = logging.getLogger("switchpoint")

CONFIG = web.AppKey("config", Config)
ENGINE = web.AppKey("engine", AsyncEngine)
SEALER = web.AppKey("sealer", Sealer)
UPSTREAM = web.AppKey("upstream", Upstream)
LOG_WRITER = web.AppKey("log_writer", LogWriter)
WORKER_INDEX = web.AppKey("worker_index", int)
STATE = web.AppKey("state", StateBackend)
# Tokens and keys changed by the CLI reach every worker within this many seconds.
SNAPSHOT_POLL_S = 0.5

G = "/v1/{account}/{gateway}"
ROUTES: list[tuple[str, str, Callable[[web.Request], object]]] = [
    ("GET", "/health", health.health),
    ("GET", "/metrics", health.metrics),
    ("*", G + "/compat/chat/completions", compat.chat),
    ("*", G + "/compat/embeddings", compat.embeddings),
    ("*", G + "/compat/v1/messages", anthropic_ingress.messages),
    ("*", G + "/compat/{rest:.*}", compat.unknown),
    ("*", G, universal.handle),
    ("*", G + "/", universal.handle),
    ("*", G + "/{provider}/{rest:.*}", passthrough.handle),
    *admin.ADMIN_ROUTES,
    *logs_api.LOGS_ROUTES,
    ("*", "/{rest:.*}", health.not_found),
]


async def store_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    urls = db.StoreUrls.resolve(config.database_url, config.data_dir)
    await asyncio.to_thread(db.migrate, urls)
    app[ENGINE] = db.async_engine(urls)
    app[SEALER] = Sealer(load_master_key(config.data_dir))
    app[admin.ROUTE_STORE] = route_store.AsyncRouteRepo(app[ENGINE])
    app[logs_api.LOG_STORE] = analytics.SqlLogStore(app[ENGINE])
    yield
    await app[ENGINE].dispose()


async def upstream_ctx(app: web.Application) -> AsyncIterator[None]:
    server = app[CONFIG].server
    upstream = Upstream(server.upstream_pool_size, server.connect_timeout_ms, server.idle_timeout_ms)
    await upstream.start()
    app[UPSTREAM] = upstream
    yield
    await upstream.close()


async def log_writer_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    spool = Path(config.data_dir) / "spool" / f"logs-worker-{app[WORKER_INDEX]}.ndjson"
    keeper = _retention(app)
    # Small, frequent batches: a flush shares the worker's core, and a short one delays fewer calls.
    writer = LogWriter(
        app[ENGINE], spool, queue_size=config.server.log_queue_size, batch_size=256, flush_interval=0.05,
        capacity=keeper,
    )  # fmt: skip
    await writer.start()
    app[LOG_WRITER] = writer
    task = asyncio.create_task(keeper.run()) if keeper is not None else None
    yield
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await writer.close()


def _retention(app: web.Application) -> RetentionKeeper | None:
    logs = app[CONFIG].logs
    if logs.retention_days is None and logs.max_records is None:
        return None
    max_age = logs.retention_days * 86400 if logs.retention_days is not None else None
    policy = LogRetention(max_age_s=max_age, max_records=logs.max_records, strategy=logs.strategy)
    return RetentionKeeper(app[ENGINE], policy, deletes=app[WORKER_INDEX] == 0)  # one worker deletes


async def runtime_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    writer = app[LOG_WRITER]
    metrics = Metrics(lambda: writer.counters)
    state = app[STATE]
    limits = Limits(state, config.state.fail_open)
    limiter = RouteLimiter(limits)
    cache = ResponseCache(state, config.server.cache_max_entry_bytes)
    metrics.state.source = lambda: {**limits.failures, "cache": cache.failures}
    registry = build_registry(config)
    runtime = Runtime(
        config, registry, app[UPSTREAM], writer.submit, PriceBook(config.prices), metrics, limiter, limits, cache
    )
    runtime.snapshot = await _load_snapshot(app)
    runtime.routes = await _load_routes(app, runtime)
    app[RUNTIME] = runtime
    app[admin.ROUTE_LIMITER] = limiter
    task = asyncio.create_task(_refresh_snapshot(app, runtime))
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await cache.aclose()  # cache writes still running finish before the state they write to closes


async def state_ctx(app: web.Application) -> AsyncIterator[None]:
    """Counters and cache entries: this process's memory, or Redis shared by every worker and machine."""
    state = open_state(app[CONFIG])
    app[STATE] = state
    yield
    await state.aclose()


async def _load_snapshot(app: web.Application) -> auth.Snapshot:
    rows = await repo.load_credentials(app[ENGINE], app[SEALER])
    return auth.build_snapshot(rows.version, rows.tokens, rows.keys)


async def _load_routes(app: web.Application, runtime: Runtime) -> RouteTable:
    table = await route_store.load_route_table(app[ENGINE], runtime.config, runtime.registry)
    for problem in table.problems:
        log.error("dynamic route left out: %s", problem)
    return table


async def _refresh_snapshot(app: web.Application, runtime: Runtime) -> None:
    """Poll two counters; reload credentials or routes when the CLI or admin API changed them.

    A call in flight keeps the objects it started with; a failed poll keeps the current ones.
    """
    while True:
        await asyncio.sleep(SNAPSHOT_POLL_S)
        try:
            if await repo.credentials_version(app[ENGINE]) != runtime.snapshot.version:
                runtime.snapshot = await _load_snapshot(app)
            if await route_store.routes_version(app[ENGINE]) != runtime.routes.version:
                runtime.routes = await _load_routes(app, runtime)
        except Exception:  # the store being briefly unavailable must not stop the gateway
            log.warning("could not refresh credentials or routes; keeping the current ones", exc_info=True)


def check_config(config: Config, source: str) -> None:
    """Problems only the domain modules can see (prices, routes); raised like the config's own, for exit 2."""
    problems: list[ConfigProblem] = []
    try:
        PriceBook(config.prices)
    except ValueError as exc:
        problems.append(ConfigProblem("prices", None, str(exc)))
    registry = build_registry(config)
    for name, doc in config.routes.items():
        try:
            compile_route(name, doc, registry)
        except RouteInvalid as exc:
            problems += [
                ConfigProblem(f"routes.{name}", None, f"{p.element_id}.{p.field}: {p.message}") for p in exc.problems
            ]
    if problems:
        raise ConfigError(source, problems)


def build_app(config: Config, worker_index: int = 0) -> web.Application:
    app = web.Application(client_max_size=config.server.max_body_bytes, handler_args={"tcp_keepalive": True})
    app[CONFIG] = config
    app[WORKER_INDEX] = worker_index
    app.cleanup_ctx.extend([store_ctx, upstream_ctx, log_writer_ctx, state_ctx, runtime_ctx])
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)  # type: ignore[arg-type]
    return app


async def serve_forever(config: Config, host: str, port: int, worker_index: int = 0) -> None:
    runner = web.AppRunner(build_app(config, worker_index), access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_port=True, backlog=4096)
    await site.start()
    # Start-up objects (modules, config, SQLAlchemy metadata) live forever: keep them out of every GC pass,
    # or full collections walk them all and stall streams for tens of milliseconds.
    gc.collect()
    gc.freeze()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("worker %d (pid %d) listening on http://%s:%d", worker_index, os.getpid(), host, port)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def _worker(config: Config, host: str, port: int, worker_index: int) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # uvloop is optional on platforms without it
        pass
    asyncio.run(serve_forever(config, host, port, worker_index))


def _warn_per_worker_state(config: Config, workers: int) -> None:
    """Without Redis each worker counts on its own, so a limit admits up to `workers` times its value."""
    if config.redis_url:
        return
    used = [
        feature
        for feature, on in (
            ("rate limits", any(g.rate_limit is not None for g in config.gateways.values())),
            ("spend limits", any(g.spend_limits for g in config.gateways.values())),
            ("the response cache", any(g.cache_ttl for g in config.gateways.values())),
        )
        if on
    ]
    if used:
        log.warning(
            "%s configured with --workers %d and no redis_url: each worker keeps its own counters and cache, "
            "so a limit admits up to %dx its value; set redis_url to share them",
            " and ".join(used).capitalize(), workers, workers,
        )  # fmt: skip


def run(config: Config, host: str, port: int, workers: int = 1) -> None:
    """Serve in this process, or in `workers` forked processes sharing the port through SO_REUSEPORT."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    db.migrate(db.StoreUrls.resolve(config.database_url, config.data_dir))
    load_master_key(config.data_dir)  # create the key file once, before workers race to do it
    if workers <= 1:
        _worker(config, host, port, 0)
        return
    _warn_per_worker_state(config, workers)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        reset_multiprocess_dir()  # workers then share one set of metric files; /metrics sums them
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_worker, args=(config, host, port, i), daemon=False) for i in range(workers)]
    for proc in procs:
        proc.start()

    def forward(signum: int, _frame: object) -> None:
        for proc in procs:
            if proc.pid is not None and proc.is_alive():
                os.kill(proc.pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for proc in procs:
        proc.join()
    sys.exit(max((p.exitcode or 0) for p in procs))
