"""Round trips through both translators lose nothing that both dialects can express.

Each property translates there and back with the public translator API only (`OpenAIToAnthropic` and
`AnthropicToOpenAI`: `request`, `response`, `stream`, `close`) and compares the two ends after a
normalisation that applies only the documented differences between the dialects:

- requests: consecutive same-role turns are merged (OpenAI `tool` messages belong to the user turn), system
  and developer texts are one system text joined by a blank line, assistant texts are joined by a blank line,
  a user turn's tool results come before its other parts, tool-result parts are joined by a newline and
  `is_error` is written as an `Error: ` prefix, empty texts are dropped, a missing max_tokens is the default
  4096, a missing tool schema is the empty object schema, an empty description is none, tool_choice defaults
  to auto (and is dropped with the tools), `parallel_tool_calls: false` means nothing with tool_choice none,
  `stop: "x"` is `["x"]`, `image/jpg` is `image/jpeg`;
- answers: text blocks are concatenated, blocks come in the order thinking, text, tool calls, stop reasons
  map through the narrower OpenAI set (`stop_sequence`/`pause_turn` → `end_turn`, a context-window stop →
  `max_tokens`, a plain stop that carried tool calls → `tool_use`), `""` content is no content.

Streams are cut at random byte boundaries at both stages.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from switchpoint.formats.anthropic_openai import AnthropicToOpenAI
from switchpoint.formats.openai_anthropic import OpenAIToAnthropic

JSON = dict[str, Any]
MODEL = "claude-sonnet-4-6"
DEFAULT_MAX_TOKENS = 4096  # what the gateway passes as `default_max_tokens` (surfaces.compat)
EMPTY_SCHEMA = {"type": "object", "properties": {}}
PROPERTY = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def o2a() -> OpenAIToAnthropic:
    return OpenAIToAnthropic(MODEL, default_max_tokens=DEFAULT_MAX_TOKENS)


def a2o() -> AnthropicToOpenAI:
    return AnthropicToOpenAI(MODEL)


# -- strategies --------------------------------------------------------------------------------------------

texts = st.text(min_size=1, max_size=16)
maybe_texts = st.text(max_size=8)  # may be empty: dropped by the translators, and by the normalisation
ids = st.from_regex(r"[A-Za-z0-9_:.-]{1,12}", fullmatch=True)
names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_-]{0,15}", fullmatch=True)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=10,
)
json_objects = st.dictionaries(st.text(max_size=6), json_values, max_size=4)
schemas = json_objects | st.builds(
    lambda props: {"type": "object", "properties": {k: {"type": "string"} for k in props}}, st.lists(names)
)
unit = st.floats(0, 1, allow_nan=False)
MEDIA = ["image/jpeg", "image/png", "image/gif", "image/webp"]
b64 = st.binary(min_size=1, max_size=12).map(lambda raw: base64.b64encode(raw).decode())
https_urls = st.from_regex(r"https://[a-z]{1,8}\.example/[a-z0-9]{0,8}\.png", fullmatch=True)


def optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


def compact(obj: JSON) -> JSON:
    return {k: v for k, v in obj.items() if v is not None}


# OpenAI requests


def text_parts(strategy: st.SearchStrategy[str] = maybe_texts) -> st.SearchStrategy[list[JSON]]:
    return st.lists(strategy.map(lambda t: {"type": "text", "text": t}), min_size=1, max_size=3)


openai_images = st.one_of(
    https_urls,
    st.builds(lambda m, d: f"data:{m};base64,{d}", st.sampled_from([*MEDIA, "image/jpg"]), b64),
).map(lambda url: {"type": "image_url", "image_url": {"url": url}})
openai_user = st.builds(
    lambda c: {"role": "user", "content": c},
    maybe_texts | st.lists(text_parts().map(lambda p: p[0]) | openai_images, min_size=1, max_size=3),
)
openai_system = st.builds(
    lambda role, c: {"role": role, "content": c}, st.sampled_from(["system", "developer"]), maybe_texts | text_parts()
)
openai_calls = st.lists(
    st.builds(
        lambda i, n, args: {"id": i, "type": "function", "function": {"name": n, "arguments": args}},
        ids,
        names,
        json_objects.map(lambda o: orjson.dumps(o).decode()) | st.just(""),
    ),
    max_size=3,
)
openai_assistant = st.builds(
    lambda content, calls: compact({"role": "assistant", "content": content, "tool_calls": calls or None}),
    st.none() | maybe_texts | text_parts(),
    openai_calls,
)
openai_tool = st.builds(lambda i, c: {"role": "tool", "tool_call_id": i, "content": c}, ids, maybe_texts | text_parts())
openai_tools = st.lists(
    st.builds(
        lambda n, d, p: {"type": "function", "function": compact({"name": n, "description": d, "parameters": p})},
        names,
        optional(maybe_texts),
        optional(schemas),
    ),
    max_size=3,
)


@st.composite
def openai_requests(draw: st.DrawFn) -> JSON:
    messages = draw(st.lists(openai_system | openai_user | openai_assistant | openai_tool, max_size=8))
    messages.insert(draw(st.integers(0, len(messages))), {"role": "user", "content": draw(texts)})
    body: JSON = {"model": "anthropic/" + MODEL, "messages": messages}
    tools = draw(openai_tools)
    if tools:
        body["tools"] = tools
        tool_names = [t["function"]["name"] for t in tools]
        function = st.sampled_from(tool_names).map(lambda n: {"type": "function", "function": {"name": n}})
        body["tool_choice"] = draw(optional(st.sampled_from(["auto", "none", "required"]) | function))
        body["parallel_tool_calls"] = draw(optional(st.booleans()))
    body["temperature"] = draw(optional(unit))
    body["top_p"] = draw(optional(unit))
    body["stop"] = draw(optional(texts | st.lists(texts, max_size=3)))
    body[draw(st.sampled_from(["max_tokens", "max_completion_tokens"]))] = draw(optional(st.integers(1, 10**6)))
    body["user"] = draw(optional(texts))
    return compact(body)


# Anthropic requests

anthropic_text = texts.map(lambda t: {"type": "text", "text": t})
anthropic_image = st.one_of(
    st.builds(lambda m, d: {"type": "base64", "media_type": m, "data": d}, st.sampled_from(MEDIA), b64),
    https_urls.map(lambda u: {"type": "url", "url": u}),
).map(lambda source: {"type": "image", "source": source})
anthropic_result = st.builds(
    lambda i, c, e: compact({"type": "tool_result", "tool_use_id": i, "content": c, "is_error": e}),
    ids,
    optional(maybe_texts | st.lists(anthropic_text, max_size=3)),
    optional(st.booleans()),
)
anthropic_tool_use = st.builds(
    lambda i, n, x: {"type": "tool_use", "id": i, "name": n, "input": x}, ids, names, json_objects
)
anthropic_thinking = st.builds(lambda t, s: {"type": "thinking", "thinking": t, "signature": s}, texts, ids)
anthropic_user = st.builds(
    lambda c: {"role": "user", "content": c},
    texts | st.lists(anthropic_text | anthropic_image | anthropic_result, min_size=1, max_size=4),
)


def _assistant(thinking: list[JSON], content: str | list[JSON]) -> JSON:
    if isinstance(content, str) and thinking:
        content = [{"type": "text", "text": content}]
    return {"role": "assistant", "content": thinking + content if thinking else content}


anthropic_assistant = st.builds(
    _assistant,
    st.lists(anthropic_thinking, max_size=1),
    texts | st.lists(anthropic_text | anthropic_tool_use, min_size=1, max_size=4),
)


@st.composite
def anthropic_requests(draw: st.DrawFn) -> JSON:
    messages = draw(st.lists(anthropic_user | anthropic_assistant, min_size=1, max_size=6))
    body: JSON = {"model": MODEL, "messages": messages, "max_tokens": draw(st.integers(1, 10**6))}
    body["system"] = draw(optional(texts | st.lists(anthropic_text, max_size=3)))
    tools = draw(
        st.lists(
            st.builds(
                lambda n, d, s: compact({"name": n, "description": d, "input_schema": s}),
                names,
                optional(maybe_texts),
                schemas,
            ),
            max_size=3,
        )
    )
    if tools:
        body["tools"] = tools
        kinds = st.sampled_from(["auto", "any", "none"]).map(lambda k: {"type": k})
        named = st.sampled_from([t["name"] for t in tools]).map(lambda n: {"type": "tool", "name": n})
        choice = draw(optional(kinds | named))
        if choice is not None and draw(st.booleans()):
            choice["disable_parallel_tool_use"] = draw(st.booleans())
        body["tool_choice"] = choice
    body["temperature"] = draw(optional(unit))
    body["top_p"] = draw(optional(unit))
    body["stop_sequences"] = draw(optional(st.lists(texts, min_size=1, max_size=3)))
    user = draw(optional(texts))
    body["metadata"] = {"user_id": user} if user else None
    return compact(body)


# -- request normalisation -----------------------------------------------------------------------------------


class Turns:
    """Merges consecutive same-role contributions into one turn (the documented alternation rule)."""

    def __init__(self) -> None:
        self.turns: list[JSON] = []

    def add(self, role: str, **parts: list[Any]) -> None:
        if not any(parts.values()):
            return  # a message with nothing left in it is dropped
        if not self.turns or self.turns[-1]["role"] != role:
            self.turns.append({"role": role, **{k: [] for k in ("results", "parts", "texts", "calls", "thinking")}})
        for key, values in parts.items():
            self.turns[-1][key] += values

    def done(self) -> list[JSON]:
        out = []
        for turn in self.turns:
            if turn["role"] == "assistant":
                out.append({"role": "assistant", "text": "\n\n".join(turn["texts"]), "calls": turn["calls"],
                            "thinking": turn["thinking"]})  # fmt: skip
            else:
                out.append({"role": "user", "results": turn["results"], "parts": turn["parts"]})
        return out


def _image_url(url: str) -> str:
    """`data:image/JPG;x=y;base64,...` → `data:image/jpeg;base64,...`; other URLs as they are."""
    if not url.startswith("data:"):
        return url
    head, _, data = url[5:].partition(",")
    media = head.split(";")[0].lower()
    return f"data:{'image/jpeg' if media == 'image/jpg' else media};base64,{data}"


def _openai_texts(content: Any) -> list[str]:
    if content is None:
        return []
    if isinstance(content, str):
        return [content] if content else []
    return [p["text"] for p in content if p.get("type") == "text" and p["text"]]


def _openai_parts(content: Any) -> list[tuple[str, str]]:
    if isinstance(content, str):
        return [("text", content)] if content else []
    parts = []
    for p in content:
        if p["type"] == "text" and p["text"]:
            parts.append(("text", p["text"]))
        elif p["type"] == "image_url":
            parts.append(("image", _image_url(p["image_url"]["url"])))
    return parts


def _arguments(raw: Any) -> Any:
    return orjson.loads(raw) if isinstance(raw, str) and raw.strip() else raw if isinstance(raw, dict) else {}


def canon_openai_request(body: JSON) -> JSON:
    system: list[str] = []
    turns = Turns()
    for m in body["messages"]:
        role = m["role"]
        if role in ("system", "developer"):
            system += _openai_texts(m["content"])
        elif role == "tool":
            turns.add("user", results=[(m["tool_call_id"], "\n".join(_openai_texts(m.get("content"))))])
        elif role == "user":
            turns.add("user", parts=_openai_parts(m["content"]))
        else:
            calls = [(c["id"], c["function"]["name"], _arguments(c["function"].get("arguments")))
                     for c in m.get("tool_calls") or []]  # fmt: skip
            turns.add("assistant", texts=_openai_texts(m.get("content")), calls=calls)
    tools = [
        (f["name"], f.get("description") or None, f.get("parameters") or EMPTY_SCHEMA)
        for f in (t["function"] for t in body.get("tools") or [])
    ]
    choice: Any = None
    if tools:
        raw = body.get("tool_choice") or "auto"
        choice = ("function", raw["function"]["name"]) if isinstance(raw, dict) else raw
        choice = (choice, body.get("parallel_tool_calls") is False and raw != "none")
    stop = body.get("stop")
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or DEFAULT_MAX_TOKENS
    return {
        "system": "\n\n".join(system),
        "turns": turns.done(),
        "tools": tools,
        "tool_choice": choice,
        "stop": ([stop] if isinstance(stop, str) else stop) or None,
        "temperature": body.get("temperature"),
        "top_p": body.get("top_p"),
        "max_tokens": max_tokens,
        "user": body.get("user") or None,
    }


def _anthropic_texts(content: Any) -> list[str]:
    if content is None:
        return []
    if isinstance(content, str):
        return [content]
    return [b["text"] for b in content if b.get("type") == "text"]


def _tool_result_text(block: JSON) -> str:
    text = "\n".join(_anthropic_texts(block.get("content")))
    if block.get("is_error") is True:
        return f"Error: {text}" if text else "Error"
    return text


def _anthropic_image(source: JSON) -> str:
    if source["type"] == "url":
        return source["url"]
    return _image_url(f"data:{source['media_type']};base64,{source['data']}")


def canon_anthropic_request(body: JSON) -> JSON:
    system = body.get("system") or ""
    if isinstance(system, list):
        system = "\n\n".join(b["text"] for b in system)
    turns = Turns()
    for m in body["messages"]:
        content = m["content"]
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        if m["role"] == "user":
            results = [(b["tool_use_id"], _tool_result_text(b)) for b in blocks if b["type"] == "tool_result"]
            parts = [("text", b["text"]) if b["type"] == "text" else ("image", _anthropic_image(b["source"]))
                     for b in blocks if b["type"] in ("text", "image") and b.get("text") != ""]  # fmt: skip
            turns.add("user", results=results, parts=parts)
        else:
            texts = [b["text"] for b in blocks if b["type"] == "text" and b["text"]]
            calls = [(b["id"], b["name"], b["input"]) for b in blocks if b["type"] == "tool_use"]
            thinking = [(b["thinking"], b["signature"]) for b in blocks if b["type"] == "thinking"]
            turns.add("assistant", texts=texts, calls=calls, thinking=thinking)
    tools = [(t["name"], t.get("description") or None, t.get("input_schema") or EMPTY_SCHEMA)
             for t in body.get("tools") or []]  # fmt: skip
    choice: Any = None
    if tools:
        raw = body.get("tool_choice") or {"type": "auto"}
        kind = ("tool", raw["name"]) if raw["type"] == "tool" else raw["type"]
        choice = (kind, raw.get("disable_parallel_tool_use") is True and kind != "none")
    return {
        "system": system,
        "turns": turns.done(),
        "tools": tools,
        "tool_choice": choice,
        "stop": body.get("stop_sequences") or None,
        "temperature": body.get("temperature"),
        "top_p": body.get("top_p"),
        "max_tokens": body["max_tokens"],
        "user": (body.get("metadata") or {}).get("user_id") or None,
    }


# -- (a) and (b): requests there and back ---------------------------------------------------------------------


@PROPERTY
@given(openai_requests())
def test_openai_request_survives_anthropic_and_back(body: JSON) -> None:
    anthropic_body = o2a().request(orjson.loads(orjson.dumps(body)))
    back = a2o().request(orjson.loads(orjson.dumps(anthropic_body)))
    assert canon_openai_request(back) == canon_openai_request(body)


@PROPERTY
@given(anthropic_requests())
def test_anthropic_request_survives_openai_and_back(body: JSON) -> None:
    openai_body = a2o().request(orjson.loads(orjson.dumps(body)))
    back = o2a().request(orjson.loads(orjson.dumps(openai_body)))
    assert canon_anthropic_request(back) == canon_anthropic_request(body)


# -- (c): whole answers there and back -------------------------------------------------------------------------

ANTHROPIC_STOPS = ["end_turn", "max_tokens", "stop_sequence", "tool_use", "pause_turn", "refusal",
                   "model_context_window_exceeded", None]  # fmt: skip
_STOP_BACK = {"stop_sequence": "end_turn", "pause_turn": "end_turn", "model_context_window_exceeded": "max_tokens"}
counts = st.integers(0, 2**31)


def anthropic_stop(reason: str | None, has_tools: bool) -> str:
    """An Anthropic stop reason after a trip through OpenAI's finish reasons."""
    reason = _STOP_BACK.get(reason or "end_turn", reason or "end_turn")
    return "tool_use" if has_tools and reason == "end_turn" else reason


