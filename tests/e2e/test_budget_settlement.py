"""How spend limits settle calls whose cost the answer does not tell: failed calls give their reservation
back, streamed passthrough calls are charged their real cost (the gateway asks for usage and hides it),
and what still comes without usage (a stream cut off by the upstream or by the client) is charged an
estimate from the bytes relayed. In-process state and Redis alike.

Each test serves its own gateway over the fake upstreams on the test's event loop, with prices set in
the config so that every amount is exact in binary floats, and reads the rule's spend from the state.
"""

from __future__ import annotations

import asyncio
import secrets
import types
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from switchpoint.app import STATE
from switchpoint.config import Config
from switchpoint.state import Charge
from tests.state.redis_support import delete_prefix, redis_url, state_url
from tests.support.served import log_rows, served
from tests.upstreams import content as fake_content
from tests.upstreams import openai as fake_openai
from tests.upstreams import wire as fake_wire
from tests.upstreams.server import Upstreams, start_upstreams

__all__ = ["redis_url", "state_url"]

OUT = 2.0**-8  # USD per output token of the priced test models: 512 tokens (a reservation's guess) cost $2
CHEAP_OUT = 2.0**-10  # ... of the streamed model: 512 tokens cost $0.50, 2048 (its answer) $2
IN = 2.0**-10  # USD per input token of the models priced for the relayed-bytes estimate
PER_MILLION = 1_000_000
RULE = {"id": "per-user", "window": 3600, "technique": "fixed", "metadata": {"user": {"mode": "partition"}}}
PRICES = {
    "openai/gpt-budget": {"input": 0, "output": OUT * PER_MILLION},
    "openai/budget-error-500": {"input": 0, "output": OUT * PER_MILLION},
    "openai/budget-stall-before-2000": {"input": 0, "output": OUT * PER_MILLION},
    "openai/gpt-stream-budget": {"input": 0, "output": CHEAP_OUT * PER_MILLION},
    "openai/budget-truncated-after-3-chunks": {"input": IN * PER_MILLION, "output": OUT * PER_MILLION},
    "openai/budget-stall-after-2-chunks-3000": {"input": IN * PER_MILLION, "output": OUT * PER_MILLION},
}
KEY = {"authorization": "Bearer sk-test", "content-type": "application/json"}


@dataclass
class Gateway:
    origin: str
    name: str
    app: web.Application
    ups: Upstreams
    limit: float

    def url(self, path: str) -> str:
        return f"{self.origin}/v1/acct/{self.name}/{path}"

    async def spent(self, user: str) -> float:
        """What the rule's bucket for `user` holds now (refunds sent first, as Redis batches them)."""
        state = self.app[STATE]
        await state.flush()
        bucket = f'sl:{self.name}:per-user:["{user}"]'
        decision = (await state.peek((Charge(bucket, 0.0, 1000.0, 3600, "fixed"),)))[0]
        return 1000.0 - decision.remaining

    async def settled(self, user: str, held: float) -> float:
        """The spend once it moves off `held` (the call's settlement runs after the client got its end)."""
        for _ in range(500):
            found = await self.spent(user)
            if found != held:
                return found
            await asyncio.sleep(0.01)
        return held


@asynccontextmanager
async def gateway(tmp_path: Path, state_url: str | None, limit: float, **settings: Any) -> AsyncIterator[Gateway]:
    ups = await start_upstreams()
    name = f"settle-{secrets.token_hex(4)}"  # fresh buckets on the shared Redis
    config = Config.model_validate(
        {
            "data_dir": str(tmp_path),
            "redis_url": state_url,
            "prices": PRICES,
            "providers": {"openai": {"base_url": ups.openai_base}},
            "gateways": {name: {"spend_limits": [{**RULE, "limit": limit}], **settings}},
        }
    )
    try:
        async with served(config) as (origin, app):
            yield Gateway(origin, name, app, ups, limit)
    finally:
        await ups.close()
        if state_url is not None:
            await delete_prefix(state_url, f"sp:c:fixed:3600:sl:{name}:")


