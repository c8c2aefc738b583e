"""The shape every format translator has: one object per call, owning its stream state.

A translator converts a client's request into the upstream's dialect, then the upstream's answer (whole,
streamed, or an error) back into the client's dialect. It is pure: bytes and dicts in, bytes out, no I/O,
so it can be tested and fuzzed alone. `exchange` drives it; nothing else holds per-call translation state.
"""

from __future__ import annotations

from typing import Any, Protocol

from switchpoint.formats.usage import Usage


class TranslationError(ValueError):
    """The client's request cannot be expressed in the upstream's dialect; the message says why (a 400)."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class Translator(Protocol):
    def request(self, body: dict[str, Any]) -> dict[str, Any]:
        """The client's parsed request body → the upstream's request body (raises TranslationError)."""
        ...

    def response(self, body: bytes) -> bytes:
        """A successful (2xx) non-streamed upstream body → the client's body."""
        ...

    def stream(self, chunk: bytes) -> bytes:
        """Raw upstream SSE bytes, in any chunking → client SSE bytes ready to write (may be b"")."""
        ...

    def close(self) -> bytes:
        """The upstream stream ended cleanly: the client's closing bytes, or an error event if it was cut."""
        ...

    def stream_error(self, status: int, message: str) -> bytes:
        """The upstream broke mid-stream: the client dialect's error event."""
        ...

    def error(self, status: int, body: bytes) -> tuple[int, bytes]:
        """An upstream error answer → (status, body) in the client's dialect."""
        ...

    @property
    def failure(self) -> str | None:
        """Why the stream ended in an error event (upstream error event, truncation, bad input), else None."""
        ...

    @property
    def usage(self) -> Usage | None:
        """Token usage seen so far (complete after `response` or `close`)."""
        ...
