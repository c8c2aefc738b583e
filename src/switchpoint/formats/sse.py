"""Incremental Server-Sent Events parser: bytes in any chunking → the same events, per the WHATWG rules.

Keeps the incomplete tail between `feed` calls, accepts LF, CRLF and CR line ends (a CR ends its line at
once; an LF that starts the next chunk is then skipped), skips comments, joins multi-line `data:` fields.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Event:
    data: str
    event: str | None = None
    id: str | None = None

    def encode(self) -> bytes:
        return encode_event(self.data, self.event, self.id)


_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def encode_event(data: str, event: str | None = None, id: str | None = None) -> bytes:
    """One event; every line break in `data` starts a new `data:` line, so the parser rebuilds it exactly."""
    for name, value in (("event", event), ("id", id)):
        if value is not None and _LINE_BREAK.search(value):
            raise ValueError(f"SSE {name} must not contain a line break")
    head = (f"event: {event}\n" if event else "") + (f"id: {id}\n" if id is not None else "")
    lines = "".join(f"data: {line}\n" for line in _LINE_BREAK.split(data))
    return f"{head}{lines}\n".encode()


class SSEParser:
    """Feed raw bytes, get complete events; `pending` says whether a partial event is buffered."""

    __slots__ = ("_buf", "_data", "_event", "_id", "_has_data", "_skip_lf")

    def __init__(self) -> None:
        self._buf = b""
        self._data: list[str] = []
        self._event: str | None = None
        self._id: str | None = None
        self._has_data = False
        self._skip_lf = False

    def feed(self, chunk: bytes) -> list[Event]:
        if not chunk:
            return []
        if self._skip_lf:  # the previous chunk ended in CR: an LF right after it belongs to that line end
            self._skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        buf = self._buf + chunk
        if b"\r" in buf:
            self._skip_lf = buf.endswith(b"\r")
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = buf.split(b"\n")
        self._buf = lines.pop()
        events: list[Event] = []
        for raw in lines:
            event = self._line(raw.decode("utf-8", "replace"))
            if event is not None:
                events.append(event)
        return events

    @property
    def pending(self) -> bool:
        return bool(self._buf) or self._has_data or self._event is not None

    def _line(self, line: str) -> Event | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
            self._has_data = True
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
        return None

    def _dispatch(self) -> Event | None:
        event = Event("\n".join(self._data), self._event, self._id) if self._has_data else None
        self._data = []
        self._event = None
        self._has_data = False
        return event
