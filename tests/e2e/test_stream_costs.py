"""Cost of streamed calls: with and without client-requested usage, passthrough and translated, cache token
prices (read and write), and `cf-aig-custom-cost` per-token rates on a stream.

Expected costs are worked out here from the price table's rates and the usage the fake provider produced (a
pure function of the request), not by asking the gateway's own cost code, so a wrong formula fails.

The fakes always report zero cache tokens, so the cache tests make them report some: a prompt containing
`[cache read=R write=W]` gets R cache-read (and, for Anthropic, W cache-write) tokens in its usage, the way
each provider reports them (OpenAI-style `prompt_tokens_details.cached_tokens` inside `prompt_tokens`;
Anthropic `cache_read_input_tokens`/`cache_creation_input_tokens` beside `input_tokens`).
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

import pytest

from switchpoint.pricing import PriceBook
from tests.e2e.rawhttp import Reply, call
from tests.support.stack import GatewayStack
from tests.upstreams import anthropic as fake_anthropic
from tests.upstreams import openai as fake_openai
from tests.upstreams import workers_ai as fake_workers_ai

KIMI = "@cf/moonshotai/kimi-k2.5"
OPENAI_KEY = {"authorization": "Bearer sk-test", "content-type": "application/json"}
ANTHROPIC_KEY = {"x-api-key": "sk-test", "anthropic-version": "2023-06-01", "content-type": "application/json"}
MILLION = Decimal(1_000_000)
_CACHE_MARK = re.compile(r"\[cache read=(\d+) write=(\d+)\]")


# ------------------------------------------------------------------------------------- cache-reporting fakes


def _cache_mark(text: str) -> tuple[int, int] | None:
    found = _CACHE_MARK.search(text)
    return (int(found[1]), int(found[2])) if found else None


@pytest.fixture
def cache_reporting(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fakes that report cache tokens for prompts carrying a `[cache read=R write=W]` mark (others unchanged).

    The reply echoes the prompt, so the mark is found in the answer the usage belongs to.
    """
    openai_usage, anthropic_usage = fake_openai.usage, fake_anthropic.usage

    def with_openai_cache(turn: fake_openai.Turn, flavor: Any = fake_openai.OPENAI, completion: Any = None) -> Any:
        body = openai_usage(turn, flavor, completion)
        mark = _cache_mark("".join(turn.text_pieces))
        if mark is not None:
            details = body.get("prompt_tokens_details") or {}
            body["prompt_tokens_details"] = {**details, "cached_tokens": mark[0]}
        return body

    def with_anthropic_cache(answer: fake_anthropic.Answer, output_tokens: int) -> Any:
        body = anthropic_usage(answer, output_tokens)
        mark = _cache_mark(" ".join(str(b.get("text", "")) for b in answer.blocks))
        if mark is not None:
            body["cache_read_input_tokens"], body["cache_creation_input_tokens"] = mark
            body["cache_creation"] = {"ephemeral_5m_input_tokens": mark[1], "ephemeral_1h_input_tokens": 0}
        return body

    monkeypatch.setattr(fake_openai, "usage", with_openai_cache)
    monkeypatch.setattr(fake_anthropic, "usage", with_anthropic_cache)


# ------------------------------------------------------------------------------------- helpers


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def chat_body(model: str, messages: list[dict[str, str]], *, stream: bool, include_usage: bool = False) -> bytes:
    body: dict[str, Any] = {"model": model, "messages": messages}
    if stream:
        body["stream"] = True
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    return json.dumps(body).encode()


def compat(stack: GatewayStack, body: bytes, **headers: str) -> Reply:
    reply = call("POST", stack.url("default", "compat/chat/completions"), body, {**OPENAI_KEY, **headers})
    assert reply.status == 200, reply.body[:500]
    return reply


def events(reply: Reply) -> list[Any]:
    """The JSON payloads of an SSE body ([DONE] kept as the string)."""
    out: list[Any] = []
    for line in reply.body.split(b"\n"):
        if line.startswith(b"data:"):
            data = line[5:].strip()
            out.append(data.decode() if data == b"[DONE]" else json.loads(data))
    return out


def stream_usages(reply: Reply) -> list[dict[str, Any]]:
    return [e["usage"] for e in events(reply) if isinstance(e, dict) and isinstance(e.get("usage"), dict)]


def fake_openai_usage(model: str, messages: list[dict[str, str]], workers_ai: bool = False) -> tuple[int, int]:
    flavor = fake_workers_ai.OPENAI_STYLE if workers_ai else fake_openai.OPENAI
    turn = fake_openai.plan_turn({"model": model, "messages": messages}, flavor)
    return turn.prompt_tokens, turn.completion_tokens


