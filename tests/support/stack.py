"""A whole gateway for tests: the fake upstreams and Switchpoint served from one background-thread loop.

Sync and async SDK clients alike reach it over real loopback sockets; tests read the log store the
gateway writes and mint tokens and keys in it the way the CLI does.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import uvloop
from aiohttp import web

from switchpoint import auth
from switchpoint.app import build_app
from switchpoint.config import load_config
from switchpoint.store import db, repo
from switchpoint.store.secrets import Sealer, load_master_key
from tests.support.served import log_rows
from tests.upstreams.server import Upstreams, start_upstreams

ACCOUNT = "acct"
ADMIN_TOKEN = "admin-token-for-tests-0123456789"
MAX_BODY = 256 * 1024


def gateway_config(ups: Upstreams, data_dir: Path) -> dict[str, Any]:
    """Several gateways, each set up for one family of tests; providers point at the fakes."""
    openai_origin = ups.origins["openai"]
    return {
        "data_dir": str(data_dir),
        "admin_token": ADMIN_TOKEN,
        "providers": {
            "openai": {"base_url": ups.openai_base},
            "groq": {"base_url": ups.openai_base},
            "moonshot": {"base_url": ups.openai_base},
            "anthropic": {"base_url": ups.anthropic_base + "/v1"},
            "workers-ai": {"base_url": ups.workers_ai_base},
        },
        "custom_providers": {
            "acme": {"base_url": openai_origin, "compat_path": "/v1/chat/completions"},
            "dead": {"base_url": "http://127.0.0.1:9"},
        },
        "gateways": {
            "default": {},
            "secure": {"authentication": True},
            "retrying": {"retries": {"max_attempts": 3, "delay_ms": 20, "backoff": "exponential"}},
            "quiet": {"collect_logs": False},
            "pinned": {"account_id": "acct-pinned"},
            "hasty": {"request_timeout_ms": 300},
            "cached": {"cache_ttl": 300},
            "limited": {"rate_limit": {"limit": 3, "window": 3600, "technique": "fixed"}},
            "per_user": {"rate_limit": {"limit": 2, "window": 3600, "key": "metadata.user"}},
            "budget": {"spend_limits": [{"id": "tiny", "limit": 0.025, "window": 3600, "technique": "fixed"}]},
            "budget_universal": {"spend_limits": [{"id": "u", "limit": 0.03, "window": 3600, "technique": "fixed"}]},
            "routed_budget": {"spend_limits": [{"id": "whole", "limit": 0.025, "window": 3600, "technique": "fixed"}]},
        },
        "server": {"max_body_bytes": MAX_BODY, "idle_timeout_ms": 1500, "connect_timeout_ms": 1000},
    }


class GatewayStack:
    """Start with `start()`, stop with `stop()`; `url(gateway, path)` builds gateway URLs."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.loop = uvloop.new_event_loop()  # what `switchpoint serve` runs on
        self._thread = threading.Thread(target=self.loop.run_forever, name="gateway-stack", daemon=True)
        self.upstreams: Upstreams | None = None
        self._runner: web.AppRunner | None = None
        self.origin = ""

    def start(self) -> GatewayStack:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(timeout=30)
        return self

    async def _start(self) -> None:
        self.upstreams = await start_upstreams()
        path = self.data_dir / "switchpoint.json"
        path.write_bytes(orjson.dumps(gateway_config(self.upstreams, self.data_dir)))
        self.config = load_config(path)
        self._runner = web.AppRunner(build_app(self.config), access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.origin = f"http://{host}:{port}"

    def stop(self) -> None:
        async def _stop() -> None:
            if self._runner is not None:
                await self._runner.cleanup()
            if self.upstreams is not None:
                await self.upstreams.close()

        asyncio.run_coroutine_threadsafe(_stop(), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()

    @property
    def ups(self) -> Upstreams:
        assert self.upstreams is not None
        return self.upstreams

    def url(self, gateway: str = "default", path: str = "", account: str = ACCOUNT) -> str:
        return f"{self.origin}/v1/{account}/{gateway}{'/' + path if path else ''}"

    # -- the store, as the CLI sees it -------------------------------------------------------------

    def _engine(self) -> Any:
        return db.sync_engine(db.StoreUrls.resolve(None, self.data_dir))

    def create_token(self, gateway: str) -> tuple[str, str]:
        """(token_id, plaintext), visible to the running gateway within its poll interval."""
        minted = auth.mint_token()
        engine = self._engine()
        try:
            repo.insert_token(engine, minted.token_id, gateway, "test", minted.secret_hash)
        finally:
            engine.dispose()
        return minted.token_id, minted.plaintext

    def revoke_token(self, token_id: str) -> None:
        engine = self._engine()
        try:
            repo.revoke_token(engine, token_id)
        finally:
            engine.dispose()

    def set_key(self, provider: str, key: str, alias: str = "default", gateway: str = "default") -> None:
        engine = self._engine()
        try:
            repo.set_key(engine, Sealer(load_master_key(self.data_dir)), gateway, provider, alias, key)
        finally:
            engine.dispose()

    def runtime(self) -> Any:
        """The running gateway's Runtime (prices, registry, metrics), for tests that compute expectations."""
        from switchpoint.surfaces.common import RUNTIME

        assert self._runner is not None
        return self._runner.app[RUNTIME]

    def wait_for_snapshot(self, predicate: Any, timeout: float = 1.0) -> float:
        """Seconds until the running gateway's credentials satisfy `predicate` (fails after `timeout`)."""
        from switchpoint.surfaces.common import RUNTIME

        assert self._runner is not None
        runtime = self._runner.app[RUNTIME]
        start = time.monotonic()
        while not predicate(runtime.snapshot):
            if time.monotonic() - start > timeout:
                raise AssertionError(f"gateway did not pick up the change within {timeout} s")
            time.sleep(0.02)
        return time.monotonic() - start

    # -- the log store -----------------------------------------------------------------------------

    def log_record(self, log_id: str, timeout: float = 5.0) -> dict[str, Any]:
        """The stored record for `log_id`, waiting for the batched writer to flush it."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.log_rows("id = ?", (log_id,))
            if rows:
                return rows[0]
            if time.monotonic() > deadline:
                raise AssertionError(f"log record {log_id} was not written within {timeout} s")
            time.sleep(0.05)

    def log_rows(self, where: str = "1=1", params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        return log_rows(self.data_dir, where, params)
