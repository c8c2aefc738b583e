"""`formats.sse`: the incremental SSE parser follows the WHATWG rules whatever the chunking; `encode_event`
round-trips through it."""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switchpoint.formats.sse import Event, SSEParser, encode_event


def parse(chunks: Iterable[bytes]) -> list[Event]:
    parser = SSEParser()
    events: list[Event] = []
    for chunk in chunks:
        events += parser.feed(chunk)
    return events


def split_at(blob: bytes, cuts: Iterable[int]) -> list[bytes]:
    points = [0, *sorted(cuts), len(blob)]
    return [blob[a:b] for a, b in zip(points, points[1:], strict=False)]


def bytewise(blob: bytes) -> list[bytes]:
    return [blob[i : i + 1] for i in range(len(blob))]


STREAM = b'event: message_start\ndata: {"a":1}\n\n: keep-alive\n\ndata: line one\ndata: line two\n\n'
EXPECTED = [Event('{"a":1}', "message_start"), Event("line one\nline two")]


# -- line ends ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"], ids=["LF", "CRLF", "CR"])
def test_every_line_end_gives_the_same_events(newline: bytes) -> None:
    blob = STREAM.replace(b"\n", newline) + b"data: tail" + newline * 2 + b": flush\n"
    assert parse([blob]) == [*EXPECTED, Event("tail")]


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"], ids=["LF", "CRLF", "CR"])
def test_every_line_end_fed_one_byte_at_a_time(newline: bytes) -> None:
    blob = STREAM.replace(b"\n", newline) + b"data: tail" + newline * 2 + b": flush\n"
    assert parse(bytewise(blob)) == [*EXPECTED, Event("tail")]


def test_cr_at_a_chunk_end_followed_by_lf_is_one_line_end() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\r") == []
    assert parser.feed(b"\ndata: b\r") == []
    assert parser.feed(b"\n\r") == [Event("a\nb")]  # the CR is a blank line at once
    assert parser.feed(b"\n") == []  # ...and this LF only completes that CR


def test_cr_then_crlf_are_two_line_ends() -> None:
    assert parse([b"data: a\r", b"\r\n"]) == [Event("a")]
    assert parse([b"data: a\r\r\n"]) == [Event("a")]


def test_mixed_line_ends_in_one_stream() -> None:
    assert parse([b"data: a\r\ndata: b\rdata: c\n\r\ndata: d\r\r"]) == [Event("a\nb\nc"), Event("d")]


def test_a_cr_terminated_event_is_dispatched_without_waiting_for_more_bytes() -> None:
    assert SSEParser().feed(b"data: a\r\r") == [Event("a")]


# -- fields ------------------------------------------------------------------------------------------


def test_comments_are_skipped() -> None:
    assert parse([b": ping\n:\ndata: x\n: inside\n\n"]) == [Event("x")]
    assert parse([b": only a comment\n\n"]) == []


def test_multi_line_data_is_joined_with_lf() -> None:
    assert parse([b"data: a\ndata:\ndata: c\n\n"]) == [Event("a\n\nc")]


def test_event_and_id_fields() -> None:
    assert parse([b"event: delta\nid: 42\ndata: x\n\n"]) == [Event("x", "delta", "42")]


def test_event_type_does_not_leak_into_the_next_event() -> None:
    assert parse([b"event: one\ndata: a\n\ndata: b\n\n"]) == [Event("a", "one"), Event("b")]


def test_last_event_id_persists_across_events() -> None:
    """WHATWG: the last-event-id buffer is not reset on dispatch."""
    assert parse([b"id: 7\ndata: a\n\ndata: b\n\n"]) == [Event("a", None, "7"), Event("b", None, "7")]


def test_id_with_nul_is_ignored() -> None:
    assert parse([b"id: 1\ndata: a\n\nid: x\x00y\ndata: b\n\n"]) == [Event("a", None, "1"), Event("b", None, "1")]


def test_field_without_a_colon_has_an_empty_value() -> None:
    assert parse([b"data\n\n"]) == [Event("")]
    assert parse([b"data\ndata\n\n"]) == [Event("\n")]


def test_only_one_leading_space_is_stripped() -> None:
    assert parse([b"data:no-space\n\n"]) == [Event("no-space")]
    assert parse([b"data:  two spaces\n\n"]) == [Event(" two spaces")]
    assert parse([b"data: trailing  \n\n"]) == [Event("trailing  ")]
    assert parse([b"event:\tx\ndata: a\n\n"]) == [Event("a", "\tx")]


def test_value_may_contain_colons() -> None:
    assert parse([b'data: {"a": "b:c"}\n\n']) == [Event('{"a": "b:c"}')]


