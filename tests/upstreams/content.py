"""Deterministic content the fake providers answer with: reply text, token counts, tool arguments, embeddings.

Every answer is a pure function of the request (apart from ids and timestamps), so tests can assert it.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import struct
import uuid
from typing import Any

JSON = dict[str, Any]

_TOKEN = re.compile(r"\w+|[^\w\s]")
_PIECE = re.compile(r"\s*\S+|\s+")
_JSON_PIECE = re.compile(r"\w+|\W+")


def new_id(prefix: str, length: int = 24) -> str:
    """A random id in the provider's style, e.g. ``chatcmpl-...``, ``call_...``, ``msg_...``."""
    return prefix + uuid.uuid4().hex[:length]


def obj(value: Any) -> JSON:
    """``value`` if it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}


def dumps(value: object) -> str:
    """Compact JSON with raw UTF-8, the way the providers serialise."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def text_of(content: Any) -> str:
    """Plain text of an OpenAI or Anthropic message ``content`` (string, parts, tool results)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(t for t in (text_of(part) for part in content) if t)
    if isinstance(content, dict):
        if content.get("type") in ("text", "input_text") or "text" in content:
            return str(content.get("text", ""))
        if content.get("type") == "tool_result":
            return text_of(content.get("content", ""))
    return ""


def is_tool_result_turn(messages: list[Any]) -> bool:
    """True when the last message returns tool results (OpenAI ``role: tool``, Anthropic ``tool_result``)."""
    if not messages or not isinstance(messages[-1], dict):
        return False
    last = messages[-1]
    if last.get("role") == "tool":
        return True
    content = last.get("content")
    return isinstance(content, list) and any(isinstance(p, dict) and p.get("type") == "tool_result" for p in content)


def last_user_text(messages: list[Any]) -> str:
    """Text of the last user (or tool-result) message, the only input the reply depends on."""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") in ("user", "tool"):
            return text_of(message.get("content"))
    return ""


def reply_text(messages: list[Any]) -> str:
    """The deterministic assistant reply: ``echo: <last user text>``."""
    return f"echo: {last_user_text(messages)}"


def count_tokens(text: str) -> int:
    """A stable stand-in for a tokenizer: words and punctuation marks."""
    return len(_TOKEN.findall(text))


def prompt_tokens(messages: list[Any], system: Any = None) -> int:
    """Prompt size: tokens of every message's text, plus 3 per message like OpenAI's chat framing."""
    total = count_tokens(text_of(system)) if system else 0
    for message in messages:
        if isinstance(message, dict):
            total += 3 + count_tokens(text_of(message.get("content")))
    return max(total, 1)


def pieces(text: str) -> list[str]:
    """Split reply text into stream deltas (a word with its leading space each); joins back to ``text``."""
    return _PIECE.findall(text)


def json_pieces(text: str) -> list[str]:
    """Split a JSON string into several partial-JSON deltas; joins back to ``text``."""
    return _JSON_PIECE.findall(text)


def _value_for(schema: Any, text: str) -> Any:
    if not isinstance(schema, dict):
        return text
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "integer":
        return 42
    if kind == "number":
        return 1.5
    if kind == "boolean":
        return True
    if kind == "array":
        return [_value_for(schema.get("items"), text)]
    if kind == "object":
        return tool_arguments(schema, text)
    return text


def tool_arguments(schema: Any, text: str) -> JSON:
    """Arguments valid for a JSON schema: strings get ``text``, integers 42, numbers 1.5, booleans true."""
    if not isinstance(schema, dict):
        return {}
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        return {}
    return {name: _value_for(sub, text) for name, sub in properties.items()}


def embedding_of(text: str, dimensions: int) -> list[float]:
    """A unit-length vector derived from ``text``; values are exact float32 so base64 and float agree."""
    raw: list[float] = []
    counter = 0
    while len(raw) < dimensions:
        digest = hashlib.sha256(f"{counter}:{text}".encode()).digest()
        raw.extend((b - 127.5) / 127.5 for b in digest)
        counter += 1
    raw = raw[:dimensions]
    norm = math.sqrt(sum(v * v for v in raw)) or 1.0
    packed = struct.pack(f"<{dimensions}f", *(v / norm for v in raw))
    return list(struct.unpack(f"<{dimensions}f", packed))


def float32_bytes(vector: list[float]) -> bytes:
    """Little-endian float32, the layout behind OpenAI's ``encoding_format: base64``."""
    return struct.pack(f"<{len(vector)}f", *vector)