def openai_finish(reason: str | None, has_tools: bool) -> str:
    """An OpenAI finish reason after a trip through Anthropic's stop reasons."""
    reason = reason or "stop"
    return "tool_calls" if has_tools and reason == "stop" else reason


@st.composite
def anthropic_messages(draw: st.DrawFn, cache_writes: st.SearchStrategy[int] = st.just(0)) -> JSON:
    blocks = draw(st.lists(anthropic_thinking, max_size=1))
    blocks += draw(st.lists(maybe_texts.map(lambda t: {"type": "text", "text": t}) | anthropic_tool_use, max_size=4))
    usage = {"input_tokens": draw(counts), "output_tokens": draw(counts), "cache_read_input_tokens": draw(counts),
             "cache_creation_input_tokens": draw(cache_writes)}  # fmt: skip
    return {"id": "msg_" + draw(ids), "type": "message", "role": "assistant", "model": MODEL, "content": blocks,
            "stop_reason": draw(st.sampled_from(ANTHROPIC_STOPS)), "stop_sequence": None, "usage": usage}  # fmt: skip


def canon_anthropic_message(message: JSON) -> JSON:
    blocks = message["content"]
    calls = [(b["id"], b["name"], b["input"]) for b in blocks if b["type"] == "tool_use"]
    return {
        "thinking": [(b["thinking"], b["signature"]) for b in blocks if b["type"] == "thinking"],
        "text": "".join(b["text"] for b in blocks if b["type"] == "text") or None,
        "calls": calls,
        "stop_reason": anthropic_stop(message["stop_reason"], bool(calls)),
        "usage": {k: message["usage"].get(k) or 0 for k in ("input_tokens", "output_tokens",
                  "cache_read_input_tokens", "cache_creation_input_tokens")},
    }  # fmt: skip


