"""Anthropic Messages client → OpenAI Chat Completions upstream: request, whole answer and error translation.

Streams are translated by `anthropic_openai_stream.AnthropicStream`. Rules chosen where the formats differ:

- `max_tokens` stays `max_tokens` (Workers AI, Moonshot and groq do not know `max_completion_tokens`).
- System text blocks are joined with a blank line into one `system` message; `cache_control` is dropped.
- A user turn's `tool_result` blocks come first, as `tool` messages in their order; the rest of the turn
  follows as one user message. Tool messages carry text only: an image or PDF in a tool result is replaced
  by a note and attached to that following user message instead. `is_error` results read `Error: ...`.
- Assistant text blocks are joined with a blank line; thinking → `reasoning_content` (+ `reasoning_signature`);
  `redacted_thinking` is dropped.
- `top_k` and tool `strict` are dropped (no common OpenAI equivalent; `strict` breaks non-OpenAI hosts).
- Reasoning: `thinking.type: disabled` sends no `reasoning_effort`; otherwise `output_config.effort` wins
  (low/medium/high as is, xhigh/max → high), else an `enabled` budget maps ≤2048 low, ≤8192 medium, else high;
  `adaptive` without an effort leaves the upstream's default.
- Answers: `thinking_blocks` (thinking and redacted_thinking) come back as they are; else reasoning becomes
  a `thinking` block whose signature is the upstream's `reasoning_signature` or "" (the Anthropic SDK accepts
  ""). Cache reads and writes are taken out of `prompt_tokens`. Tool arguments that are not a JSON object are
  kept as `{"_raw": "<text>"}` so the client sees them, never a silent `{}`; empty arguments mean `{}`.
- A 2xx body that is not a chat completion (or is an error object) raises TranslationError: treat it as a 502.
"""

from __future__ import annotations

from typing import Any

import orjson

from switchpoint.formats.anthropic_openai_stream import (
    AnthropicStream,
    anthropic_usage,
    error_body,
    error_message,
    gateway_usage,
    obj_of,
    stop_reason,
    text_of,
    upstream_error_message,
)
from switchpoint.formats.translator import TranslationError
from switchpoint.formats.usage import Usage

JSON = dict[str, Any]
_EFFORTS = {"low": "low", "medium": "medium", "high": "high", "xhigh": "high", "max": "high"}
_NOTES = {"image_url": "[image attached in the next user message]", "file": "[file attached in the next user message]"}


class AnthropicToOpenAI:
    """One Anthropic Messages call served by an OpenAI Chat Completions upstream (`model` is the upstream id)."""

    def __init__(self, model: str) -> None:
        self.model = model
        self._stream = AnthropicStream(model)
        self._usage: Usage | None = None

    def request(self, body: dict[str, Any]) -> dict[str, Any]:
        return translate_request(body, self.model)

    def response(self, body: bytes) -> bytes:
        message, self._usage = translate_response(body, self.model)
        return orjson.dumps(message)

    def stream(self, chunk: bytes) -> bytes:
        return self._stream.feed(chunk)

    def close(self) -> bytes:
        return self._stream.close()

    def stream_error(self, status: int, message: str) -> bytes:
        return self._stream.error(status, message)

    def error(self, status: int, body: bytes) -> tuple[int, bytes]:
        return status, error_body(status, upstream_error_message(status, body))

    @property
    def failure(self) -> str | None:
        return self._stream.failure

    @property
    def usage(self) -> Usage | None:
        return self._usage if self._usage is not None else self._stream.usage


# --- requests -------------------------------------------------------------------------------------------


def translate_request(body: dict[str, Any], model: str) -> JSON:
    """An Anthropic Messages request body → an OpenAI chat completions body for `model`."""
    system = _system(body.get("system"))
    out: JSON = {"model": model, "messages": ([{"role": "system", "content": system}] if system else [])}
    out["messages"] += _messages(body.get("messages"))
    tools = _tools(body.get("tools"))
    if tools:
        out["tools"] = tools
        _tool_choice(body.get("tool_choice"), out)
    for key in ("max_tokens", "temperature", "top_p"):  # max_tokens as is: see the module docstring
        if isinstance(body.get(key), int | float) and not isinstance(body.get(key), bool):
            out[key] = body[key]
    stops = body.get("stop_sequences")
    if isinstance(stops, list) and stops:
        out["stop"] = [s for s in stops if isinstance(s, str)]
    if body.get("stream") is True:
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    if user := text_of(obj_of(body.get("metadata")).get("user_id")):
        out["user"] = user
    if effort := _reasoning_effort(body):
        out["reasoning_effort"] = effort
    _output_format(body.get("output_config"), out)
    if body.get("mcp_servers"):
        raise TranslationError("mcp_servers cannot be used with an OpenAI-format upstream", "mcp_servers")
    return out


