"""An OpenAI Chat Completions client served by an Anthropic Messages upstream: requests out, answers back.

Parameters Anthropic cannot honour follow one rule: a parameter that would change the shape or the
guarantees of the answer the client gets back (`n` > 1, `logprobs`/`top_logprobs`, a JSON `response_format`,
non-empty `logit_bias`, audio output, web search, the deprecated `functions`) is rejected with a
TranslationError (a 400 naming the parameter); one that only tunes or annotates the call (penalties, `seed`,
`store`, `metadata`, `prediction`, `service_tier`, `verbosity`, prompt-cache keys, image `detail`) or that is
not part of OpenAI's API is dropped. Values Anthropic reads on a different scale (temperature above 1) are
rejected, never clamped. `top_k`, an extension Anthropic honours, is passed on.
"""

from __future__ import annotations

from typing import Any

import orjson

from switchpoint.formats import openai
from switchpoint.formats.openai_anthropic_stream import (
    JSON,
    StreamState,
    completion_body,
    error_fields,
    openai_error_type,
)
from switchpoint.formats.translator import TranslationError
from switchpoint.formats.usage import Usage

# reasoning_effort → thinking budget; "none" turns thinking off. Anthropic's minimum budget is 1024.
EFFORT_BUDGETS = {"minimal": 1024, "low": 1024, "medium": 4096, "high": 16384, "xhigh": 32768, "max": 32768}
_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
_REJECTED = {
    "n": "Anthropic returns one choice per request",
    "logprobs": "Anthropic does not return log probabilities",
    "top_logprobs": "Anthropic does not return log probabilities",
    "response_format": "Anthropic has no JSON response mode on this route",
    "logit_bias": "Anthropic does not support logit_bias",
    "audio": "Anthropic does not produce audio",
    "modalities": "Anthropic produces text only",
    "web_search_options": "web search is not available through this route",
    "functions": "the deprecated functions API is not translated; use tools",
    "function_call": "the deprecated functions API is not translated; use tool_choice",
}
_HARMLESS = {"n": (1,), "logprobs": (False,), "top_logprobs": (0,), "modalities": (["text"],), "logit_bias": ({},)}


class OpenAIToAnthropic:
    """Translator for one call: OpenAI chat body → Anthropic Messages, and the Anthropic answer back."""

    def __init__(self, model: str, *, default_max_tokens: int = 4096) -> None:
        self.model = model
        self.default_max_tokens = default_max_tokens
        self._stream = StreamState(model)
        self._usage: Usage | None = None

    def request(self, body: dict[str, Any]) -> dict[str, Any]:
        _reject_unsupported(body)
        system, messages = translate_messages(body.get("messages"))
        out: JSON = {"model": self.model, "messages": messages}
        if system:
            plain = len(system) == 1 and "cache_control" not in system[0]
            out["system"] = system[0]["text"] if plain else system
        explicit = _max_tokens(body)
        out["max_tokens"] = explicit or self.default_max_tokens
        _thinking(body, out, explicit)
        _sampling(body, out)
        _tools(body, out)
        user = body.get("user") or body.get("safety_identifier")
        if isinstance(user, str) and user:
            out["metadata"] = {"user_id": user}
        if "stream" in body:
            out["stream"] = body["stream"] is True
        options = body.get("stream_options")
        self._stream.include_usage = isinstance(options, dict) and options.get("include_usage") is True
        return out

    def response(self, body: bytes) -> bytes:
        """Raises TranslationError when the 2xx body is not a message: the upstream is at fault (answer 502)."""
        answer, self._usage = completion_body(body, self.model)
        return answer

    def stream(self, chunk: bytes) -> bytes:
        return self._stream.feed(chunk) if not self._stream.done else b""

    def close(self) -> bytes:
        return self._stream.close()

    def stream_error(self, status: int, message: str) -> bytes:
        if self._stream.done:
            return b""
        return self._stream.fail(message, openai_error_type(None, status))

    def error(self, status: int, body: bytes) -> tuple[int, bytes]:
        message, kind = error_fields(status, body)
        # 529 is Anthropic's own "overloaded" status; OpenAI-dialect clients, proxies and retry policies know
        # the same condition as 503. The type keeps saying overloaded_error.
        out_status = 503 if status == 529 else status
        return out_status, openai.error_body(message, openai_error_type(kind, status), kind)

    @property
    def failure(self) -> str | None:
        return self._stream.failure

    @property
    def usage(self) -> Usage | None:
        if self._usage is None and self._stream.started:
            return self._stream.tokens.usage()
        return self._usage