def _message_there_and_back(message: JSON) -> JSON:
    completion = o2a().response(orjson.dumps(message))
    assert orjson.loads(completion)["object"] == "chat.completion"
    return orjson.loads(a2o().response(completion))


@PROPERTY
@given(anthropic_messages())
def test_anthropic_message_survives_openai_and_back(message: JSON) -> None:
    back = _message_there_and_back(message)
    assert back["type"] == "message"
    assert canon_anthropic_message(back) == canon_anthropic_message(message)


@settings(PROPERTY, max_examples=20)
@example(
    {"id": "msg_1", "type": "message", "role": "assistant", "model": MODEL, "content": [], "stop_reason": "end_turn",
     "usage": {"input_tokens": 0, "output_tokens": 0, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 1}}
)  # fmt: skip
@given(anthropic_messages(cache_writes=st.integers(1, 2**31)))
def test_anthropic_message_keeps_cache_writes_through_openai_and_back(message: JSON) -> None:
    back = _message_there_and_back(message)
    assert canon_anthropic_message(back)["usage"] == canon_anthropic_message(message)["usage"]


anthropic_redacted = st.builds(lambda d: {"type": "redacted_thinking", "data": d}, ids)


def canon_thinking(message: JSON) -> list[tuple[str, str]]:
    return [(b["type"], b.get("thinking") or b.get("data"), b.get("signature")) for b in message["content"]
            if b["type"] in ("thinking", "redacted_thinking")]  # fmt: skip