def fake_anthropic_usage(model: str, messages: list[dict[str, str]]) -> tuple[int, int]:
    """(input_tokens excluding cache, output_tokens), as the Anthropic fake reports them."""
    answer = fake_anthropic.plan_answer({"model": model, "messages": messages, "max_tokens": 4096})
    return answer.input_tokens, answer.output_tokens


def rates(provider: str, model: str) -> dict[str, Decimal]:
    price = PriceBook().price(provider, model)
    assert price is not None, f"{provider}/{model} is not in the price table"
    return {
        "input": price.input,
        "output": price.output,
        "cache_read": price.cache_read if price.cache_read is not None else price.input,
        "cache_write": price.cache_write if price.cache_write is not None else price.input,
    }


def table_cost(provider: str, model: str, tokens_in: int, tokens_out: int, read: int = 0, write: int = 0) -> float:
    """USD by the module docstring of `pricing`: cache parts of the prompt at their own rates, never twice."""
    r = rates(provider, model)
    units = (tokens_in - read - write) * r["input"] + read * r["cache_read"] + write * r["cache_write"]
    return float((units + tokens_out * r["output"]) / MILLION)


def costed(record: dict[str, Any]) -> tuple[Any, ...]:
    return record["tokens_in"], record["tokens_out"], record["cost"], record["custom_cost"], record["stream"]


# ------------------------------------------------------------------------------------- with and without usage


@pytest.mark.parametrize(
    ("model", "provider", "upstream_model"),
    [
        ("openai/gpt-4o-mini", "openai", "gpt-4o-mini"),
        ("anthropic/claude-sonnet-4-5", "anthropic", "claude-sonnet-4-5"),
        (f"workers-ai/{KIMI}", "workers-ai", KIMI),
    ],
)
def test_compat_stream_is_costed_the_same_with_and_without_client_usage(
    stack: GatewayStack, model: str, provider: str, upstream_model: str
) -> None:
    messages = user(f"stream cost parity for {provider}, please answer at some length")
    asked = compat(stack, chat_body(model, messages, stream=True, include_usage=True))
    bare = compat(stack, chat_body(model, messages, stream=True))

    if provider == "anthropic":
        tokens = fake_anthropic_usage(upstream_model, messages)
    else:
        tokens = fake_openai_usage(upstream_model, messages, workers_ai=provider == "workers-ai")
    want = (*tokens, pytest.approx(table_cost(provider, upstream_model, *tokens), abs=1e-12), 0, 1)
    assert want[2] != 0
    assert costed(stack.log_record(asked.log_id)) == want
    assert costed(stack.log_record(bare.log_id)) == want

    # What each client saw: the usage it asked for, and none it did not (Workers AI puts it on every chunk).
    final = stream_usages(asked)[-1]
    assert (final["prompt_tokens"], final["completion_tokens"]) == tokens
    if provider != "workers-ai":
        assert stream_usages(bare) == []
    assert events(asked)[-1] == events(bare)[-1] == "[DONE]"


def test_passthrough_openai_stream_with_include_usage_is_costed(stack: GatewayStack) -> None:
    messages = user("passthrough stream with usage")
    body = chat_body("gpt-4o", messages, stream=True, include_usage=True)
    reply = call("POST", stack.url("default", "openai/chat/completions"), body, OPENAI_KEY)
    assert reply.status == 200
    tokens = fake_openai_usage("gpt-4o", messages)
    final = stream_usages(reply)[-1]
    assert (final["prompt_tokens"], final["completion_tokens"]) == tokens
    record = stack.log_record(reply.log_id)
    assert (record["provider"], record["model"], record["surface"]) == ("openai", "gpt-4o", "passthrough")
    assert costed(record) == (*tokens, pytest.approx(table_cost("openai", "gpt-4o", *tokens), abs=1e-12), 0, 1)


def test_passthrough_workers_ai_stream_is_costed_from_its_last_usage(stack: GatewayStack) -> None:
    """Kimi on Workers AI repeats a growing usage on every chunk: the final one (reasoning included) counts."""
    messages = user("workers ai run stream")
    body = json.dumps({"messages": messages, "stream": True}).encode()
    reply = call("POST", stack.url("default", f"workers-ai/{KIMI}"), body, OPENAI_KEY)
    assert reply.status == 200
    tokens = fake_openai_usage(KIMI, messages, workers_ai=True)
    assert len(stream_usages(reply)) > 2
    record = stack.log_record(reply.log_id)
    assert (record["provider"], record["model"]) == ("workers-ai", KIMI)
    assert costed(record) == (*tokens, pytest.approx(table_cost("workers-ai", KIMI, *tokens), abs=1e-12), 0, 1)


