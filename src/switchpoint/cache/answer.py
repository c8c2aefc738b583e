"""A stored answer (a whole body, or a stream's chunks with their framing) and its byte form in the store."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import orjson
from multidict import CIMultiDict

from switchpoint.cache.policy import STORED_HEADERS
from switchpoint.formats.usage import Usage, usage_from_body, usage_from_sse

_MAGIC = b"SPC1"


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    """A successful answer as the client got it: a whole body is one chunk; a stream keeps every chunk as
    it came, so a replay writes the same bytes with the same framing. `usage` is the call's own, kept so a
    hit is logged with its tokens without reading the body again."""

    status: int
    headers: tuple[tuple[str, str], ...]
    chunks: tuple[bytes, ...]
    stream: bool
    provider: str | None = None
    model: str | None = None
    usage: Usage | None = None
    # `headers` as a multidict, built once: a replay hands it to the response, which copies it (cheaper than
    # building one from the tuple on every hit); never mutated
    header_map: CIMultiDict[str] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "header_map", CIMultiDict(self.headers))

    @classmethod
    def capture(
        cls,
        status: int,
        headers: Iterable[tuple[str, str]],
        chunks: Sequence[bytes],
        stream: bool,
        provider: str | None = None,
        model: str | None = None,
        usage: Usage | None = None,
    ) -> CachedAnswer:
        """Keep only `STORED_HEADERS` of the response headers."""
        kept = tuple((name, value) for name, value in headers if name.lower() in STORED_HEADERS)
        return cls(status, kept, tuple(chunks), stream, provider, model, usage)

    @property
    def body(self) -> bytes:
        return self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)

    @property
    def size(self) -> int:
        return sum(map(len, self.chunks))

    def to_bytes(self) -> bytes:
        u = self.usage
        meta = {
            "status": self.status,
            "headers": self.headers,
            "stream": self.stream,
            "chunks": [len(chunk) for chunk in self.chunks],
            "provider": self.provider,
            "model": self.model,
            "usage": None
            if u is None
            else (u.tokens_in, u.tokens_out, u.cache_read_tokens, u.cache_write_tokens, u.reasoning_tokens),
        }
        head = orjson.dumps(meta)
        return b"".join((_MAGIC, len(head).to_bytes(4, "big"), head, *self.chunks))

    @classmethod
    def from_bytes(cls, data: bytes) -> CachedAnswer:
        """Raises ValueError for anything `to_bytes` did not write. An entry written before usage was kept
        has its usage read from the body, as hits did then."""
        if data[:4] != _MAGIC:
            raise ValueError("not a cached answer")
        end = 8 + int.from_bytes(data[4:8], "big")
        meta = orjson.loads(data[8:end])
        view, chunks, offset = memoryview(data), [], end
        for length in meta["chunks"]:
            chunks.append(bytes(view[offset : offset + length]))
            offset += length
        if offset != len(data):
            raise ValueError("cached answer has the wrong length")
        headers = tuple((str(name), str(value)) for name, value in meta["headers"])
        stream = meta["stream"]
        if "usage" in meta:
            usage = None if meta["usage"] is None else Usage(*meta["usage"])
        else:
            body = b"".join(chunks)
            usage = usage_from_sse(body) if stream else usage_from_body(body)
        return cls(meta["status"], headers, tuple(chunks), stream, meta["provider"], meta["model"], usage)
