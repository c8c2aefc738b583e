"""`observability`: per-call metrics from log records, read back through the Prometheus text parser."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from switchpoint.observability import CONTENT_TYPE, Metrics, error_kind

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(metrics: Metrics) -> Samples:
    body, content_type = metrics.render()
    assert content_type == CONTENT_TYPE
    out: Samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(found: Samples, name: str, **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))


def record(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "gateway": "default",
        "provider": "openai",
        "model": "gpt-4o-mini",
        "status_code": 200,
        "duration_ms": 150.0,
        "ttfb_ms": 40.0,
        "tokens_in": 100,
        "tokens_out": 20,
        "cost": 0.25,
        "cached": False,
        "error": None,
    }
    return {**base, **fields}


@pytest.fixture
def observed() -> Samples:
    metrics = Metrics()
    metrics.observe(record())
    metrics.observe(record(tokens_in=50, tokens_out=5, cost=0.5, duration_ms=0.4, ttfb_ms=None))
    metrics.observe(record(status_code=502, error="upstream reset", error_kind="upstream_reset", duration_ms=200_000,
                           tokens_in=None, tokens_out=None, cost=None, ttfb_ms=None))  # fmt: skip
    metrics.observe(record(provider="anthropic", model="claude-sonnet-4-5", cached=True, cost=0.0, duration_ms=2.0,
                           cache_read_tokens=64, reasoning_tokens=7))  # fmt: skip
    return samples(metrics)


def test_requests_by_status_class(observed: Samples) -> None:
    call = {"gateway": "default", "provider": "openai", "model": "gpt-4o-mini"}
    assert value(observed, "switchpoint_requests_total", **call, status_class="2xx") == 2
    assert value(observed, "switchpoint_requests_total", **call, status_class="5xx") == 1
    claude = {"gateway": "default", "provider": "anthropic", "model": "claude-sonnet-4-5", "status_class": "2xx"}
    assert value(observed, "switchpoint_requests_total", **claude) == 1


def test_tokens_and_cost(observed: Samples) -> None:
    call = {"gateway": "default", "provider": "openai", "model": "gpt-4o-mini"}
    assert value(observed, "switchpoint_tokens_total", **call, direction="in") == 150
    assert value(observed, "switchpoint_tokens_total", **call, direction="out") == 25
    assert value(observed, "switchpoint_tokens_total", **call, direction="cache_read") is None  # never seen
    assert value(observed, "switchpoint_cost_usd_total", **call) == 0.75
    claude = {"gateway": "default", "provider": "anthropic", "model": "claude-sonnet-4-5"}
    assert value(observed, "switchpoint_tokens_total", **claude, direction="cache_read") == 64
    assert value(observed, "switchpoint_tokens_total", **claude, direction="reasoning") == 7
    assert value(observed, "switchpoint_cost_usd_total", **claude) == 0


def test_duration_histogram_buckets(observed: Samples) -> None:
    openai = {"gateway": "default", "provider": "openai"}
    name = "switchpoint_request_duration_seconds"
    assert value(observed, f"{name}_bucket", **openai, le="0.0005") == 1  # 0.4 ms
    assert value(observed, f"{name}_bucket", **openai, le="0.1") == 1
    assert value(observed, f"{name}_bucket", **openai, le="0.25") == 2  # 150 ms
    assert value(observed, f"{name}_bucket", **openai, le="120.0") == 2
    assert value(observed, f"{name}_bucket", **openai, le="+Inf") == 3  # 200 s
    assert value(observed, f"{name}_count", **openai) == 3
    assert value(observed, f"{name}_sum", **openai) == pytest.approx(0.0004 + 0.15 + 200)


def test_first_byte_histogram_counts_only_calls_with_a_first_byte(observed: Samples) -> None:
    openai = {"gateway": "default", "provider": "openai"}
    assert value(observed, "switchpoint_first_byte_seconds_count", **openai) == 1
    assert value(observed, "switchpoint_first_byte_seconds_bucket", **openai, le="0.025") == 0
    assert value(observed, "switchpoint_first_byte_seconds_bucket", **openai, le="0.05") == 1
    assert value(observed, "switchpoint_first_byte_seconds_sum", **openai) == pytest.approx(0.04)


def test_errors_and_cache_hits(observed: Samples) -> None:
    assert value(observed, "switchpoint_errors_total", gateway="default", provider="openai", kind="upstream_reset") == 1
    assert value(observed, "switchpoint_cache_hits_total", gateway="default") == 1


@pytest.mark.parametrize(
    ("fields", "kind"),
    [
        ({}, None),
        ({"status_code": 302}, None),
        ({"status_code": 499, "error": "client disconnected"}, "client_disconnected"),
        ({"status_code": 200, "error": "stream cut"}, "stream_error"),
        ({"status_code": 404}, "http_4xx"),
        ({"status_code": 503}, "http_5xx"),
        ({"status_code": 0, "error": "boom"}, "no_status"),
        ({"status_code": 429, "error": "Rate limited", "error_kind": "rate_limited"}, "rate_limited"),
    ],
)
def test_error_kind(fields: dict[str, Any], kind: str | None) -> None:
    assert error_kind(record(**fields)) == kind


def test_limit_rejections() -> None:
    metrics = Metrics()
    for kind in ("rate_limited", "rate_limited", "budget_exceeded"):
        metrics.observe(record(status_code=429, error="limited", error_kind=kind, tokens_in=None, tokens_out=None))
    metrics.observe(record(status_code=429))  # the provider's own 429 is not a gateway limit
    found = samples(metrics)
    assert value(found, "switchpoint_limit_rejections_total", gateway="default", kind="rate_limit") == 2
    assert value(found, "switchpoint_limit_rejections_total", gateway="default", kind="budget") == 1
    assert value(found, "switchpoint_errors_total", gateway="default", provider="openai", kind="http_4xx") == 1


def test_log_writer_counters_from_a_callback() -> None:
    counts = {"accepted": 10, "written": 7, "spooled": 2, "dropped": 0, "rejected": 1, "queue_depth": 3}
    metrics = Metrics(lambda: {**counts, "spool_bytes": 4096})
    found = samples(metrics)
    assert value(found, "switchpoint_log_records_total", outcome="accepted") == 10
    assert value(found, "switchpoint_log_records_total", outcome="written") == 7
    assert value(found, "switchpoint_log_records_total", outcome="spooled") == 2
    assert value(found, "switchpoint_log_records_total", outcome="dropped") == 0
    assert value(found, "switchpoint_log_records_total", outcome="rejected") == 1
    assert value(found, "switchpoint_log_queue_depth") == 3
    assert value(found, "switchpoint_log_spool_bytes") == 4096
    counts["written"] = 9
    assert value(samples(metrics), "switchpoint_log_records_total", outcome="written") == 9  # read live


def test_a_failing_callback_does_not_break_the_scrape(caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> dict[str, int]:
        raise RuntimeError("writer gone")

    metrics = Metrics()
    metrics.set_log_counters(broken)
    metrics.observe(record())
    found = samples(metrics)
    assert value(found, "switchpoint_log_queue_depth") is None
    assert value(found, "switchpoint_cache_hits_total", gateway="default") == 0
    assert "log writer counters failed" in caplog.text


def test_client_controlled_labels_are_capped_and_missing_ones_named() -> None:
    metrics = Metrics(max_models=2)
    for model in ("a", "b", "c", "d", "a"):
        metrics.observe(record(model=model))
    metrics.observe(record(provider=None, model=None, status_code=0, error="early failure"))
    found = samples(metrics)
    call = {"gateway": "default", "provider": "openai", "status_class": "2xx"}
    assert value(found, "switchpoint_requests_total", **call, model="a") == 2
    assert value(found, "switchpoint_requests_total", **call, model="b") == 1
    assert value(found, "switchpoint_requests_total", **call, model="other") == 2
    assert value(found, "switchpoint_requests_total", **call, model="c") is None
    missing = {"gateway": "default", "provider": "none", "model": "none", "status_class": "none"}
    assert value(found, "switchpoint_requests_total", **missing) == 1


def test_registries_are_private() -> None:
    first, second = Metrics(), Metrics()
    first.observe(record())
    assert value(samples(second), "switchpoint_requests_total", gateway="default", provider="openai",
                 model="gpt-4o-mini", status_class="2xx") is None  # fmt: skip


MULTIPROCESS_SCRIPT = textwrap.dedent(
    """
    import multiprocessing, sys
    from switchpoint.observability import Metrics, reset_multiprocess_dir

    def worker(n):
        metrics = Metrics()
        for _ in range(n):
            metrics.observe({"gateway": "g", "provider": "openai", "model": "m", "status_code": 200,
                             "duration_ms": 5.0, "tokens_in": 10, "tokens_out": 1, "cost": 0.5})

    reset_multiprocess_dir()
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=worker, args=(n,)) for n in (3, 4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    body, _ = Metrics(lambda: {"queue_depth": 2}).render()
    sys.stdout.write(body.decode())
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="fork")
def test_multiprocess_mode_sums_every_worker(tmp_path: Path) -> None:
    stale = tmp_path / "counter_99999.db"
    stale.write_bytes(b"left over from a previous run")
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", MULTIPROCESS_SCRIPT], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    found: Samples = {}
    for family in text_string_to_metric_families(done.stdout):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    call = {"gateway": "g", "provider": "openai", "model": "m"}
    assert value(found, "switchpoint_requests_total", **call, status_class="2xx") == 7
    assert value(found, "switchpoint_tokens_total", **call, direction="in") == 70
    assert value(found, "switchpoint_cost_usd_total", **call) == 3.5
    assert value(found, "switchpoint_request_duration_seconds_count", gateway="g", provider="openai") == 7
    assert value(found, "switchpoint_log_queue_depth") == 2
    assert not stale.exists()