@settings(PROPERTY, max_examples=20)
@example(
    {"id": "msg_1", "type": "message", "role": "assistant", "model": MODEL, "stop_reason": "end_turn",
     "content": [{"type": "redacted_thinking", "data": "ENC"}, {"type": "thinking", "thinking": "t", "signature": "S"},
                 {"type": "text", "text": "hi"}], "usage": {"input_tokens": 1, "output_tokens": 2}}
)  # fmt: skip
@given(
    st.builds(
        lambda blocks: {"id": "msg_1", "type": "message", "role": "assistant", "model": MODEL, "content": blocks,
                        "stop_reason": "end_turn", "usage": {"input_tokens": 1, "output_tokens": 2}},
        st.lists(anthropic_thinking | anthropic_redacted, min_size=2, max_size=3),
    )
)  # fmt: skip
def test_anthropic_message_keeps_several_thinking_blocks_through_openai_and_back(message: JSON) -> None:
    assert canon_thinking(_message_there_and_back(message)) == canon_thinking(message)


@st.composite
def openai_completions(draw: st.DrawFn) -> JSON:
    calls = draw(openai_calls)
    message: JSON = {"role": "assistant", "content": draw(optional(maybe_texts)), "refusal": None}
    if calls:
        message["tool_calls"] = calls
    reasoning = draw(optional(texts))
    if reasoning:
        message["reasoning_content"] = reasoning
        message["reasoning_signature"] = draw(optional(ids))
    prompt, completion = draw(counts), draw(counts)
    usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
             "prompt_tokens_details": {"cached_tokens": draw(st.integers(0, prompt))}}  # fmt: skip
    finish = draw(st.sampled_from(["stop", "length", "tool_calls", "content_filter"]))
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
    return {"id": "chatcmpl-" + draw(ids), "object": "chat.completion", "created": 1700000000, "model": "gpt-4o",
            "choices": [choice], "usage": usage}  # fmt: skip


