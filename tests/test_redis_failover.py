"""Redis killed and restored under a running `switchpoint serve`: each feature follows its failure policy.

One process, one private redis-server (its own port, started, killed and restarted by the test) and three
gateways: a rate limit that fails open (`state.fail_open.rate_limit: true`), a spend limit that fails closed
(the default) and a response cache (which always fails open). While Redis is down nothing answers 5xx; once
it is back on the same port everything is enforced again within seconds, without restarting the gateway.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.state.redis_support import OwnRedis, own_redis
from tests.test_serve import SWITCHPOINT, free_port, wait_healthy
from tests.upstreams.server import UpstreamsThread

__all__ = ["own_redis"]

RATE_LIMIT = 4
COST = '{"total_cost": 0.02}'  # three of these do not fit the 0.05 rule
RECOVERY_S = 5.0


@dataclass
class Served:
    port: int
    stderr: Path
    statuses: list[int] = field(default_factory=list)  # every answer the test got, to rule out 5xx

    def call(
        self, gateway: str, model: str, *, surface: str = "compat", content: str = "hi", **headers: str
    ) -> tuple[int, dict[str, str], Any]:
        path = "compat/chat/completions" if surface == "compat" else "openai/chat/completions"
        url = f"http://127.0.0.1:{self.port}/v1/acct/{gateway}/{path}"
        body = {
            "model": f"openai/{model}" if surface == "compat" else model,
            "messages": [{"role": "user", "content": content}],
        }
        request = urllib.request.Request(
            url,
            data=json.dumps(body).encode(),
            headers={"content-type": "application/json", "authorization": "Bearer sk-failover", **headers},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status, got, raw = response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as err:
            status, got, raw = err.code, dict(err.headers), err.read()
        self.statuses.append(status)
        return status, {k.lower(): v for k, v in got.items()}, json.loads(raw)

    def log(self) -> str:
        return self.stderr.read_text()


@pytest.fixture
def served(tmp_path: Path, own_redis: OwnRedis) -> Iterator[Served]:
    with UpstreamsThread() as ups:
        config = tmp_path / "switchpoint.yaml"
        config.write_text(
            f"data_dir: {tmp_path / 'data'}\n"
            f"redis_url: {own_redis.url}\n"
            f"providers:\n  openai: {{base_url: '{ups.openai_base}'}}\n"
            "state:\n  fail_open: {rate_limit: true}\n"  # budget: the default, fail closed
            "gateways:\n"
            f"  rated:\n    rate_limit: {{limit: {RATE_LIMIT}, window: 3600, technique: fixed}}\n"
            "  budget:\n    spend_limits: [{id: cap, limit: 0.05, window: 3600, technique: fixed}]\n"
            "  cached:\n    cache_ttl: 300\n"
        )
        port, stderr = free_port(), tmp_path / "serve.stderr"
        with stderr.open("wb") as sink:
            proc = subprocess.Popen(
                [*SWITCHPOINT, "serve", "--config", str(config), "--port", str(port)],
                stdout=subprocess.DEVNULL,
                stderr=sink,
            )
        try:
            wait_healthy(port, proc)
            yield Served(port, stderr)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=20)


def _enforced(served: Served, round_name: str) -> None:
    """With Redis up: the rate limit admits exactly its limit, the budget refuses the call that does not
    fit, and the second identical call is a cache hit (on both surfaces)."""
    rated = [served.call("rated", f"gpt-rated-{round_name}")[0] for _ in range(RATE_LIMIT + 2)]
    assert rated == [200] * RATE_LIMIT + [429, 429]
    status, _, body = served.call("rated", f"gpt-rated-{round_name}")
    assert (status, body["error"]["code"]) == (429, 2003)

    budget = [served.call("budget", "gpt-4o", **{"cf-aig-custom-cost": COST}) for _ in range(3)]
    assert [status for status, _, _ in budget] == [200, 200, 429]
    refused = budget[-1][2]["error"]
    assert refused["code"] == 2041 and "rule 'cap'" in refused["message"], refused

    for surface in ("compat", "passthrough"):
        model, content = ("gpt-4o-mini", f"cache me {round_name} {surface}")
        first = served.call("cached", model, surface=surface, content=content)[1]
        second = served.call("cached", model, surface=surface, content=content)[1]
        assert (first["cf-aig-cache-status"], second["cf-aig-cache-status"]) == ("MISS", "HIT"), surface


def state_unavailable(served: Served) -> dict[str, float]:
    """`switchpoint_state_unavailable_total` per feature, from the gateway's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{served.port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    found = re.findall(r'^switchpoint_state_unavailable_total\{feature="(\w+)"\} (\S+)$', text, re.M)
    return {feature: float(value) for feature, value in found}