# -- request ------------------------------------------------------------------------------------------------


def _reject_unsupported(body: JSON) -> None:
    for name, why in _REJECTED.items():
        value = body.get(name)
        if value is None or value in _HARMLESS.get(name, ()):
            continue
        if name == "response_format" and isinstance(value, dict) and value.get("type") == "text":
            continue
        raise TranslationError(f"{name}={value!r:.80} is not supported: {why}", name)


def _max_tokens(body: JSON) -> int | None:
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise TranslationError(f"{name} must be a positive integer", name)
        return value
    return None


def _thinking(body: JSON, out: JSON, explicit: int | None) -> None:
    """reasoning_effort → an extended-thinking budget that fits under max_tokens (which counts thinking too).

    With no explicit limit, max_tokens grows by the budget so the answer keeps its default room; an explicit
    limit is kept (as OpenAI counts reasoning inside it) and the budget shrinks to fit below it.
    """
    effort = body.get("reasoning_effort")
    if effort is None:
        return
    if effort == "none":
        out["thinking"] = {"type": "disabled"}
        return
    if not isinstance(effort, str) or effort not in EFFORT_BUDGETS:
        raise TranslationError(f"reasoning_effort must be one of none, {', '.join(EFFORT_BUDGETS)}", "reasoning_effort")
    budget = EFFORT_BUDGETS[effort]
    if explicit is None:
        out["max_tokens"] = out["max_tokens"] + budget
    elif explicit <= budget:
        budget = explicit - 1
        if budget < 1024:
            name = "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
            raise TranslationError(f"{name} must be above 1024 to use reasoning_effort with Anthropic", name)
    out["thinking"] = {"type": "enabled", "budget_tokens": budget}


def _number(body: JSON, name: str, high: float) -> float | int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TranslationError(f"{name} must be a number", name)
    if not 0 <= value <= high:
        raise TranslationError(f"{name}={value} is outside 0–{high:g}, the range Anthropic accepts", name)
    return value


def _sampling(body: JSON, out: JSON) -> None:
    for name in ("temperature", "top_p"):
        value = _number(body, name, 1)
        if value is not None:
            out[name] = value
    top_k = body.get("top_k")
    if isinstance(top_k, int) and not isinstance(top_k, bool):
        out["top_k"] = top_k
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if stop is None or stop == []:
        return
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise TranslationError("stop must be a string or a list of strings", "stop")
    out["stop_sequences"] = stop


def _tools(body: JSON, out: JSON) -> None:
    tools = body.get("tools")
    if tools is None or tools == []:
        return  # no tools: tool_choice and parallel_tool_calls have nothing to act on
    if not isinstance(tools, list):
        raise TranslationError("tools must be an array", "tools")
    out["tools"] = [_tool(tool, f"tools[{i}]") for i, tool in enumerate(tools)]
    choice = _tool_choice(body.get("tool_choice"))
    if body.get("parallel_tool_calls") is False and choice.get("type") != "none":
        choice["disable_parallel_tool_use"] = True
    if body.get("tool_choice") is not None or len(choice) > 1:
        out["tool_choice"] = choice


def _tool(tool: object, where: str) -> JSON:
    if not isinstance(tool, dict) or tool.get("type", "function") != "function":
        raise TranslationError(f"{where}: only function tools can be sent to Anthropic", where)
    function = tool.get("function")
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(function, dict) or not isinstance(name, str) or not name:
        raise TranslationError(f"{where}.function.name is required", f"{where}.function.name")
    schema = function.get("parameters")
    out: JSON = {"name": name, "input_schema": schema if schema else {"type": "object", "properties": {}}}
    if isinstance(function.get("description"), str):
        out["description"] = function["description"]
    if function.get("strict") is True:
        out["strict"] = True
    return _with_cache(out, tool)