def _system(value: Any) -> str:
    if value is None or isinstance(value, str):
        return value or ""
    if not isinstance(value, list):
        raise TranslationError("system must be a string or a list of text blocks", "system")
    texts = []
    for i, block in enumerate(value):
        if not isinstance(block, dict) or block.get("type") != "text":
            raise TranslationError(f"system[{i}] must be a text block", f"system[{i}]")
        texts.append(_text(block, f"system[{i}]"))
    return "\n\n".join(texts)


def _text(block: JSON, where: str, key: str = "text") -> str:
    value = block.get(key)
    if not isinstance(value, str):
        raise TranslationError(f"{where}.{key} must be a string", f"{where}.{key}")
    return value


def _blocks(content: Any, where: str) -> list[JSON]:
    if not isinstance(content, list) or not all(isinstance(b, dict) for b in content):
        raise TranslationError(f"{where}.content must be a string or a list of content blocks", f"{where}.content")
    return content


def _messages(messages: Any) -> list[JSON]:
    if not isinstance(messages, list) or not messages:
        raise TranslationError("messages must be a non-empty list", "messages")
    out: list[JSON] = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise TranslationError(f"{where} must be an object", where)
        role, content = message.get("role"), message.get("content")
        if isinstance(content, str) and role in ("user", "assistant"):
            out.append({"role": role, "content": content})
        elif role == "user":
            out += _user(content, where)
        elif role == "assistant":
            out.append(_assistant(content, where))
        else:
            raise TranslationError(f"{where}.role must be 'user' or 'assistant'", f"{where}.role")
    return out


def _user(content: Any, where: str) -> list[JSON]:
    """Tool results first (one `tool` message each), then the turn's other parts as one user message."""
    results: list[JSON] = []
    carried: list[JSON] = []  # images and files out of tool results, shown in the user message after them
    parts: list[JSON] = []
    for j, block in enumerate(_blocks(content, where)):
        at = f"{where}.content[{j}]"
        if block.get("type") == "tool_result":
            results.append(_tool_result(block, carried, at))
        else:
            parts += _user_part(block, at)
    parts = carried + parts
    if parts or not results:
        only_text = len(parts) == 1 and parts[0]["type"] == "text"
        results.append({"role": "user", "content": parts[0]["text"] if only_text else parts or ""})
    return results


def _user_part(block: JSON, where: str) -> list[JSON]:
    kind = block.get("type")
    if kind == "text":
        return [{"type": "text", "text": _text(block, where)}]
    if kind == "image":
        return [{"type": "image_url", "image_url": {"url": _source_url(obj_of(block.get("source")), where, "image")}}]
    if kind == "document":
        return _document(block, where)
    if kind == "search_result":
        texts = [text_of(b.get("text")) for b in _blocks(block.get("content"), where)]
        return [{"type": "text", "text": "\n".join([text_of(block.get("title")), *texts]).strip()}]
    raise TranslationError(f"{where}: content block type {kind!r} cannot be sent in a user message", where)


def _source_url(source: JSON, where: str, what: str) -> str:
    kind = source.get("type")
    if kind == "base64":
        return f"data:{text_of(source.get('media_type'))};base64,{text_of(source.get('data'))}"
    if kind == "url" and text_of(source.get("url")):
        return text_of(source.get("url"))
    raise TranslationError(f"{where}: {what} source {kind!r} is not supported upstream (use base64 or url)", where)


def _document(block: JSON, where: str) -> list[JSON]:
    source = obj_of(block.get("source"))
    kind = source.get("type")
    if kind == "text":
        return [{"type": "text", "text": _text(source, f"{where}.source", "data")}]
    if kind == "content":
        inner = source.get("content")
        if isinstance(inner, str):
            return [{"type": "text", "text": inner}]
        return [part for j, b in enumerate(_blocks(inner, where)) for part in _user_part(b, f"{where}.source[{j}]")]
    if kind == "base64":
        name = text_of(block.get("title")) or "document.pdf"
        return [{"type": "file", "file": {"filename": name, "file_data": _source_url(source, where, "document")}}]
    raise TranslationError(f"{where}: document source {kind!r} is not supported upstream (use base64 or text)", where)