def test_an_empty_data_line_dispatches_an_event_with_empty_data() -> None:
    assert parse([b"data:\n\n"]) == [Event("")]
    assert parse([b"data: \n\n"]) == [Event("")]


def test_no_event_without_data() -> None:
    assert parse([b"event: ping\n\n"]) == []
    assert parse([b"id: 3\n\n\n\n"]) == []
    assert parse([b"retry: 100\nfoo: bar\n\n"]) == []


def test_unknown_fields_are_ignored() -> None:
    assert parse([b"retry: 10\nfoo: bar\nDATA: nope\ndata: yes\n\n"]) == [Event("yes")]


def test_an_unterminated_event_is_not_dispatched() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\n") == []
    assert parser.pending
    assert parser.feed(b"\n") == [Event("a")]
    assert not parser.pending


def test_pending() -> None:
    parser = SSEParser()
    assert not parser.pending
    parser.feed(b"data: par")
    assert parser.pending
    parser.feed(b"tial\n\n")
    assert not parser.pending
    parser.feed(b"event: x\n")
    assert parser.pending


def test_multibyte_utf8_split_across_chunks() -> None:
    blob = "data: héllo ✓ 🎉\n\n".encode()
    assert parse(bytewise(blob)) == [Event("héllo ✓ 🎉")]


def test_invalid_utf8_is_replaced_not_raised() -> None:
    assert parse([b"data: \xff\xfe\n\n"]) == [Event("\ufffd\ufffd")]


def test_realistic_openai_stream() -> None:
    blob = (
        b'data: {"id":"c1","choices":[{"delta":{"role":"assistant","content":""}}]}\n\n'
        b'data: {"id":"c1","choices":[{"delta":{"content":"Hi"}}]}\n\n'
        b"data: [DONE]\n\n"
    )
    events = parse(split_at(blob, [5, 60, 61, 100]))
    assert [e.data for e in events][-1] == "[DONE]"
    assert len(events) == 3


# -- encode_event ------------------------------------------------------------------------------------


def test_encode_event_exact_bytes() -> None:
    assert encode_event("x") == b"data: x\n\n"
    assert encode_event("a\nb", "delta") == b"event: delta\ndata: a\ndata: b\n\n"
    assert encode_event("") == b"data: \n\n"
    assert Event("y", "e").encode() == b"event: e\ndata: y\n\n"


def test_encode_event_unicode() -> None:
    assert encode_event("✓") == "data: ✓\n\n".encode()


def test_encode_event_with_cr_in_data_keeps_every_line() -> None:
    assert parse([encode_event("a\rb\r\nc")]) == [Event("a\nb\nc")]


def test_event_encode_keeps_the_id() -> None:
    assert parse([Event("x", "e", "7").encode()]) == [Event("x", "e", "7")]


# -- properties --------------------------------------------------------------------------------------

_data = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r"), max_size=40)
_name = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), min_size=1)
_events = st.lists(st.tuples(_data, st.none() | _name), max_size=8)
_settings = settings(max_examples=150, deadline=None, database=None)


def _expected(events: list[tuple[str, str | None]]) -> list[Event]:
    return [Event(data, event) for data, event in events]


def _encoded(events: list[tuple[str, str | None]]) -> bytes:
    return b"".join(encode_event(data, event) for data, event in events)


@_settings
@given(events=_events, data=st.data())
def test_encode_then_parse_in_any_chunking(events: list[tuple[str, str | None]], data: st.DataObject) -> None:
    blob = _encoded(events)
    cuts = data.draw(st.lists(st.integers(0, len(blob)), max_size=12))
    assert parse(split_at(blob, cuts)) == _expected(events)


@_settings
@given(events=_events)
def test_encode_then_parse_one_byte_at_a_time(events: list[tuple[str, str | None]]) -> None:
    assert parse(bytewise(_encoded(events))) == _expected(events)


@_settings
@given(events=_events, data=st.data())
def test_crlf_normalised_stream_parses_the_same(events: list[tuple[str, str | None]], data: st.DataObject) -> None:
    blob = _encoded(events).replace(b"\n", b"\r\n")
    # cut right after some CRs, so a CR ends a chunk and its LF starts the next one
    crs = [i + 1 for i, byte in enumerate(blob) if byte == 0x0D]
    cuts = data.draw(st.lists(st.sampled_from(crs), max_size=6)) if crs else []
    cuts += data.draw(st.lists(st.integers(0, len(blob)), max_size=6))
    assert parse(split_at(blob, cuts)) == _expected(events)
    assert parse([blob]) == parse([_encoded(events)])
