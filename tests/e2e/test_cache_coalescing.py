"""Identical concurrent streamed calls through the cache, as real concurrent clients see them: one upstream
call, and every caller that joined it gets its stream live, byte for byte what the first caller got, also
when the stream outgrows the cache, breaks upstream, or one of the callers leaves."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from multidict import CIMultiDictProxy

from switchpoint.cache import ResponseCache
from switchpoint.surfaces.common import RUNTIME
from tests.support.stack import GatewayStack

PACE_MS = 150  # between the fake's stream events: waiters must not wait for the whole stream
PACE = PACE_MS / 1000
HEADERS = {"content-type": "application/json", "authorization": "Bearer sk-coalesce"}
WORDS = "one two three four five six seven eight nine ten eleven twelve"


@dataclass
class Got:
    """What one client received, and when (its event loop's clock)."""

    status: int = 0
    headers: CIMultiDictProxy[str] | None = None
    chunks: list[bytes] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    first: asyncio.Event = field(default_factory=asyncio.Event)
    error: BaseException | None = None

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    def header(self, name: str) -> str:
        assert self.headers is not None
        return self.headers[name]


def chat(model: str, provider: str = "openai") -> bytes:
    body = {
        "model": f"{provider}/{model}",
        "stream": True,
        "max_tokens": 64,
        "messages": [{"role": "user", "content": WORDS}],
    }
    return orjson.dumps(body)


async def read(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    leave_after: int | None = None,
    got: Got | None = None,
    **headers: str,
) -> Got:
    """POST `body` and read the answer as it streams into `got`; `leave_after` chunks: close the connection
    then."""
    got = got if got is not None else Got()
    loop = asyncio.get_running_loop()
    try:
        async with session.post(url, data=body, headers={**HEADERS, **headers}) as resp:
            got.status, got.headers = resp.status, resp.headers
            async for chunk in resp.content.iter_any():
                got.chunks.append(chunk)
                got.times.append(loop.time())
                got.first.set()
                if leave_after is not None and len(got.chunks) >= leave_after:
                    resp.close()
                    return got
    except aiohttp.ClientError as exc:
        got.error = exc
    finally:
        got.first.set()
    return got


def upstream_calls(stack: GatewayStack, provider: str, model: str) -> list[Any]:
    return [r for r in stack.ups.requests_for(provider) if r.model == model]


def cache_of(stack: GatewayStack) -> ResponseCache:
    runner = stack._runner
    assert runner is not None
    return runner.app[RUNTIME].cache


@contextmanager
def entry_cap(stack: GatewayStack, max_bytes: int) -> Iterator[None]:
    cache = cache_of(stack)
    before, cache.max_entry_bytes = cache.max_entry_bytes, max_bytes
    try:
        yield
    finally:
        cache.max_entry_bytes = before


async def lead_then_join(
    stack: GatewayStack, model: str, waiters: int, provider: str = "openai", **leave: int
) -> tuple[Got, list[Got]]:
    """The first call, and once it has its first byte, `waiters` identical ones. `leave`: `leader=n` or
    `waiter=n` closes that client's connection after n chunks (the first waiter's)."""
    url, body = stack.url("cached", "compat/chat/completions"), chat(model, provider)
    async with aiohttp.ClientSession() as session:
        leading = Got()
        lead = asyncio.ensure_future(read(session, url, body, leave.get("leader"), leading))
        await asyncio.wait_for(leading.first.wait(), 10)
        joined = [
            asyncio.ensure_future(read(session, url, body, leave.get("waiter") if i == 0 else None))
            for i in range(waiters)
        ]
        leader, *rest = await asyncio.wait_for(asyncio.gather(lead, *joined), 30)
    return leader, rest


def assert_live(leader: Got, waiter: Got) -> None:
    """The waiter had its first byte while the leader's stream still had paces to go (not after it)."""
    assert waiter.times and leader.times
    assert waiter.times[0] < leader.times[-1] - 3 * PACE, (waiter.times[0], leader.times[0], leader.times[-1])


async def test_waiters_get_the_leading_stream_live_and_byte_for_byte(stack: GatewayStack) -> None:
    model = f"slow-chunks-{PACE_MS}-coalesce-live"
    leader, waiters = await lead_then_join(stack, model, 3)
    assert leader.status == 200 and leader.body.rstrip().endswith(b"data: [DONE]")
    assert len(upstream_calls(stack, "openai", model)) == 1
    for waiter in waiters:
        assert waiter.status == 200 and waiter.body == leader.body
        assert waiter.header("content-type") == leader.header("content-type")
        assert (leader.header("cf-aig-cache-status"), waiter.header("cf-aig-cache-status")) == ("MISS", "HIT")
        assert_live(leader, waiter)
    ids = {got.header("cf-aig-log-id") for got in (leader, *waiters)}
    assert len(ids) == 4
    first = stack.log_record(leader.header("cf-aig-log-id"))
    for waiter in waiters:
        record = stack.log_record(waiter.header("cf-aig-log-id"))
        assert (record["cached"], record["cost"], record["stream"], record["status_code"]) == (1, 0.0, 1, 200)
        assert (record["tokens_in"], record["tokens_out"]) == (first["tokens_in"], first["tokens_out"]) != (0, 0)
        assert record["success"] == 1
    assert not cache_of(stack)._flights


async def test_a_translated_stream_fans_out_live_too(stack: GatewayStack) -> None:
    """/compat to an Anthropic model: the relay translates each chunk; followers get the translated bytes."""
    model = f"claude-slow-chunks-{PACE_MS}-coalesce"
    leader, waiters = await lead_then_join(stack, model, 2, provider="anthropic")
    assert leader.status == 200 and b"data: [DONE]" in leader.body
    assert len(upstream_calls(stack, "anthropic", model)) == 1
    for waiter in waiters:
        assert waiter.body == leader.body and waiter.header("cf-aig-cache-status") == "HIT"
        assert_live(leader, waiter)


async def test_a_stream_over_the_entry_cap_fans_out_live_and_is_not_stored(stack: GatewayStack) -> None:
    """Followers that joined before the stream passed the cap get all of it; nothing is stored. (Past the cap
    with nobody following, a flight takes no joiners and keeps no chunks: `tests/test_cache.py`.)"""
    model = f"slow-chunks-{PACE_MS}-coalesce-cap"
    async with aiohttp.ClientSession() as session:  # the stream's size, from a gateway that does not cache
        whole = await read(session, stack.url("default", "compat/chat/completions"), chat(model))
    cap = len(whole.body) - 100  # passed by the last events only, long after the followers joined
    with entry_cap(stack, cap):
        leader, waiters = await lead_then_join(stack, model, 2)
        assert len(leader.body) > cap and len(upstream_calls(stack, "openai", model)) == 2
        for waiter in waiters:
            assert waiter.body == leader.body and waiter.header("cf-aig-cache-status") == "HIT"
            assert_live(leader, waiter)
        assert not cache_of(stack)._flights
        async with aiohttp.ClientSession() as session:
            again = await read(session, stack.url("cached", "compat/chat/completions"), chat(model))
        assert again.header("cf-aig-cache-status") == "MISS"  # too large to keep
        assert len(upstream_calls(stack, "openai", model)) == 3


async def test_a_waiter_that_leaves_disturbs_neither_the_leader_nor_the_others(stack: GatewayStack) -> None:
    model = f"slow-chunks-{PACE_MS}-coalesce-waiter-leaves"
    leader, (gone, stayed) = await lead_then_join(stack, model, 2, waiter=1)
    assert len(gone.chunks) == 1 and gone.body == leader.body[: len(gone.body)]
    assert_live(leader, gone)
    assert leader.body.rstrip().endswith(b"data: [DONE]") and stayed.body == leader.body
    assert [r.outcome for r in upstream_calls(stack, "openai", model)] == ["complete"]
    assert stack.log_record(gone.header("cf-aig-log-id"))["status_code"] == 499


async def test_a_leader_that_leaves_does_not_cut_its_followers_off(stack: GatewayStack) -> None:
    """The upstream read goes on for the followers; the whole answer is then cached as usual."""
    model = f"slow-chunks-{PACE_MS}-coalesce-leader-leaves"
    leader, waiters = await lead_then_join(stack, model, 2, leader=3)  # after the waiters joined
    assert len(leader.chunks) == 3
    for waiter in waiters:
        assert waiter.error is None and waiter.body.startswith(leader.body)
        assert waiter.body.rstrip().endswith(b"data: [DONE]")
    assert waiters[0].body == waiters[1].body
    assert [r.outcome for r in upstream_calls(stack, "openai", model)] == ["complete"]
    record = stack.log_record(leader.header("cf-aig-log-id"))
    assert (record["status_code"], record["error"]) == (499, "client disconnected")
    async with aiohttp.ClientSession() as session:
        again = await read(session, stack.url("cached", "compat/chat/completions"), chat(model))
    assert again.header("cf-aig-cache-status") == "HIT" and again.body == waiters[0].body
    assert len(upstream_calls(stack, "openai", model)) == 1
    assert not cache_of(stack)._flights


async def test_a_stream_that_breaks_upstream_reaches_followers_as_the_leader_got_it(stack: GatewayStack) -> None:
    """Cut upstream after a few events: every caller gets the same bytes, the gateway's error event
    included; nobody calls the provider again, and nothing is cached."""
    model = f"reset-after-6-chunks-paced-{PACE_MS}-coalesce"
    leader, waiters = await lead_then_join(stack, model, 2)
    assert b'"error"' in leader.body and b"[DONE]" not in leader.body
    for waiter in waiters:
        assert waiter.body == leader.body
        assert_live(leader, waiter)
        record = stack.log_record(waiter.header("cf-aig-log-id"))
        assert record["success"] == 0 and record["error"]
    assert len(upstream_calls(stack, "openai", model)) == 1
    assert not cache_of(stack)._flights


async def test_a_waiter_keeps_its_own_first_byte_timeout(stack: GatewayStack) -> None:
    model = "stall-before-1000-coalesce-timeout"
    url, body = stack.url("cached", "compat/chat/completions"), chat(model)
    async with aiohttp.ClientSession() as session:
        lead = asyncio.ensure_future(read(session, url, body))
        await asyncio.sleep(0.3)  # the provider stalls 1 s before its head
        assert cache_of(stack)._flights  # the first call is in flight, waiting for it
        hasty = await read(session, url, body, **{"cf-aig-request-timeout": "200"})
        assert not lead.done()  # answered before the first call had its first byte
        leader = await lead
    assert hasty.status == 504 and leader.status == 200
    assert hasty.header("content-type").startswith("application/json")
    error = orjson.loads(hasty.body)["error"]  # as its own call's timeout: OpenAI's body, Cloudflare's code
    assert (error["type"], error["code"], error["param"]) == ("timeout_error", 2005, None)
    assert error["message"] == "Provider sent no response within 200 ms"
    assert len(upstream_calls(stack, "openai", model)) == 1


async def test_waiters_for_a_whole_answer_get_it_when_the_first_caller_leaves(stack: GatewayStack) -> None:
    """Not a stream: waiters wait for the answer and replay it; the first caller leaving does not cancel the
    upstream call they wait for, nor send them upstream again."""
    model = f"slow-chunks-{PACE_MS}-coalesce-whole"
    url = stack.url("cached", "compat/chat/completions")
    body = orjson.dumps({"model": f"openai/{model}", "messages": [{"role": "user", "content": WORDS}]})
    async with aiohttp.ClientSession() as session:
        lead = asyncio.ensure_future(read(session, url, body))
        await asyncio.sleep(PACE)  # the body comes in pieces, one a pace
        assert cache_of(stack)._flights
        waiters = [asyncio.ensure_future(read(session, url, body)) for _ in range(2)]
        await asyncio.sleep(PACE)
        lead.cancel()  # the first caller leaves before its answer
        got = await asyncio.wait_for(asyncio.gather(*waiters), 30)
    assert [w.status for w in got] == [200, 200] and got[0].body == got[1].body
    assert orjson.loads(got[0].body)["choices"][0]["message"]["content"] == f"echo: {WORDS}"
    assert [w.header("cf-aig-cache-status") for w in got] == ["HIT", "HIT"]
    assert [r.outcome for r in upstream_calls(stack, "openai", model)] == ["complete"]