def test_killed_redis_follows_the_policy_then_recovers_without_a_restart(served: Served, own_redis: OwnRedis) -> None:
    _enforced(served, "before")

    own_redis.kill()
    # Rate limit: fail open. The bucket is spent (429 just above), yet every call now goes through.
    assert [served.call("rated", "gpt-rated-before")[0] for _ in range(RATE_LIMIT + 2)] == [200] * (RATE_LIMIT + 2)
    # Budget: fail closed, 429/2041 saying why, on /compat (OpenAI dialect) and on passthrough (Cloudflare's).
    status, headers, body = served.call("budget", "gpt-4o", **{"cf-aig-custom-cost": COST})
    assert (status, body["error"]["code"]) == (429, 2041)
    assert "state is unavailable" in body["error"]["message"]
    assert int(headers["retry-after"]) >= 1
    status, _, body = served.call("budget", "gpt-4o", surface="passthrough", **{"cf-aig-custom-cost": COST})
    assert (status, body["error"][0]["code"]) == (429, 2041)
    assert "state is unavailable" in body["error"][0]["message"]
    # Cache: fail open. What was a hit a moment ago is a MISS now, answered by the provider, and stays one.
    for surface in ("compat", "passthrough"):
        for _ in range(2):
            status, headers, body = served.call(
                "cached", "gpt-4o-mini", surface=surface, content=f"cache me before {surface}"
            )
            assert (status, headers["cf-aig-cache-status"]) == (200, "MISS"), surface
            assert body["choices"][0]["message"]["content"] == f"echo: cache me before {surface}"

    log = served.log()
    assert "rate_limit state unavailable, letting calls through" in log, log
    assert "budget state unavailable, refusing calls" in log, log
    assert not [s for s in served.statuses if s >= 500], served.statuses
    unavailable = state_unavailable(served)
    assert unavailable["rate_limit"] >= RATE_LIMIT + 2 and unavailable["budget"] >= 2, unavailable
    assert unavailable["cache"] >= 4, unavailable  # the metric operators alert on

    own_redis.start()  # same port, empty: a restarted server without persistence
    started = time.monotonic()
    while served.call("budget", "gpt-4o", **{"cf-aig-custom-cost": '{"total_cost": 0}'})[0] != 200:
        assert time.monotonic() - started < RECOVERY_S, "the gateway did not reconnect to the restarted Redis"
        time.sleep(0.1)
    _enforced(served, "after")
    assert "state available again" in served.log()
    assert not [s for s in served.statuses if s >= 500], served.statuses


def test_a_hung_redis_costs_one_probe_per_retry_not_a_stall_per_call(served: Served, own_redis: OwnRedis) -> None:
    """A frozen server (SIGSTOP: the kernel still completes TCP handshakes) is detected by the reply timeout
    (1 s); after that, calls fail fast and only an occasional probe waits for the server, so almost every
    call of a fail-open rate limit keeps its normal latency while Redis hangs."""
    assert served.call("rated", "gpt-hung")[0] == 200
    assert own_redis.process is not None
    own_redis.process.send_signal(signal.SIGSTOP)
    try:
        assert served.call("rated", "gpt-hung")[0] == 200  # waits out the timeout: this is the detection
        waits: list[float] = []
        deadline = time.monotonic() + 3.5

        def caller() -> None:
            while time.monotonic() < deadline:
                started = time.monotonic()
                assert served.call("rated", "gpt-hung")[0] == 200
                waits.append(time.monotonic() - started)
                time.sleep(0.05)

        threads = [threading.Thread(target=caller) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        own_redis.process.send_signal(signal.SIGCONT)
    slow = [wait for wait in waits if wait > 0.5]
    assert len(waits) > 20 and len(slow) <= 4, f"{len(slow)} of {len(waits)} calls waited > 0.5 s"