def _tool_result(block: JSON, carried: list[JSON], where: str) -> JSON:
    call_id = block.get("tool_use_id")
    if not isinstance(call_id, str) or not call_id:
        raise TranslationError(f"{where}.tool_use_id must be a non-empty string", f"{where}.tool_use_id")
    content = block.get("content", "")
    texts: list[str] = []
    if isinstance(content, str):
        texts.append(content)
    else:
        for j, inner in enumerate(_blocks(content, where)):
            for part in _user_part(inner, f"{where}.content[{j}]"):
                if part["type"] == "text":
                    texts.append(part["text"])
                else:
                    carried.append(part)
                    texts.append(_NOTES[part["type"]])
    text = "\n".join(texts)
    if block.get("is_error") is True:
        text = f"Error: {text}" if text else "Error"
    return {"role": "tool", "tool_call_id": call_id, "content": text}


def _assistant(content: Any, where: str) -> JSON:
    texts: list[str] = []
    thoughts: list[str] = []
    calls: list[JSON] = []
    signature = ""
    for j, block in enumerate(_blocks(content, where)):
        at, kind = f"{where}.content[{j}]", block.get("type")
        if kind == "text":
            texts.append(_text(block, at))
        elif kind == "tool_use":
            calls.append(_tool_call(block, at))
        elif kind == "thinking":
            thoughts.append(_text(block, at, "thinking"))
            signature = text_of(block.get("signature")) or signature
        elif kind != "redacted_thinking":
            raise TranslationError(f"{at}: content block type {kind!r} cannot be sent to this upstream", at)
    message: JSON = {"role": "assistant", "content": "\n\n".join(texts) if texts else (None if calls else "")}
    if calls:
        message["tool_calls"] = calls
    if any(thoughts):
        message["reasoning_content"] = "\n\n".join(t for t in thoughts if t)
    if signature:
        message["reasoning_signature"] = signature
    return message


def _tool_call(block: JSON, where: str) -> JSON:
    call_id, name = block.get("id"), block.get("name")
    if not isinstance(call_id, str) or not call_id or not isinstance(name, str) or not name:
        raise TranslationError(f"{where}: tool_use needs a non-empty id and name", where)
    try:
        arguments = orjson.dumps(block.get("input", {})).decode()
    except orjson.JSONEncodeError as exc:
        raise TranslationError(f"{where}.input cannot be encoded as JSON: {exc}", f"{where}.input") from exc
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def _tools(tools: Any) -> list[JSON]:
    if tools is None:
        return []
    if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
        raise TranslationError("tools must be a list of tool objects", "tools")
    out, unsupported = [], []
    for i, tool in enumerate(tools):
        kind, name = tool.get("type"), tool.get("name")
        if kind not in (None, "custom"):
            unsupported.append(f"{name} ({kind})" if name else str(kind))
            continue
        if not isinstance(name, str) or not name:
            raise TranslationError(f"tools[{i}].name must be a non-empty string", f"tools[{i}].name")
        function: JSON = {"name": name}
        if text_of(tool.get("description")):
            function["description"] = tool["description"]
        schema = tool.get("input_schema")
        function["parameters"] = schema if isinstance(schema, dict) else {"type": "object", "properties": {}}
        out.append({"type": "function", "function": function})
    if unsupported:
        names = ", ".join(unsupported)
        raise TranslationError(f"Anthropic server and built-in tools cannot run on this upstream: {names}", "tools")
    return out