def test_passthrough_anthropic_stream_is_costed_from_start_and_delta(stack: GatewayStack) -> None:
    messages = user("anthropic native stream cost")
    body = json.dumps({"model": "claude-sonnet-4-5", "max_tokens": 4096, "messages": messages, "stream": True})
    reply = call("POST", stack.url("default", "anthropic/v1/messages"), body.encode(), ANTHROPIC_KEY)
    assert reply.status == 200
    tokens = fake_anthropic_usage("claude-sonnet-4-5", messages)
    record = stack.log_record(reply.log_id)
    want_cost = table_cost("anthropic", "claude-sonnet-4-5", *tokens)
    assert costed(record) == (*tokens, pytest.approx(want_cost, abs=1e-12), 0, 1)


# ------------------------------------------------------------------------------------- cache tokens


@pytest.mark.usefixtures("cache_reporting")
@pytest.mark.parametrize("mode", ["json", "stream-usage", "stream-bare"])
@pytest.mark.parametrize(
    ("model", "provider", "upstream_model"),
    [("openai/gpt-4o-mini", "openai", "gpt-4o-mini"), (f"workers-ai/{KIMI}", "workers-ai", KIMI)],
)
def test_cached_prompt_tokens_are_billed_at_the_cache_read_rate(
    stack: GatewayStack, model: str, provider: str, upstream_model: str, mode: str
) -> None:
    read = 5
    messages = user(f"[cache read={read} write=0] a prompt with a cached prefix, {mode}")
    stream = mode != "json"
    reply = compat(stack, chat_body(model, messages, stream=stream, include_usage=mode == "stream-usage"))
    tokens_in, tokens_out = fake_openai_usage(upstream_model, messages, workers_ai=provider == "workers-ai")
    assert tokens_in > read
    if mode != "stream-bare":  # the client is told about the cached part too
        usage = stream_usages(reply)[-1] if stream else reply.json()["usage"]
        assert usage["prompt_tokens_details"]["cached_tokens"] == read

    record = stack.log_record(reply.log_id)
    want = table_cost(provider, upstream_model, tokens_in, tokens_out, read=read)
    uncached = table_cost(provider, upstream_model, tokens_in, tokens_out)
    assert rates(provider, upstream_model)["cache_read"] < rates(provider, upstream_model)["input"]
    assert want < uncached
    assert costed(record) == (tokens_in, tokens_out, pytest.approx(want, abs=1e-12), 0, int(stream))


@pytest.mark.usefixtures("cache_reporting")
@pytest.mark.parametrize("include_usage", [True, False])
def test_anthropic_translated_stream_bills_cache_reads_and_writes_at_their_prices(
    stack: GatewayStack, include_usage: bool
) -> None:
    read, write = 7, 3
    messages = user(f"[cache read={read} write={write}] claude with a cached system prompt")
    body = chat_body("anthropic/claude-sonnet-4-5", messages, stream=True, include_usage=include_usage)
    reply = compat(stack, body)
    uncached_in, tokens_out = fake_anthropic_usage("claude-sonnet-4-5", messages)
    tokens_in = uncached_in + read + write  # OpenAI's prompt_tokens hold the cached parts; Anthropic's do not
    if include_usage:
        usage = stream_usages(reply)[-1]
        assert (usage["prompt_tokens"], usage["completion_tokens"]) == (tokens_in, tokens_out)
        assert usage["prompt_tokens_details"]["cached_tokens"] == read

    record = stack.log_record(reply.log_id)
    r = rates("anthropic", "claude-sonnet-4-5")
    assert (r["cache_read"], r["cache_write"]) == (r["input"] / 10, r["input"] * Decimal("1.25"))
    want = float((uncached_in * r["input"] + read * r["cache_read"] + write * r["cache_write"]
                  + tokens_out * r["output"]) / MILLION)  # fmt: skip
    assert costed(record) == (tokens_in, tokens_out, pytest.approx(want, abs=1e-12), 0, 1)


@pytest.mark.usefixtures("cache_reporting")
def test_anthropic_ingress_stream_to_claude_bills_cache_at_its_prices(stack: GatewayStack) -> None:
    """The same usage through `/compat/v1/messages` (forwarded untranslated) costs the same."""
    read, write = 7, 3
    messages = user(f"[cache read={read} write={write}] anthropic client, cached prompt")
    body = json.dumps(
        {"model": "anthropic/claude-sonnet-4-5", "max_tokens": 4096, "messages": messages, "stream": True}
    )
    reply = call("POST", stack.url("default", "compat/v1/messages"), body.encode(), ANTHROPIC_KEY)
    assert reply.status == 200, reply.body[:300]
    uncached_in, tokens_out = fake_anthropic_usage("claude-sonnet-4-5", messages)
    want = table_cost("anthropic", "claude-sonnet-4-5", uncached_in + read + write, tokens_out, read, write)
    record = stack.log_record(reply.log_id)
    assert costed(record) == (uncached_in + read + write, tokens_out, pytest.approx(want, abs=1e-12), 0, 1)


