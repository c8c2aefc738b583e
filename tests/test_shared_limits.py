"""Two `switchpoint serve` processes on one Redis: a count limit admits exactly N calls, the cache is shared.

This is the multi-replica promise of the caching-and-limits work, tested as operators run it.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.state.redis_support import SHARED_URL, _answers_ping, unavailable
from tests.test_serve import SWITCHPOINT, free_port, wait_healthy
from tests.upstreams.server import UpstreamsThread

LIMIT = 20


@pytest.fixture
def two_gateways(tmp_path: Path) -> Iterator[tuple[list[int], str]]:
    """Two processes with their own data dirs, sharing a rate limit and a cache through Redis."""
    if not _answers_ping(6379):
        unavailable("no Redis on 127.0.0.1:6379")
    gateway = f"shared-{secrets.token_hex(4)}"  # fresh buckets on every run
    with UpstreamsThread() as ups:
        procs, ports = [], []
        for index in range(2):
            config = tmp_path / f"gw{index}.yaml"
            config.write_text(
                f"data_dir: {tmp_path / f'data{index}'}\nredis_url: {SHARED_URL}\n"
                f"providers:\n  openai: {{base_url: '{ups.openai_base}'}}\n"
                f"gateways:\n  {gateway}:\n    rate_limit: {{limit: {LIMIT}, window: 3600, technique: fixed}}\n"
                "    cache_ttl: 300\n"
            )
            port = free_port()
            procs.append(
                subprocess.Popen(
                    [*SWITCHPOINT, "serve", "--config", str(config), "--port", str(port)], stderr=subprocess.PIPE
                )
            )
            ports.append(port)
        try:
            for port, proc in zip(ports, procs, strict=True):
                wait_healthy(port, proc)
            yield ports, gateway
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
                proc.communicate(timeout=20)


async def _fire(ports: list[int], gateway: str, n: int, model: str, distinct: bool) -> list[int]:
    async with aiohttp.ClientSession() as session:

        async def one(i: int) -> int:
            url = f"http://127.0.0.1:{ports[i % 2]}/v1/acct/{gateway}/compat/chat/completions"
            content = f"hi {i}" if distinct else "same question"
            body = {"model": f"openai/{model}", "messages": [{"role": "user", "content": content}]}
            async with session.post(url, json=body, headers={"authorization": "Bearer sk-x"}) as response:
                await response.read()
                return response.status

        return await asyncio.gather(*(one(i) for i in range(n)))


def test_a_count_limit_holds_exactly_across_two_processes(two_gateways: tuple[list[int], str]) -> None:
    ports, gateway = two_gateways
    statuses = asyncio.run(_fire(ports, gateway, 3 * LIMIT, "gpt-shared-limit", distinct=True))
    assert statuses.count(200) == LIMIT
    assert statuses.count(429) == 2 * LIMIT