def canon_completion(body: JSON) -> JSON:
    message = body["choices"][0]["message"]
    calls = [(c["id"], c["function"]["name"], _arguments(c["function"]["arguments"]))
             for c in message.get("tool_calls") or []]  # fmt: skip
    reasoning = message.get("reasoning_content")
    usage = body["usage"]
    return {
        "text": message.get("content") or None,
        "reasoning": (reasoning, message.get("reasoning_signature") or None) if reasoning else None,
        "calls": calls,
        "finish_reason": openai_finish(body["choices"][0]["finish_reason"], bool(calls)),
        "usage": (usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"],
                  usage["prompt_tokens_details"]["cached_tokens"]),
    }  # fmt: skip


@PROPERTY
@given(openai_completions())
def test_openai_completion_survives_anthropic_and_back(completion: JSON) -> None:
    message = a2o().response(orjson.dumps(completion))
    assert orjson.loads(message)["type"] == "message"
    back = orjson.loads(o2a().response(message))
    assert canon_completion(back) == canon_completion(completion)


# -- (d): streams there and back -------------------------------------------------------------------------------


def sse(obj: JSON) -> bytes:
    return b"event: " + obj["type"].encode() + b"\ndata: " + orjson.dumps(obj) + b"\n\n"


def split(text: str, cuts: list[int]) -> list[str]:
    points = sorted({0, len(text), *(c % (len(text) + 1) for c in cuts)})
    return [text[a:b] for a, b in zip(points, points[1:], strict=False)]


