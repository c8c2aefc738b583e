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

from switchpoint import auth
from switchpoint.config import Config
from switchpoint.exchange import Runtime
from switchpoint.providers.registry import build_registry
from switchpoint.store import db, repo
from switchpoint.store.logwriter import LogWriter
from switchpoint.store.secrets import Sealer, load_master_key
from switchpoint.surfaces import anthropic_ingress, compat, health, passthrough, universal
from switchpoint.surfaces.common import RUNTIME
from switchpoint.upstream import Upstream

log = logging.getLogger("switchpoint")

CONFIG = web.AppKey("config", Config)
ENGINE = web.AppKey("engine", AsyncEngine)
SEALER = web.AppKey("sealer", Sealer)
UPSTREAM = web.AppKey("upstream", Upstream)
LOG_WRITER = web.AppKey("log_writer", LogWriter)
WORKER_INDEX = web.AppKey("worker_index", int)
# Tokens and keys changed by the CLI reach every worker within this many seconds.
SNAPSHOT_POLL_S = 0.5

G = "/v1/{account}/{gateway}"
ROUTES: list[tuple[str, str, Callable[[web.Request], object]]] = [
    ("GET", "/health", health.health),
    ("*", G + "/compat/chat/completions", compat.chat),
    ("*", G + "/compat/embeddings", compat.embeddings),
    ("*", G + "/compat/v1/messages", anthropic_ingress.messages),
    ("*", G + "/compat/{rest:.*}", compat.unknown),
    ("*", G, universal.handle),
    ("*", G + "/", universal.handle),
    ("*", G + "/{provider}/{rest:.*}", passthrough.handle),
    ("*", "/{rest:.*}", health.not_found),
]


async def store_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    urls = db.StoreUrls.resolve(config.database_url, config.data_dir)
    await asyncio.to_thread(db.migrate, urls)
    app[ENGINE] = db.async_engine(urls)
    app[SEALER] = Sealer(load_master_key(config.data_dir))
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
    writer = LogWriter(app[ENGINE], spool, queue_size=config.server.log_queue_size)
    await writer.start()
    app[LOG_WRITER] = writer
    yield
    await writer.close()


async def runtime_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    runtime = Runtime(config, build_registry(config), app[UPSTREAM], app[LOG_WRITER].submit)
    runtime.snapshot = await _load_snapshot(app)
    app[RUNTIME] = runtime
    task = asyncio.create_task(_refresh_snapshot(app, runtime))
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _load_snapshot(app: web.Application) -> auth.Snapshot:
    rows = await repo.load_credentials(app[ENGINE], app[SEALER])
    return auth.build_snapshot(rows.version, rows.tokens, rows.keys)


async def _refresh_snapshot(app: web.Application, runtime: Runtime) -> None:
    """Poll one row; reload tokens and keys when the CLI changed them. A failed poll keeps the old ones."""
    while True:
        await asyncio.sleep(SNAPSHOT_POLL_S)
        try:
            version = await repo.credentials_version(app[ENGINE])
            if version != runtime.snapshot.version:
                runtime.snapshot = await _load_snapshot(app)
        except Exception:  # the store being briefly unavailable must not stop the gateway
            log.warning("could not refresh credentials; keeping the current ones", exc_info=True)


def build_app(config: Config, worker_index: int = 0) -> web.Application:
    app = web.Application(client_max_size=config.server.max_body_bytes, handler_args={"tcp_keepalive": True})
    app[CONFIG] = config
    app[WORKER_INDEX] = worker_index
    app.cleanup_ctx.extend([store_ctx, upstream_ctx, log_writer_ctx, runtime_ctx])
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


def run(config: Config, host: str, port: int, workers: int = 1) -> None:
    """Serve in this process, or in `workers` forked processes sharing the port through SO_REUSEPORT."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    db.migrate(db.StoreUrls.resolve(config.database_url, config.data_dir))
    load_master_key(config.data_dir)  # create the key file once, before workers race to do it
    if workers <= 1:
        _worker(config, host, port, 0)
        return
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