def prompt_for(completion_tokens: int) -> str:
    """A user message the fake answers with exactly `completion_tokens` tokens (it echoes it)."""
    words = completion_tokens - 1  # "echo:" and one token per word
    text = " ".join(["w"] * words)
    turn = fake_openai.plan_turn({"model": "m", "messages": [{"role": "user", "content": text}]})
    assert turn.completion_tokens == completion_tokens
    return text


def chat(model: str, text: str = "hi", **extra: Any) -> bytes:
    return orjson.dumps({"model": model, "messages": [{"role": "user", "content": text}], **extra})


async def post(session: aiohttp.ClientSession, url: str, body: bytes, user: str, **headers: str) -> tuple[int, bytes]:
    meta = orjson.dumps({"user": user}).decode()
    async with session.post(url, data=body, headers={**KEY, "cf-aig-metadata": meta, **headers}) as response:
        return response.status, await response.read()


# -- Bug A: a call the provider does not bill gives its reservation back ------------------------------


async def test_a_failed_call_gives_its_reservation_back(tmp_path: Path, state_url: str | None) -> None:
    """$2 calls (reserved $2, settled $2) against a $6.50 rule admit 3; a user whose first calls were an
    upstream 500 and a timeout before the first byte still gets 3, and the failures are charged nothing."""
    good = chat("gpt-budget", prompt_for(512))
    async with (
        gateway(tmp_path, state_url, 6.5, request_timeout_ms=300) as gw,
        aiohttp.ClientSession() as session,
    ):
        url = gw.url("openai/chat/completions")
        fresh = [(await post(session, url, good, "fresh"))[0] for _ in range(5)]
        assert await gw.spent("fresh") == 6.0
        failed = (await post(session, url, chat("budget-error-500"), "unlucky"))[0]
        timed_out = (await post(session, url, chat("budget-stall-before-2000"), "unlucky"))[0]
        assert await gw.spent("unlucky") == 0.0
        after = [(await post(session, url, good, "unlucky"))[0] for _ in range(5)]
        assert await gw.spent("unlucky") == 6.0
    assert fresh == [200, 200, 200, 429, 429]
    assert (failed, timed_out) == (500, 504)
    assert after == [200, 200, 200, 429, 429]


# -- Bug B: streamed passthrough calls pay their real cost --------------------------------------------


