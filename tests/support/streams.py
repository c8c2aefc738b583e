"""Reassembling what an OpenAI SDK stream delivers in pieces, for tests that check the whole."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def collect_tool_calls(stream: Iterable[Any]) -> tuple[dict[int, dict[str, str]], str | None]:
    """Tool calls by index (id, name and arguments joined from their deltas) and the last finish reason."""
    calls: dict[int, dict[str, str]] = {}
    finish = None
    for chunk in stream:
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for delta in choice.delta.tool_calls or []:
                call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
                call["id"] += delta.id or ""
                if delta.function is not None:
                    call["name"] += delta.function.name or ""
                    call["arguments"] += delta.function.arguments or ""
    return calls, finish