@pytest.mark.usefixtures("cache_reporting")
@pytest.mark.parametrize(
    ("model", "provider", "upstream_model"),
    [("openai/gpt-4o-mini", "openai", "gpt-4o-mini"), (f"workers-ai/{KIMI}", "workers-ai", KIMI)],
)
def test_anthropic_client_stream_from_an_openai_format_model_bills_cached_tokens(
    stack: GatewayStack, model: str, provider: str, upstream_model: str
) -> None:
    """Anthropic client, OpenAI-format upstream: the client sees the cached part apart, the record prices it."""
    read = 6
    messages = user(f"[cache read={read} write=0] anthropic client reading from {provider}")
    body = json.dumps({"model": model, "max_tokens": 4096, "messages": messages, "stream": True})
    reply = call("POST", stack.url("default", "compat/v1/messages"), body.encode(), ANTHROPIC_KEY)
    assert reply.status == 200, reply.body[:300]
    tokens_in, tokens_out = fake_openai_usage(upstream_model, messages, workers_ai=provider == "workers-ai")
    final = stream_usages(reply)[-1]  # message_delta
    assert (final["input_tokens"], final["cache_read_input_tokens"]) == (tokens_in - read, read)
    assert final["output_tokens"] == tokens_out
    want = table_cost(provider, upstream_model, tokens_in, tokens_out, read=read)
    record = stack.log_record(reply.log_id)
    assert costed(record) == (tokens_in, tokens_out, pytest.approx(want, abs=1e-12), 0, 1)


# ------------------------------------------------------------------------------------- custom cost


@pytest.mark.parametrize("include_usage", [True, False])
def test_custom_per_token_cost_on_a_stream(stack: GatewayStack, include_usage: bool) -> None:
    messages = user("custom cost on a stream, with a few more words")
    header = json.dumps({"per_token_in": 0.000003, "per_token_out": 0.000011})
    reply = compat(
        stack,
        chat_body("openai/gpt-4o-mini", messages, stream=True, include_usage=include_usage),
        **{"cf-aig-custom-cost": header},
    )
    tokens_in, tokens_out = fake_openai_usage("gpt-4o-mini", messages)
    want = float(tokens_in * Decimal("0.000003") + tokens_out * Decimal("0.000011"))
    assert costed(stack.log_record(reply.log_id)) == (tokens_in, tokens_out, pytest.approx(want, abs=1e-12), 1, 1)


@pytest.mark.usefixtures("cache_reporting")
def test_custom_cache_token_rates_on_a_translated_stream(stack: GatewayStack) -> None:
    read, write = 4, 2
    messages = user(f"[cache read={read} write={write}] custom cache rates")
    header = json.dumps(
        {"per_token_in": 0.00001, "per_token_out": 0.00002, "per_cache_read_token": 0.000001,
         "per_cache_write_token": 0.0000125}
    )  # fmt: skip
    reply = compat(
        stack, chat_body("anthropic/claude-sonnet-4-5", messages, stream=True), **{"cf-aig-custom-cost": header}
    )
    uncached_in, tokens_out = fake_anthropic_usage("claude-sonnet-4-5", messages)
    want = float(
        uncached_in * Decimal("0.00001")
        + read * Decimal("0.000001")
        + write * Decimal("0.0000125")
        + tokens_out * Decimal("0.00002")
    )
    record = stack.log_record(reply.log_id)
    assert costed(record) == (uncached_in + read + write, tokens_out, pytest.approx(want, abs=1e-12), 1, 1)


def test_custom_total_cost_on_a_stream_without_usage(stack: GatewayStack) -> None:
    """`total_cost` needs no usage at all: a passthrough stream that carries none is still costed."""
    body = chat_body("gpt-4o-mini", user("total cost, no usage"), stream=True)
    headers = {**OPENAI_KEY, "cf-aig-custom-cost": '{"total_cost": 0.0042}'}
    reply = call("POST", stack.url("default", "openai/chat/completions"), body, headers)
    assert reply.status == 200 and stream_usages(reply) == []
    record = stack.log_record(reply.log_id)
    assert costed(record) == (None, None, 0.0042, 1, 1)