def cut(blob: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(blob), *(c % (len(blob) + 1) for c in cuts)})
    return [blob[a:b] for a, b in zip(points, points[1:], strict=False)]


positions = st.lists(st.integers(0, 10**6), max_size=6)
USAGE_KEYS = ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")


@st.composite
def anthropic_streams(draw: st.DrawFn) -> tuple[JSON, list[JSON]]:
    """A realistic Anthropic event stream and what it says: (expected summary, events)."""
    usage = {"input_tokens": draw(counts), "output_tokens": 1, "cache_read_input_tokens": draw(counts),
             "cache_creation_input_tokens": draw(counts)}  # fmt: skip
    message = {"id": "msg_" + draw(ids), "type": "message", "role": "assistant", "model": MODEL, "content": [],
               "stop_reason": None, "stop_sequence": None, "usage": usage}  # fmt: skip
    events: list[JSON] = [{"type": "message_start", "message": message}]
    want: JSON = {"text": "", "thinking": "", "calls": [], "thinking_blocks": []}
    kinds = draw(st.lists(st.sampled_from(["text", "tool", "thinking", "redacted"]), max_size=4))
    for index, kind in enumerate(sorted(kinds, key=lambda k: k not in ("thinking", "redacted"))):  # thinking first
        if draw(st.booleans()):
            events.append({"type": "ping"})
        if kind == "redacted":
            data = draw(ids)
            block = {"type": "redacted_thinking", "data": data}
            events.append({"type": "content_block_start", "index": index, "content_block": block})
            want["thinking_blocks"].append(("redacted_thinking", data))
        elif kind == "tool":
            call_id, name, arguments = draw(ids), draw(names), draw(json_objects)
            start = {"type": "tool_use", "id": call_id, "name": name, "input": {}}
            events.append({"type": "content_block_start", "index": index, "content_block": start})
            pieces = (
                split(orjson.dumps(arguments).decode(), draw(positions)) if arguments or draw(st.booleans()) else []
            )
            for piece in pieces:
                delta = {"type": "input_json_delta", "partial_json": piece}
                events.append({"type": "content_block_delta", "index": index, "delta": delta})
            want["calls"].append((call_id, name, arguments))
        else:
            key, delta_type = ("text", "text_delta") if kind == "text" else ("thinking", "thinking_delta")
            block = (
                {"type": "text", "text": ""}
                if kind == "text"
                else {"type": "thinking", "thinking": "", "signature": ""}
            )
            events.append({"type": "content_block_start", "index": index, "content_block": block})
            for piece in draw(st.lists(texts, max_size=4)):
                events.append(
                    {"type": "content_block_delta", "index": index, "delta": {"type": delta_type, key: piece}}
                )
                want[key] += piece
            if kind == "thinking":
                signature = {"type": "signature_delta", "signature": draw(ids)}
                events.append({"type": "content_block_delta", "index": index, "delta": signature})
                want["thinking_blocks"].append(("thinking", signature["signature"]))
        events.append({"type": "content_block_stop", "index": index})
    stop = draw(st.sampled_from(ANTHROPIC_STOPS[:-1]))
    output = draw(counts)
    events.append({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                   "usage": {"output_tokens": output}})  # fmt: skip
    events.append({"type": "message_stop"})
    want["stop_reason"] = anthropic_stop(stop, bool(want["calls"]))
    want["usage"] = {key: usage[key] for key in USAGE_KEYS} | {"output_tokens": output}
    return want, events