def _tool_choice(choice: object) -> JSON:
    simple = {None: "auto", "auto": "auto", "none": "none", "required": "any"}
    if isinstance(choice, str | None) and choice in simple:
        return {"type": simple[choice]}
    function = choice.get("function") if isinstance(choice, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    if isinstance(choice, dict) and choice.get("type") == "function" and isinstance(name, str):
        return {"type": "tool", "name": name}
    raise TranslationError("tool_choice must be auto, none, required or a named function", "tool_choice")


def translate_messages(raw: object) -> tuple[list[JSON], list[JSON]]:
    """OpenAI messages → (system blocks, alternating Anthropic turns); same-role neighbours are merged."""
    if not isinstance(raw, list) or not raw:
        raise TranslationError("messages must be a non-empty array", "messages")
    system: list[JSON] = []
    turns: list[JSON] = []
    for i, message in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise TranslationError(f"{where} must be an object", where)
        role = message.get("role")
        if role in ("system", "developer"):
            system += _text_blocks(message.get("content"), where)
            continue
        role, blocks = _turn(role, message, where)
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] += blocks
        else:
            turns.append({"role": role, "content": blocks})
    if not turns:
        raise TranslationError("messages must include a user or assistant message", "messages")
    return system, turns


def _turn(role: object, message: JSON, where: str) -> tuple[str, list[JSON]]:
    if role == "user":
        return "user", _user_blocks(message.get("content"), where)
    if role == "assistant":
        return "assistant", _assistant_blocks(message, where)
    if role == "tool":
        return "user", [_tool_result(message, where)]
    raise TranslationError(f"{where}: role {role!r} cannot be sent to Anthropic", f"{where}.role")


def _with_cache(block: JSON, part: JSON) -> JSON:
    if isinstance(part.get("cache_control"), dict):
        block["cache_control"] = part["cache_control"]
    return block


def _text_blocks(content: object, where: str) -> list[JSON]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise TranslationError(f"{where}.content must be a string or an array of parts", f"{where}.content")
    return [block for j, part in enumerate(content) for block in _text_part(part, f"{where}.content[{j}]")]


def _text_part(part: object, where: str) -> list[JSON]:
    """A text (or an earlier answer's refusal) part → its text block; nothing when it is empty."""
    if isinstance(part, dict) and part.get("type") in ("text", "refusal"):
        text = part.get("refusal" if part["type"] == "refusal" else "text")
        if isinstance(text, str):
            return [_with_cache({"type": "text", "text": text}, part)] if text else []
    raise TranslationError(f"{where} must be a text part", where)


def _user_blocks(content: object, where: str) -> list[JSON]:
    if not isinstance(content, list):
        return _text_blocks(content, where)
    blocks: list[JSON] = []
    for j, part in enumerate(content):
        at = f"{where}.content[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if isinstance(part, dict) and kind == "image_url":
            blocks.append(_with_cache(_image(part.get("image_url"), at), part))
        elif isinstance(part, dict) and kind == "file":
            blocks.append(_with_cache(_document(part.get("file"), at), part))
        elif kind == "text":
            blocks += _text_part(part, at)
        else:
            raise TranslationError(f"{at}: content part type {kind!r} cannot be sent to Anthropic", at)
    return blocks


def _data_url(url: str, where: str) -> tuple[str, str]:
    head, comma, data = url[5:].partition(",")
    params = head.split(";")
    if not comma or "base64" not in params[1:]:
        raise TranslationError(f"{where}: only base64 data: URLs can be sent to Anthropic", where)
    media = params[0].lower()
    return ("image/jpeg" if media == "image/jpg" else media), data


