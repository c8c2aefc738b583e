"""Writing an upstream answer to the client: whole bodies as they are, streams chunk by chunk.

Bytes are copied, never re-encoded; usage is read on the side. A stream that breaks or ends without
its terminator gets an error event in its own dialect, so no client mistakes it for a complete answer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping

from aiohttp import web
from multidict import CIMultiDict, istr

from switchpoint.cache import Recorder
from switchpoint.errors import GatewayError, UpstreamError, UpstreamTruncated
from switchpoint.exchange.core import MAX_LOGGED_BODY, Exchange, Target
from switchpoint.formats import anthropic, openai
from switchpoint.formats.translator import TranslationError, Translator
from switchpoint.formats.usage import usage_from_body, usage_from_sse
from switchpoint.limits import write_rate_headers
from switchpoint.providers.base import Dialect
from switchpoint.upstream import UpstreamAnswer

_DROP_RESPONSE = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "server", "date", "trailer",
     "upgrade", "proxy-authenticate"}
)  # fmt: skip
# Header names set on every answer, as `istr`: a CIMultiDict then skips case-folding the name on each set.
CACHE_STATUS, LOG_ID, REQUEST_ID, EVENT_ID = map(
    istr, ("cf-aig-cache-status", "cf-aig-log-id", "cf-aig-request-id", "cf-aig-event-id")
)
_TAIL = 96
_TAIL_KEPT = 64 * 1024


def response_headers(upstream: Mapping[str, str], ex: Exchange) -> CIMultiDict[str]:
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in upstream.items():
        if name.lower() not in _DROP_RESPONSE:
            out.add(name, value)
    gateway_headers(out, ex)
    return out


def gateway_headers(out: CIMultiDict[str], ex: Exchange) -> None:
    if ex.cache_status is not None:
        out[CACHE_STATUS] = ex.cache_status
    if ex.rate is not None:
        write_rate_headers(ex.rate, out)
    out[LOG_ID] = out[REQUEST_ID] = ex.log_id
    out[EVENT_ID] = ex.event_id
    if ex.surface == "universal" and ex.step is not None:
        out["cf-aig-step"] = str(ex.step)
    if ex.route is not None:  # which model a dynamic route picked
        out["cf-aig-model"] = ex.model or ""
        out["cf-aig-provider"] = ex.provider or ""


def terminator(target: Target) -> bytes | None:
    """The marker a complete chat stream ends with, when this path is one we know the shape of."""
    path = target.path
    if target.provider.dialect is Dialect.ANTHROPIC and path.endswith("messages"):
        return anthropic.STREAM_STOP
    if path.endswith("chat/completions") or "@cf/" in path or "@hf/" in path:
        return openai.STREAM_DONE
    return None


def stream_error_event(dialect: Dialect, err: GatewayError) -> bytes:
    if dialect is Dialect.ANTHROPIC:
        return anthropic.stream_error_event(err.status, err.message)
    return openai.stream_error_event(err.message, err.openai_type, err.cf_code)


async def relay(ex: Exchange, request: web.Request, target: Target, answer: UpstreamAnswer) -> web.StreamResponse:
    ex.status = answer.status
    ex.mark_first_byte()
    headers = response_headers(answer.headers, ex)
    streaming = answer.headers.get("content-type", "").startswith("text/event-stream")
    if target.translator is not None:
        return await _relay_translated(ex, request, target.translator, answer, headers, streaming)
    if streaming:
        ex.stream = True
        return await _relay_stream(ex, request, target, answer, headers)
    body = await answer.read()
    ex.response_body = body
    ex.response_size = len(body)
    if 200 <= answer.status < 300:
        ex.usage = usage_from_body(body)
    _record(ex, headers, body)
    return web.Response(status=answer.status, body=body, headers=headers)


def _record(ex: Exchange, headers: CIMultiDict[str], data: bytes | None = None) -> None:
    """Remember what the client gets (headers, and bytes when the cache wants them)."""
    ex.response_headers = headers
    if data and ex.recorder is not None:
        ex.recorder.add(data)


def _send(ex: Exchange, response: web.StreamResponse, headers: CIMultiDict[str], data: bytes) -> Awaitable[None]:
    """Record a stream's chunk, then write it to the client: await what it returns. Only a stream other calls
    can follow (the cache's `Recorder.live`) needs more than the write (`_send_followed`); every other
    stream's chunk goes without a coroutine of its own."""
    _record(ex, headers, data)
    recorder = ex.recorder
    if recorder is None or (recorder.live is None and not recorder.orphaned):
        return response.write(data)
    return _send_followed(recorder, response, data)


async def _send_followed(recorder: Recorder, response: web.StreamResponse, data: bytes) -> None:
    """Identical calls may follow this stream (`Recorder.followed`): once the client has left, it is read on
    for them, written to nobody."""
    if recorder.orphaned:
        if not recorder.followed:
            raise ConnectionResetError("nobody reads this stream any more")
        return
    try:
        await response.write(data)
    except ConnectionResetError:
        if not recorder.followed:
            raise
        recorder.orphaned = True


async def _relay_translated(
    ex: Exchange,
    request: web.Request,
    translator: Translator,
    answer: UpstreamAnswer,
    headers: CIMultiDict[str],
    streaming: bool,
) -> web.StreamResponse:
    """The same relay through a translator: each upstream chunk is translated as it arrives."""
    headers.popall("content-encoding", None)
    if streaming and answer.status < 300:
        ex.stream = True
        return await _relay_translated_stream(ex, request, translator, answer, headers)
    body = await answer.read()
    status = answer.status
    if 200 <= status < 300:
        try:
            body = translator.response(body)
        except TranslationError as err:  # a 2xx that is not an answer: the provider broke the contract
            raise UpstreamError(f"Provider answered with something that is not a response: {err.message}") from None
        ex.usage = translator.usage
    else:
        status, body = translator.error(status, body)
    headers["content-type"] = "application/json"
    ex.status = status
    ex.response_body = body
    ex.response_size = len(body)
    _record(ex, headers, body)
    return web.Response(status=status, body=body, headers=headers)


async def _relay_translated_stream(
    ex: Exchange, request: web.Request, translator: Translator, answer: UpstreamAnswer, headers: CIMultiDict[str]
) -> web.StreamResponse:
    headers["content-type"] = "text/event-stream"
    response = web.StreamResponse(status=answer.status, headers=headers)
    await response.prepare(request)
    kept = _Kept()
    _record(ex, headers)
    try:
        async for chunk in answer.chunks():
            out = translator.stream(chunk)
            if out:
                await _send(ex, response, headers, out)
                kept.add(out)
        out = translator.close()
    except UpstreamError as err:
        ex.error = err.message
        out = translator.stream_error(err.status, err.message)
    except ConnectionResetError:
        ex.error, ex.status = "client disconnected", 499
        answer.release()
        return response
    finally:
        ex.usage = translator.usage
        ex.response_body = kept.body()
        ex.response_size = kept.size
    if out:
        await _send(ex, response, headers, out)
        kept.add(out)
        ex.response_body, ex.response_size = kept.body(), kept.size
    ex.error = ex.error or translator.failure
    await response.write_eof()
    return response


async def _relay_stream(
    ex: Exchange, request: web.Request, target: Target, answer: UpstreamAnswer, headers: CIMultiDict[str]
) -> web.StreamResponse:
    """Copy chunks as they come; only keep them (bounded) for the log and the usage read at the end."""
    response = web.StreamResponse(status=answer.status, headers=headers)
    await response.prepare(request)
    kept = _Kept()
    stripper = openai.UsageChunkStripper() if target.strip_usage else None
    _record(ex, headers)
    try:
        async for chunk in answer.chunks():
            out = chunk if stripper is None else stripper.feed(chunk)
            if out:
                await _send(ex, response, headers, out)
            kept.add(chunk)
        if stripper is not None and (rest := stripper.flush()):
            await _send(ex, response, headers, rest)
        end = terminator(target) if answer.status < 300 else None
        if end is not None and end not in kept.tail():
            raise UpstreamTruncated()
    except UpstreamError as err:
        ex.error = err.message
        await _send(ex, response, headers, stream_error_event(target.provider.dialect, err))
    except ConnectionResetError:
        ex.error = "client disconnected"
        ex.status = 499
        answer.release()
        return response
    finally:
        body = kept.body()
        ex.usage = usage_from_sse(body)
        ex.response_body = body
        ex.response_size = kept.size
    await response.write_eof()
    return response


class _Kept:
    """The stream's first MAX_LOGGED_BODY bytes, plus a bounded tail past that (where the final usage is)."""

    __slots__ = ("head", "overflow", "overflow_size", "size")

    def __init__(self) -> None:
        self.head: list[bytes] = []
        self.overflow: list[bytes] = []
        self.overflow_size = 0
        self.size = 0

    def add(self, chunk: bytes) -> None:
        if self.size < MAX_LOGGED_BODY:
            self.head.append(chunk)
        else:
            self.overflow.append(chunk)
            self.overflow_size += len(chunk)
            if self.overflow_size > 2 * _TAIL_KEPT:
                joined = b"".join(self.overflow)[-_TAIL_KEPT:]
                self.overflow, self.overflow_size = [joined], len(joined)
        self.size += len(chunk)

    def body(self) -> bytes:
        return b"".join(self.head + self.overflow)

    def tail(self) -> bytes:
        """The last _TAIL bytes, however small the chunks were."""
        parts: list[bytes] = []
        need = _TAIL
        for chunk in reversed(self.overflow or self.head):
            parts.append(chunk)
            need -= len(chunk)
            if need <= 0:
                break
        return b"".join(reversed(parts))[-_TAIL:]