def parse_sse(blob: bytes) -> list[tuple[str | None, str]]:
    """Strict reading of what the translators write: events of `event:`/`data:` lines, each ended by a blank line."""
    text = blob.decode()
    assert text == "" or text.endswith("\n\n"), text[-200:]
    out = []
    for raw in text.split("\n\n")[:-1]:
        event, data = None, []
        for line in raw.split("\n"):
            name, sep, value = line.partition(": ")
            assert sep and name in ("event", "data"), repr(line)
            if name == "event":
                event = value
            else:
                data.append(value)
        assert len(data) == 1, raw
        out.append((event, data[0]))
    return out


def summarize_anthropic(blob: bytes) -> JSON:
    """What an Anthropic SDK accumulates from a translated stream: texts, tool inputs, thinking blocks, stop
    reason, usage."""
    got: JSON = {"text": "", "thinking": "", "calls": [], "stop_reason": None, "usage": None, "signatures": [],
                 "thinking_blocks": []}  # fmt: skip
    blocks: dict[int, JSON] = {}
    for name, data in parse_sse(blob):
        event = orjson.loads(data)
        assert name == event["type"]
        kind = event["type"]
        assert kind != "error", event
        if kind == "content_block_start":
            blocks[event["index"]] = dict(event["content_block"], partial="")
        elif kind == "content_block_delta":
            delta, block = event["delta"], blocks[event["index"]]
            if delta["type"] == "text_delta":
                got["text"] += delta["text"]
            elif delta["type"] == "thinking_delta":
                got["thinking"] += delta["thinking"]
            elif delta["type"] == "signature_delta":
                block["signature"] += delta["signature"]
            elif delta["type"] == "input_json_delta":
                block["partial"] += delta["partial_json"]
        elif kind == "content_block_stop":
            block = blocks[event["index"]]
            if block["type"] == "tool_use":
                got["calls"].append((block["id"], block["name"], orjson.loads(block["partial"] or "{}")))
            elif block["type"] == "thinking":
                got["signatures"].append(block["signature"])
                got["thinking_blocks"].append(("thinking", block["signature"]))
            elif block["type"] == "redacted_thinking":
                got["thinking_blocks"].append(("redacted_thinking", block["data"]))
        elif kind == "message_delta":
            got["stop_reason"] = event["delta"]["stop_reason"]
            got["usage"] = {k: event["usage"][k] for k in USAGE_KEYS}
    assert parse_sse(blob)[-1][0] == "message_stop"
    return got