def _tool_choice(choice: Any, out: JSON) -> None:
    if choice is None:
        return
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind in ("auto", "any", "none"):
        out["tool_choice"] = {"auto": "auto", "any": "required", "none": "none"}[str(kind)]
    elif kind == "tool" and isinstance(choice, dict) and isinstance(choice.get("name"), str):
        out["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    else:
        raise TranslationError("tool_choice must be auto, any, tool (with a name) or none", "tool_choice")
    if isinstance(choice, dict) and choice.get("disable_parallel_tool_use") is True and kind != "none":
        out["parallel_tool_calls"] = False


def _reasoning_effort(body: JSON) -> str | None:
    thinking = obj_of(body.get("thinking"))
    if thinking.get("type") == "disabled":
        return None
    effort = text_of(obj_of(body.get("output_config")).get("effort"))
    if effort in _EFFORTS:
        return _EFFORTS[effort]
    if thinking.get("type") != "enabled":
        return None
    budget = thinking.get("budget_tokens")
    budget = budget if isinstance(budget, int) and not isinstance(budget, bool) else 0
    return "low" if budget <= 2048 else "medium" if budget <= 8192 else "high"


def _output_format(config: Any, out: JSON) -> None:
    """`output_config.format` (structured outputs) → `response_format: json_schema`."""
    fmt = obj_of(obj_of(config).get("format"))
    if fmt.get("type") == "json_schema" and isinstance(fmt.get("schema"), dict):
        out["response_format"] = {"type": "json_schema", "json_schema": {"name": "output", "schema": fmt["schema"]}}


# --- answers --------------------------------------------------------------------------------------------


def translate_response(body: bytes, model: str) -> tuple[JSON, Usage | None]:
    """An OpenAI `chat.completion` (or Workers AI's `{"result": ...}` around one) → an Anthropic Message."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise TranslationError(f"The upstream answer is not JSON: {exc}") from exc
    answer = obj_of(obj)
    if "choices" in obj_of(answer.get("result")):
        answer = answer["result"]
    choices = answer.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise TranslationError(f"The upstream answer is not a chat completion: {error_message(obj) or body[:200]!r}")
    upstream_id = text_of(answer.get("id")) or "unknown"
    message = obj_of(choices[0].get("message"))
    content = _answer_blocks(message, upstream_id)
    reason = stop_reason(choices[0].get("finish_reason"), any(block["type"] == "tool_use" for block in content))
    if text_of(message.get("refusal")) and not message.get("content"):
        content.append({"type": "text", "text": message["refusal"]})
        reason = "refusal"
    translated = {
        "id": f"msg_{upstream_id}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": reason,
        "stop_sequence": None,
        "usage": anthropic_usage(answer.get("usage")),
    }
    return translated, gateway_usage(answer.get("usage"))


def _answer_blocks(message: JSON, upstream_id: str) -> list[JSON]:
    blocks = _thinking_blocks(message.get("thinking_blocks"))
    reasoning = text_of(message.get("reasoning_content")) or text_of(message.get("reasoning"))
    signature = text_of(message.get("reasoning_signature"))
    if (reasoning or signature) and not blocks:  # signed thinking without text is still a block
        blocks.append({"type": "thinking", "thinking": reasoning, "signature": signature})
    content = message.get("content")
    if isinstance(content, list):  # some servers answer with content parts
        content = "".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    if isinstance(content, str) and content:
        blocks.append({"type": "text", "text": content})
    calls = message.get("tool_calls")
    if not isinstance(calls, list):
        legacy = message.get("function_call")
        calls = [{"function": legacy}] if isinstance(legacy, dict) else []
    for i, call in enumerate(c for c in calls if isinstance(c, dict)):
        function = obj_of(call.get("function"))
        call_id = text_of(call.get("id")) or f"toolu_{upstream_id}_{i}"
        arguments = parse_arguments(function.get("arguments"))
        blocks.append({"type": "tool_use", "id": call_id, "name": text_of(function.get("name")), "input": arguments})
    return blocks


def _thinking_blocks(blocks: Any) -> list[JSON]:
    """The well-formed thinking and redacted_thinking blocks of an OpenAI `thinking_blocks` list, in order."""
    out: list[JSON] = []
    for block in (obj_of(b) for b in (blocks if isinstance(blocks, list) else [])):
        kind, text, data = block.get("type"), block.get("thinking"), block.get("data")
        if kind == "thinking" and isinstance(text, str):
            out.append({"type": kind, "thinking": text, "signature": text_of(block.get("signature"))})
        elif kind == "redacted_thinking" and isinstance(data, str):
            out.append({"type": kind, "data": data})
    return out


def parse_arguments(raw: Any) -> JSON:
    """Tool-call arguments → the `input` object; anything that is not one is kept as `{"_raw": text}`."""
    if isinstance(raw, dict):
        return raw
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return {}
    text = raw if isinstance(raw, str) else orjson.dumps(raw).decode()
    try:
        value = orjson.loads(text)
        if isinstance(value, str):  # double-encoded by some servers
            value = orjson.loads(value)
    except orjson.JSONDecodeError:
        return {"_raw": text}
    return value if isinstance(value, dict) else {"_raw": text}
