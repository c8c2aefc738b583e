"""`Exchange.log_record`: the row the log store gets carries every `logs` column, in the table's order."""

from __future__ import annotations

from switchpoint.exchange import Exchange, default_options
from switchpoint.store.tables import LOG_COLUMNS
from tests.exchange.test_caching import GATEWAY, runtime


def exchange() -> Exchange:
    return Exchange(
        runtime=runtime(), gateway_id="g", gateway=GATEWAY, account="acct", surface="passthrough", method="POST",
        path="/v1/acct/g/openai/chat/completions", options=default_options(GATEWAY), client_dialect="cloudflare",
        body=b'{"model":"gpt-4o"}', user_agent="test/1",
    )  # fmt: skip


def test_a_record_has_every_column_then_what_only_the_metrics_read() -> None:
    record = exchange().log_record()
    assert tuple(record) == (*LOG_COLUMNS, "error_kind", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens")
    assert (record["feedback"], record["score"]) == (None, None)  # set later, by the logs API


def test_a_record_holds_the_call_values() -> None:
    ex = exchange()
    ex.status, ex.cached, ex.provider, ex.model, ex.response_body, ex.response_size = 200, True, "openai", "m", b"ok", 2
    ex.route_path = ("start", "m1")
    record = ex.log_record()
    assert record["id"] == record["event_id"] == ex.log_id
    assert (record["success"], record["cached"], record["cost"], record["custom_cost"]) == (True, True, 0.0, False)
    assert (record["request_body"], record["response_body"], record["request_size"]) == (
        b'{"model":"gpt-4o"}',
        b"ok",
        18,
    )
    assert (record["route_path"], record["step"], record["user_agent"]) == ("start>m1", None, "test/1")
    assert record["duration_ms"] >= 0 and record["ttfb_ms"] is None
