"""A spend limit under concurrent calls: reservations make it exact, and it never overspends by more than
the calls in flight could add beyond their reservations. In-process state and Redis alike.

Each test serves its own gateway (config below) on the test's event loop, over the fake upstreams, and
reads the spend back from the log records the gateway wrote.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from switchpoint.config import Config
from switchpoint.state.base import EPSILON
from tests.state.redis_support import delete_prefix, redis_url, state_url
from tests.support.served import log_rows, served
from tests.upstreams.server import Upstreams, start_upstreams

__all__ = ["redis_url", "state_url"]

LIMIT = 0.1
SLOW_MODEL = "slow-chunks-20"  # the fake answers in pieces 20 ms apart: every call is in flight at once


@asynccontextmanager
async def gateway(tmp_path: Path, state_url: str | None, rule: dict[str, Any]) -> AsyncIterator[tuple[str, Upstreams]]:
    """(URL of /compat/chat/completions on a fresh gateway with one spend rule, the fakes)."""
    ups = await start_upstreams()
    name = f"spend-{secrets.token_hex(4)}"  # fresh buckets on the shared Redis
    config = Config.model_validate(
        {
            "data_dir": str(tmp_path),
            "redis_url": state_url,
            "providers": {"openai": {"base_url": ups.openai_base}},
            "gateways": {name: {"spend_limits": [rule]}},
        }
    )
    try:
        async with served(config) as (origin, _):
            yield f"{origin}/v1/acct/{name}/compat/chat/completions", ups
    finally:  # served drains the log writer on the way out: every record is in the database after this
        await ups.close()
        if state_url is not None:
            await delete_prefix(state_url, f"sp:c:{rule.get('technique', 'sliding')}:{rule['window']}:sl:{name}:")


async def fire(
    url: str, n: int, headers: dict[str, str], content: str = "hi", in_flight: int | None = None
) -> list[tuple[int, Any]]:
    """`n` calls, at most `in_flight` at a time (all at once by default): (status, JSON body) each."""
    gate = asyncio.Semaphore(in_flight or n)
    body = orjson.dumps({"model": f"openai/{SLOW_MODEL}", "messages": [{"role": "user", "content": content}]})
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def one() -> tuple[int, Any]:
            async with (
                gate,
                session.post(url, data=body, headers={"content-type": "application/json", **headers}) as response,
            ):
                return response.status, await response.json()

        return await asyncio.gather(*(one() for _ in range(n)))


async def test_thirty_concurrent_calls_against_ten_calls_of_budget_admit_exactly_ten(
    tmp_path: Path, state_url: str | None
) -> None:
    rule = {"id": "cap", "limit": LIMIT, "window": 3600, "technique": "fixed"}
    async with gateway(tmp_path, state_url, rule) as (url, ups):
        answers = await fire(url, 30, {"authorization": "Bearer sk-x", "cf-aig-custom-cost": '{"total_cost": 0.01}'})
        sent = len(ups.requests_for("openai"))
    statuses = [status for status, _ in answers]
    assert statuses.count(200) == 10, statuses
    refused = [body["error"] for status, body in answers if status == 429]
    assert len(refused) == 20 and {err["code"] for err in refused} == {2041}, refused
    assert sent == 10  # the refused calls never reached the provider
    records = log_rows(tmp_path)
    assert len(records) == 30
    spent = sum(r["cost"] or 0.0 for r in records if r["status_code"] == 200)
    assert spent == pytest.approx(0.1) and spent <= LIMIT + EPSILON


async def test_overspend_is_bounded_by_the_calls_in_flight(tmp_path: Path, state_url: str | None) -> None:
    """Each call costs about twice what its reservation guessed (the guess counts ~4 request bytes a token;
    this prompt is a token every 2 bytes). Whatever got through, the spend beyond the limit is at most what
    the calls in flight together could add beyond their reservations, and a spent budget admits no more."""
    per_token = Decimal("0.0001")
    content = " ".join(["a"] * 150)
    rule = {"id": "cap", "limit": LIMIT, "window": 3600, "technique": "sliding"}
    headers = {
        "authorization": "Bearer sk-x",
        "cf-aig-custom-cost": f'{{"per_token_in": {per_token}, "per_token_out": 0}}',
    }
    body = orjson.dumps({"model": f"openai/{SLOW_MODEL}", "messages": [{"role": "user", "content": content}]})
    estimate = float(per_token * (len(body) // 4))  # what `reserve_budget` holds for one call
    in_flight = 4
    async with gateway(tmp_path, state_url, rule) as (url, _):
        answers = await fire(url, 24, headers, content, in_flight)
        await asyncio.sleep(0.1)  # let the last settlements land
        after = await fire(url, 3, headers, content)
    ok = [status for status, _ in answers].count(200)
    assert 0 < ok < 24
    assert [status for status, _ in after] == [429] * 3
    costs = [r["cost"] for r in log_rows(tmp_path) if r["status_code"] == 200]
    assert len(costs) == ok
    actual = max(costs)
    assert actual > 1.5 * estimate  # the premise: every call outspends its reservation
    assert sum(costs) > LIMIT  # so the budget does overspend...
    assert sum(costs) <= LIMIT + in_flight * (actual - estimate) + EPSILON  # ...by no more than the calls in flight