def stream_there_and_back(events: list[JSON], cuts_in: list[int], cuts_mid: list[int], usage: bool) -> JSON:
    """Anthropic events → OpenAIToAnthropic.stream (OpenAI chunks) → AnthropicToOpenAI.stream → a summary."""
    there = o2a()
    there.request({"messages": [{"role": "user", "content": "hi"}], "stream": True,
                   "stream_options": {"include_usage": usage}})  # fmt: skip
    blob = b"".join(sse(e) for e in events)
    chunks = b"".join(there.stream(piece) for piece in cut(blob, cuts_in)) + there.close()
    assert there.failure is None
    lines = parse_sse(chunks)
    assert lines[-1] == (None, "[DONE]")
    assert all(orjson.loads(data)["object"] == "chat.completion.chunk" for _, data in lines[:-1])
    back = a2o()
    out = b"".join(back.stream(piece) for piece in cut(chunks, cuts_mid)) + back.close()
    assert back.failure is None
    return summarize_anthropic(out)


@PROPERTY
@given(anthropic_streams(), positions, positions, st.booleans())
def test_anthropic_stream_survives_openai_chunks_and_back(
    case: tuple[JSON, list[JSON]], cuts_in: list[int], cuts_mid: list[int], usage: bool
) -> None:
    want, events = case
    got = stream_there_and_back(events, cuts_in, cuts_mid, usage)
    assert (got["text"], got["thinking"]) == (want["text"], want["thinking"])
    assert got["calls"] == want["calls"]
    assert got["thinking_blocks"] == want["thinking_blocks"]
    assert got["stop_reason"] == want["stop_reason"]
    if usage:
        assert got["usage"] == want["usage"]


def _signed(case: tuple[JSON, list[JSON]]) -> bool:
    return any(e["type"] == "content_block_start" and e["content_block"]["type"] == "thinking" for e in case[1])


def _thinking_then_text() -> tuple[JSON, list[JSON]]:
    """The everyday shape: a signed thinking block, then the answer's text."""
    start = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 1, "output_tokens": 1},
    }
    blocks = [
        (
            {"type": "thinking", "thinking": "", "signature": ""},
            [{"type": "thinking_delta", "thinking": "abc"}, {"type": "signature_delta", "signature": "SIG"}],
        ),
        ({"type": "text", "text": ""}, [{"type": "text_delta", "text": "hi"}]),
    ]
    events: list[JSON] = [{"type": "message_start", "message": start}]
    for i, (block, deltas) in enumerate(blocks):
        events.append({"type": "content_block_start", "index": i, "content_block": block})
        events += [{"type": "content_block_delta", "index": i, "delta": d} for d in deltas]
        events.append({"type": "content_block_stop", "index": i})
    events += [
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": 3},
        },
        {"type": "message_stop"},
    ]
    return {}, events  # fmt: skip


@settings(PROPERTY, max_examples=30)
@example(_thinking_then_text(), [], [])
@given(anthropic_streams().filter(_signed), positions, positions)
def test_anthropic_stream_keeps_the_thinking_signature(
    case: tuple[JSON, list[JSON]], cuts_in: list[int], cuts_mid: list[int]
) -> None:
    want = [e["delta"]["signature"] for e in case[1] if e["type"] == "content_block_delta"
            and e["delta"]["type"] == "signature_delta"]  # fmt: skip
    got = stream_there_and_back(case[1], cuts_in, cuts_mid, True)
    assert got["signatures"] == want
