"""Parity through a PostgreSQL outage, end to end: calls go over HTTP through a real `switchpoint serve` process
to the fake providers, while the private PostgreSQL server holding the logs is stopped and started again. After
the calls every one of them is in the store exactly once, with the tokens the provider reported, the price
table's cost for them, and its status.

The writer-level twin of this test is `test_parity.py`; this one adds the parts between the socket and the
writer (usage tapped from streams, the usage the gateway asks for on the client's behalf, translation, failure
records). Without PostgreSQL binaries the test is skipped, except in CI (`CI=true`), where it fails.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from switchpoint.formats.usage import Usage
from switchpoint.pricing import PriceBook
from tests.support.postgres import PrivateServer, free_port, private_server
from tests.upstreams import anthropic as fake_anthropic
from tests.upstreams import openai as fake_openai
from tests.upstreams import workers_ai as fake_workers_ai
from tests.upstreams.server import UpstreamsThread

__all__ = ["private_server"]

N = 300
CONCURRENCY = 12
PACE_S = 0.02  # one call started every 20 ms: the 300 calls span ~6 s, the outage sits in the middle
OUTAGE_S = 2.0
DRAIN_WITHIN_S = 30.0
ACCOUNT = "acct"
KIMI = "@cf/moonshotai/kimi-k2.5"


@dataclass(frozen=True)
class Kind:
    """One shape of call: which surface, provider and model, streamed or not, and how it should end."""

    name: str
    surface: str  # compat | passthrough
    provider: str
    model: str  # the upstream model (what the record names)
    stream: bool = False
    include_usage: bool = False
    status: int = 200  # what the client gets and the record keeps
    broken: bool = False  # a 200 stream cut short: logged as a failure without usage

    @property
    def succeeds(self) -> bool:
        return self.status == 200 and not self.broken


KINDS = [
    Kind("compat-json", "compat", "openai", "gpt-4o-mini"),
    Kind("compat-stream-usage", "compat", "openai", "gpt-4o-mini", stream=True, include_usage=True),
    Kind("compat-stream-bare", "compat", "openai", "gpt-4o-mini", stream=True),
    Kind("pass-json", "passthrough", "openai", "gpt-4o"),
    Kind("pass-stream-usage", "passthrough", "openai", "gpt-4o", stream=True, include_usage=True),
    Kind("claude-json", "compat", "anthropic", "claude-sonnet-4-5"),
    Kind("claude-stream-usage", "compat", "anthropic", "claude-sonnet-4-5", stream=True, include_usage=True),
    Kind("claude-stream-bare", "compat", "anthropic", "claude-sonnet-4-5", stream=True),
    Kind("claude-native-stream", "passthrough", "anthropic", "claude-sonnet-4-5", stream=True),
    Kind("kimi-stream-bare", "compat", "workers-ai", KIMI, stream=True),
    Kind("fail-500", "compat", "openai", "error-500", status=500),
    Kind("fail-429-stream", "passthrough", "openai", "error-429-retry-after-0", stream=True, status=429),
    Kind("broken-stream", "compat", "openai", "reset-after-3-chunks", stream=True, include_usage=True, broken=True),
]


@dataclass
class Call:
    i: int
    kind: Kind
    messages: list[dict[str, str]]
    status: int = 0
    log_id: str | None = None
    seen_usage: tuple[int | None, int | None] | None = None  # what the client itself was told, when it was told
    done: bool = False  # a stream ended with its terminator
    finished_at: float = 0.0


def messages_for(i: int) -> list[dict[str, str]]:
    """Prompts of different lengths, so every call has its own token counts."""
    return [{"role": "user", "content": f"call {i}: " + "tell me more " * (i % 9)}]


def fake_usage(call: Call) -> tuple[int, int]:
    """The usage the fake provider produced for this call: a pure function of the request it got."""
    kind = call.kind
    if kind.provider == "anthropic":
        body = {"model": kind.model, "messages": call.messages, "max_tokens": 4096}
        answer = fake_anthropic.plan_answer(body)
        return answer.input_tokens, answer.output_tokens
    flavor = fake_workers_ai.OPENAI_STYLE if kind.provider == "workers-ai" else fake_openai.OPENAI
    turn = fake_openai.plan_turn({"model": kind.model, "messages": call.messages}, flavor)
    return turn.prompt_tokens, turn.completion_tokens


# ---------------------------------------------------------------------------------------------- the gateway


@pytest.fixture
def gateway(private_server: PrivateServer, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """`switchpoint serve` (one worker) logging to the private server; yields (origin, database URL)."""
    database_url = private_server.create_database("gateway_parity")
    with UpstreamsThread() as ups:
        config = tmp_path / "switchpoint.json"
        config.write_text(
            json.dumps(
                {
                    "data_dir": str(tmp_path / "data"),
                    "database_url": database_url,
                    "providers": {
                        "openai": {"base_url": ups.openai_base},
                        "anthropic": {"base_url": ups.anthropic_base + "/v1"},
                        "workers-ai": {"base_url": ups.workers_ai_base},
                    },
                }
            )
        )
        port = free_port()
        log = (tmp_path / "serve.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "switchpoint", "serve", "--config", str(config), "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_healthy(port, proc, tmp_path / "serve.log")
            yield f"http://127.0.0.1:{port}", database_url
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()


def _wait_healthy(port: int, proc: subprocess.Popen[bytes], log: Path, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"serve exited with {proc.returncode}:\n{log.read_text()}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"gateway did not become healthy:\n{log.read_text()}")


# ---------------------------------------------------------------------------------------------- the calls


def _request(origin: str, call: Call) -> tuple[str, dict[str, Any], dict[str, str]]:
    kind = call.kind
    base = f"{origin}/v1/{ACCOUNT}/default"
    body: dict[str, Any] = {"messages": call.messages}
    if kind.stream:
        body["stream"] = True
    if kind.include_usage:
        body["stream_options"] = {"include_usage": True}
    headers = {"authorization": "Bearer sk-test"}
    if kind.surface == "compat":
        return f"{base}/compat/chat/completions", {"model": f"{kind.provider}/{kind.model}", **body}, headers
    if kind.provider == "anthropic":
        headers = {"x-api-key": "sk-test", "anthropic-version": "2023-06-01"}
        return f"{base}/anthropic/v1/messages", {"model": kind.model, "max_tokens": 4096, **body}, headers
    return f"{base}/{kind.provider}/chat/completions", {"model": kind.model, **body}, headers


async def _one(session: aiohttp.ClientSession, origin: str, call: Call) -> None:
    url, body, headers = _request(origin, call)
    async with session.post(url, json=body, headers=headers) as response:
        call.status = response.status
        call.log_id = response.headers.get("cf-aig-log-id")
        if not call.kind.stream or response.status != 200:
            payload = await response.read()
            if response.status == 200:
                usage = json.loads(payload).get("usage") or {}
                call.seen_usage = (usage.get("prompt_tokens"), usage.get("completion_tokens"))
            return
        await _read_stream(response, call)


async def _read_stream(response: aiohttp.ClientResponse, call: Call) -> None:
    seen_in: int | None = None
    seen_out: int | None = None
    try:
        async for line in response.content:
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                call.done = True
                continue
            event = json.loads(data)
            if event.get("type") == "message_stop":
                call.done = True
            usage = event.get("usage") or (event.get("message") or {}).get("usage")
            if not isinstance(usage, dict):
                continue
            seen_in = usage.get("prompt_tokens", usage.get("input_tokens", seen_in))
            seen_out = usage.get("completion_tokens", usage.get("output_tokens", seen_out))
    except aiohttp.ClientPayloadError:
        call.done = False
    if seen_in is not None or seen_out is not None:
        call.seen_usage = (seen_in, seen_out)


async def drive(origin: str, calls: list[Call], outage: asyncio.Event) -> None:
    """Start one call every PACE_S (at most CONCURRENCY in flight); `outage` is set once a third are done."""
    gate = asyncio.Semaphore(CONCURRENCY)
    finished = 0

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:

        async def run(call: Call) -> None:
            nonlocal finished
            async with gate:
                await _one(session, origin, call)
            call.finished_at = time.monotonic()
            finished += 1
            if finished == len(calls) // 3:
                outage.set()

        tasks = []
        for call in calls:
            tasks.append(asyncio.create_task(run(call)))
            await asyncio.sleep(PACE_S)
        await asyncio.gather(*tasks)


async def bounce(server: PrivateServer, outage: asyncio.Event) -> tuple[float, float]:
    """Stop the server once `outage` is set, keep it down OUTAGE_S, start it again; returns (down, up) times."""
    await outage.wait()
    await asyncio.to_thread(server.stop, "fast")
    down = time.monotonic()
    await asyncio.sleep(OUTAGE_S)
    up = time.monotonic()
    await asyncio.to_thread(server.start)
    return down, up


# ---------------------------------------------------------------------------------------------- the store


def stored_rows(database_url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url, connect_timeout=3) as conn:
        return conn.execute(
            "SELECT id, provider, model, status_code, success, stream, tokens_in, tokens_out, cost, error FROM logs"
        ).fetchall()


async def wait_drained(database_url: str, expected: int) -> list[tuple[Any, ...]]:
    """Poll the store until it holds `expected` rows (bounded); a moment longer to catch any duplicates."""
    deadline = time.monotonic() + DRAIN_WITHIN_S
    rows: list[tuple[Any, ...]] = []
    while time.monotonic() < deadline:
        try:
            rows = await asyncio.to_thread(stored_rows, database_url)
        except psycopg.OperationalError:
            rows = []
        if len(rows) >= expected:
            await asyncio.sleep(0.5)
            return await asyncio.to_thread(stored_rows, database_url)
        await asyncio.sleep(0.2)
    raise AssertionError(f"the store holds {len(rows)} of {expected} records after {DRAIN_WITHIN_S} s")


def log_counters(origin: str) -> dict[str, float]:
    with urllib.request.urlopen(f"{origin}/metrics", timeout=5) as response:
        text = response.read().decode()
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "switchpoint_log_records":
            for sample in family.samples:
                if sample.name.endswith("_total") or sample.name == family.name:
                    counts[sample.labels["outcome"]] = sample.value
    return counts


# ---------------------------------------------------------------------------------------------- the test


async def test_every_gateway_call_is_logged_once_through_a_postgres_restart(
    gateway: tuple[str, str], private_server: PrivateServer
) -> None:
    origin, database_url = gateway
    calls = [Call(i, KINDS[i % len(KINDS)], messages_for(i)) for i in range(N)]
    outage = asyncio.Event()
    bouncing = asyncio.create_task(bounce(private_server, outage))
    await drive(origin, calls, outage)
    down, up = await bouncing

    during = [c for c in calls if down <= c.finished_at <= up]
    assert len(during) >= 20, f"only {len(during)} calls finished while PostgreSQL was down"

    rows = await wait_drained(database_url, N)
    counters = await asyncio.to_thread(log_counters, origin)
    assert counters.get("spooled", 0) > 0, f"the outage never reached the log writer: {counters}"
    assert counters.get("dropped", 0) == 0 and counters.get("rejected", 0) == 0, counters

    _assert_clients_saw_what_they_should(calls)
    _assert_records(calls, rows)


def _assert_clients_saw_what_they_should(calls: list[Call]) -> None:
    for call in calls:
        kind = call.kind
        assert call.status == kind.status, (call.i, kind.name, call.status)
        assert call.log_id, (call.i, kind.name, "no cf-aig-log-id")
        if kind.stream and kind.succeeds:
            assert call.done, (call.i, kind.name, "stream did not end with its terminator")
        if kind.broken:
            assert not call.done, (call.i, kind.name, "a broken stream looked complete")
        if not kind.succeeds:
            continue
        # The client sees usage exactly when it asked for it (or the format always carries it).
        always = not kind.stream or kind.name in ("claude-native-stream", "kimi-stream-bare")
        if kind.include_usage or always:
            assert call.seen_usage == fake_usage(call), (call.i, kind.name, call.seen_usage)
        else:
            assert call.seen_usage is None, (call.i, kind.name, "usage the client did not ask for leaked")


def _assert_records(calls: list[Call], rows: list[tuple[Any, ...]]) -> None:
    ids = [row[0] for row in rows]
    assert len(ids) == len(set(ids)), "a record was stored twice"
    assert len(rows) == N
    by_id = {row[0]: row[1:] for row in rows}
    assert set(by_id) == {c.log_id for c in calls}
    prices = PriceBook()
    mismatches = []
    for call in calls:
        kind = call.kind
        provider, model, status, success, stream, tokens_in, tokens_out, cost, error = by_id[call.log_id]
        want: tuple[Any, ...]
        if kind.succeeds:
            usage = fake_usage(call)
            want_cost = prices.cost(kind.provider, kind.model, Usage(*usage)).cost
            assert want_cost is not None and want_cost > 0, (kind.provider, kind.model)
            want = (kind.provider, kind.model, 200, True, kind.stream, usage[0], usage[1], want_cost, None)
        else:
            want = (kind.provider, kind.model, kind.status, False, kind.stream, None, None, None, error)
            assert error or kind.status != 200, (call.i, kind.name, "a broken stream was logged without an error")
        got = (provider, model, status, success, stream, tokens_in, tokens_out, cost, error)
        if got != want:
            mismatches.append((call.i, kind.name, got, want))
    assert not mismatches, f"{len(mismatches)} records differ, first ones: {mismatches[:5]}"