@pytest.fixture
def fixed_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fake's ids, timestamps and obfuscation padding made constant, so two answers to one request
    are byte for byte the same; and its streams unpaced (these are thousands of chunks long)."""
    monkeypatch.setattr(fake_wire, "DEFAULT_PACE", 0.0)
    monkeypatch.setattr(fake_content, "new_id", lambda prefix, length=24: prefix + "0" * length)
    monkeypatch.setattr(fake_openai, "time", types.SimpleNamespace(time=lambda: 1_800_000_000.0))


@pytest.mark.usefixtures("fixed_ids")
async def test_passthrough_streams_without_usage_are_charged_their_real_cost(
    tmp_path: Path, state_url: str | None
) -> None:
    """Each stream is reserved $0.50 and really costs $2: against a $5 rule, 3 of 8 get through (0 -> 2 -> 4,
    then 4 + 0.50 still fits -> 6). The provider is asked for usage; the client gets exactly the bytes
    the provider sends a request without it."""
    body = chat("gpt-stream-budget", prompt_for(2048), stream=True)
    async with gateway(tmp_path, state_url, 5.0) as gw, aiohttp.ClientSession() as session:
        answers = [await post(session, gw.url("openai/chat/completions"), body, "streamer") for _ in range(8)]
        assert await gw.spent("streamer") == 6.0
        sent = [r.json() for r in gw.ups.requests_for("openai")]
        async with session.post(gw.ups.openai_base + "/chat/completions", data=body, headers=KEY) as direct:
            expected = await direct.read()
    assert [status for status, _ in answers] == [200] * 3 + [429] * 5
    assert all(answer == expected for _, answer in answers[:3])
    assert b'"usage"' not in expected  # the client asked for none, and got none
    assert [s["stream_options"] for s in sent] == [{"include_usage": True}] * 3
    costs = [r["cost"] for r in log_rows(tmp_path) if r["status_code"] == 200]
    assert costs == [2.0, 2.0, 2.0]


@pytest.mark.usefixtures("fixed_ids")
async def test_a_stream_asking_for_usage_or_on_a_gateway_without_budget_goes_as_sent(tmp_path: Path) -> None:
    """Only a stream under a spend rule that did not ask for usage is changed on its way up."""
    asked = chat("gpt-stream-budget", "hello", stream=True, stream_options={"include_usage": True})
    async with gateway(tmp_path, None, 5.0) as gw, aiohttp.ClientSession() as session:
        status, answer = await post(session, gw.url("openai/chat/completions"), asked, "asker")
        sent = gw.ups.requests_for("openai")[0].body
    assert status == 200 and sent == asked
    assert b'"choices":[],"usage":{' in answer  # the usage it asked for reaches it


# -- what still comes without usage: an estimate from the bytes relayed -------------------------------


def relayed_estimate(record: dict[str, Any]) -> float:
    return (record["request_size"] // 4) * IN + (record["response_size"] // 4) * OUT


async def test_a_truncated_stream_is_charged_for_what_it_relayed(tmp_path: Path, state_url: str | None) -> None:
    body = chat("budget-truncated-after-3-chunks", stream=True)
    reserved = (len(body) // 4) * IN + 512 * OUT  # about: the body goes up asking for usage
    async with gateway(tmp_path, state_url, 5.0) as gw, aiohttp.ClientSession() as session:
        status, answer = await post(session, gw.url("openai/chat/completions"), body, "cut")
        await asyncio.sleep(0.1)  # the settlement runs once the client has the end of the stream
        spent = await gw.spent("cut")
    (record,) = log_rows(tmp_path)
    assert status == 200 and b'"error"' in answer  # the stream ends with an error event
    assert record["cost"] is None  # the log does not know the cost...
    assert record["response_size"] > 0
    assert spent == relayed_estimate(record) and abs(spent - reserved) > 0.5  # ...the budget charges what was relayed


async def test_a_stream_the_client_leaves_is_charged_for_what_it_relayed(tmp_path: Path, state_url: str | None) -> None:
    body = chat("budget-stall-after-2-chunks-3000", stream=True)
    async with gateway(tmp_path, state_url, 5.0) as gw, aiohttp.ClientSession() as session:
        meta = orjson.dumps({"user": "leaver"}).decode()
        headers = {**KEY, "cf-aig-metadata": meta}
        async with session.post(gw.url("openai/chat/completions"), data=body, headers=headers) as response:
            seen = b""
            while seen.count(b"\n\n") < 2:
                seen += await response.content.readany()
            held = await gw.spent("leaver")  # the reservation, while the call is in flight
            response.close()  # gone while the provider still streams
        spent = await gw.settled("leaver", held)
    (record,) = log_rows(tmp_path)
    assert record["status_code"] == 499 and record["cost"] is None
    assert 0 < len(seen) <= record["response_size"]  # what the provider sent before the client left
    assert held > 2 and spent == relayed_estimate(record) != held


# -- the reservation honours the request's own output cap ---------------------------------------------


async def test_a_compat_reservation_holds_the_requests_max_tokens(tmp_path: Path) -> None:
    """Against a $1 rule: 200 output tokens ($0.78) fit where the default guess of 512 ($2) would not, and
    1000 ($3.91) do not."""
    async with gateway(tmp_path, None, 1.0) as gw, aiohttp.ClientSession() as session:
        url = gw.url("compat/chat/completions")
        small = await post(session, url, chat("openai/gpt-budget", max_tokens=200), "capped")
        large = await post(session, url, chat("openai/gpt-budget", max_completion_tokens=1000), "capped")
        spent = await gw.spent("capped")
    assert (small[0], large[0]) == (200, 429)
    assert orjson.loads(large[1])["error"]["code"] == 2041
    assert spent == fake_openai.plan_turn(orjson.loads(chat("m"))).completion_tokens * OUT