def _image(image: object, where: str) -> JSON:
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str):
        raise TranslationError(f"{where}.image_url.url is required", where)
    if url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    if not url.startswith("data:"):
        raise TranslationError(f"{where}: image URLs must be https:// or data:", where)
    media, data = _data_url(url, where)
    if media not in _IMAGE_TYPES:
        raise TranslationError(f"{where}: Anthropic accepts {', '.join(sorted(_IMAGE_TYPES))} images", where)
    return {"type": "image", "source": {"type": "base64", "media_type": media, "data": data}}


def _document(file: object, where: str) -> JSON:
    data = file.get("file_data") if isinstance(file, dict) else None
    if not isinstance(file, dict) or not isinstance(data, str) or not data:
        raise TranslationError(f"{where}: only inline file_data (not file_id) can be sent to Anthropic", where)
    media = "application/pdf"
    if data.startswith("data:"):
        media, data = _data_url(data, where)
    if media != "application/pdf":
        raise TranslationError(f"{where}: only PDF files can be sent to Anthropic", where)
    block: JSON = {"type": "document", "source": {"type": "base64", "media_type": media, "data": data}}
    if isinstance(file.get("filename"), str) and file["filename"]:
        block["title"] = file["filename"]
    return block


def _assistant_blocks(message: JSON, where: str) -> list[JSON]:
    content = message.get("content")
    blocks = _thinking_blocks(message, where)
    blocks += [] if content is None else _text_blocks(content, where)
    calls = message.get("tool_calls") or []
    if not isinstance(calls, list):
        raise TranslationError(f"{where}.tool_calls must be an array", f"{where}.tool_calls")
    blocks += [_tool_use(call, f"{where}.tool_calls[{j}]") for j, call in enumerate(calls)]
    return blocks


def _thinking_blocks(message: JSON, where: str) -> list[JSON]:
    """Signed thinking the client sends back (needed mid tool loop); unsigned reasoning cannot be verified."""
    given = message.get("thinking_blocks")
    if isinstance(given, list) and given:
        return [_thinking_block(block, f"{where}.thinking_blocks[{j}]") for j, block in enumerate(given)]
    text, signature = message.get("reasoning_content"), message.get("reasoning_signature")
    if isinstance(text, str) and isinstance(signature, str) and signature:
        return [{"type": "thinking", "thinking": text, "signature": signature}]
    return []


def _thinking_block(block: object, where: str) -> JSON:
    if isinstance(block, dict):
        kind, text, signature, data = (block.get(k) for k in ("type", "thinking", "signature", "data"))
        if kind == "thinking" and isinstance(text, str) and isinstance(signature, str):
            return {"type": "thinking", "thinking": text, "signature": signature}
        if kind == "redacted_thinking" and isinstance(data, str):
            return {"type": "redacted_thinking", "data": data}
    raise TranslationError(f"{where} must be a signed thinking or a redacted_thinking block", where)


def _tool_use(call: object, where: str) -> JSON:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(call, dict) or call.get("type", "function") != "function" or not isinstance(function, dict):
        raise TranslationError(f"{where} must be a function tool call", where)
    call_id, name = call.get("id"), function.get("name")
    if not isinstance(call_id, str) or not isinstance(name, str):
        raise TranslationError(f"{where} needs an id and a function name", where)
    return {"type": "tool_use", "id": call_id, "name": name, "input": _arguments(function.get("arguments"), where)}


def _arguments(arguments: object, where: str) -> JSON:
    if isinstance(arguments, dict):
        return arguments
    if arguments is None or (isinstance(arguments, str) and not arguments.strip()):
        return {}
    try:
        parsed = orjson.loads(arguments) if isinstance(arguments, str) else None
    except orjson.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        param = f"{where}.function.arguments"
        raise TranslationError(f"{param} must be a JSON object; Anthropic needs the parsed input", param)
    return parsed


def _tool_result(message: JSON, where: str) -> JSON:
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str):
        raise TranslationError(f"{where}.tool_call_id is required", f"{where}.tool_call_id")
    block: JSON = {"type": "tool_result", "tool_use_id": call_id}
    content = message.get("content")
    if content is None or content == "":
        return block
    if not isinstance(content, str):
        content = _user_blocks(content, where)
    if content:
        block["content"] = content
    return block
