#!/usr/bin/env python3
"""What the response cache, rate limits and budgets cost in requests/s, in-process and with Redis.

Method (as /work/shared/bench/bench.py): a fixed OpenAI upstream (nginx) and the load generator (wrk -t1
-c64) on CPU 1; each server alone on CPU 0, one worker process, gateway authentication and logging on (the
token comes from `switchpoint tokens create`). One config holds one gateway per scenario; the gateway runs
twice, once with in-process state and once with `redis_url` (a private redis-server, on CPU 1 too):

  plain      no limits, no cache                 cache      cache_ttl 3600, every request identical (hits)
  rl         rate limit 10^9 per 60 s (sliding)  rl-budget  that, and a spend rule of 10^9 USD per day
  cache-nolog  cache hits with collect_logs off: what a hit's log record costs (not a goal)

plus `bare`: a bare aiohttp (uvloop) handler answering the same JSON, the ceiling for any aiohttp server on
this core, and `bare-proxy`: a minimal aiohttp pass-through to the same upstream, which DESIGN.md puts at
about 10,000 req/s on one core of the machine the goals were set on (so it scales the cache goal here).
Rounds are interleaved (scenario order rotates each round); medians are reported. Goals: limits in-process
>= 0.95 x plain, with Redis >= 0.75 x plain, a cache hit >= 15,000 req/s on the goal machine, that is
>= 1.5 x `bare-proxy` measured in the same run.

Figures: wrk's req/s (wall) and, because this may run on a shared machine, requests per CPU-second of the
server process (`per core`: what one core to itself would serve). Ratios are medians of same-round ratios.

  .venv/bin/python bench/bench_cache_limits.py [--quick] [--rounds 3] [--json out.json]
  .venv/bin/python bench/bench_cache_limits.py --quick --profile rl-budget@redis   # py-spy, top frames

Needs wrk, nginx, redis-server, taskset (and py-spy for --profile). Traffic stays on 127.0.0.1; every
process started here is stopped here.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import sys
import tempfile
import time
import urllib.request
from typing import Any

import _harness
from _harness import (
    CHAT_COMPLETION,
    GATEWAY_CPU,
    LOAD_CPU,
    MESSAGES,
    free_port,
    start,
    summarize_profile,
    switchpoint_exe,
    wait_ready,
)

BODY = {"model": "openai/gpt-4o-mini", "messages": MESSAGES, "temperature": 0.2}
GATEWAYS: dict[str, dict[str, Any]] = {
    "plain": {},
    "cache": {"cache_ttl": 3600},
    "cache-nolog": {"cache_ttl": 3600, "collect_logs": False},  # what a hit costs without its log record
    "rl": {"rate_limit": {"limit": 10**9, "window": 60}},
    "rl-budget": {
        "rate_limit": {"limit": 10**9, "window": 60},
        "spend_limits": [{"id": "huge", "limit": 1e9, "window": 86400}],
    },
}
STATES = ("memory", "redis")
GOAL_MEMORY, GOAL_REDIS, GOAL_CACHE_RPS = 0.95, 0.75, 15_000
# DESIGN.md section 4: a minimal aiohttp pass-through did about this on one core of the machine the goals were
# set on; `bare-proxy` is that pass-through here, so their ratio scales the cache goal to this machine.
GOAL_MACHINE_PROXY_RPS = 10_000


def post(url: str, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
    return _harness.post(url, headers, BODY)


def wrk(
    url: str, headers: dict[str, str], conc: int, seconds: float, tmp: str, pid: int | None = None
) -> dict[str, Any]:
    """wrk's figures (_harness.wrk), and with `pid` the server's CPU time per request: `core_rps` is what one
    core would serve if the server had it to itself (requests / CPU seconds)."""
    return _harness.wrk(url, headers, BODY, conc, seconds, tmp, pid=pid)


_OUTCOME = re.compile(r'^switchpoint_log_records_total\{outcome="(\w+)"\} (\S+)$', re.M)


def wait_logs_written(url: str, seconds: float = 30) -> None:
    """Until the gateway behind `url` has written every record it accepted (its /metrics); at once for the
    bare servers, which keep no log."""
    if "/v1/" not in url:
        return
    metrics = url.split("/v1/", 1)[0] + "/metrics"
    end = time.time() + seconds
    while time.time() < end:
        with urllib.request.urlopen(metrics, timeout=5) as reply:
            counts = {k: float(v) for k, v in _OUTCOME.findall(reply.read().decode())}
        if counts and counts["accepted"] <= counts["written"] + counts["rejected"] + counts["dropped"]:
            return
        time.sleep(0.05)
    print(f"# log records of {url} still unwritten after {seconds} s", file=sys.stderr)


def measured_run(url: str, headers: dict[str, str], seconds: float, tmp: str, pid: int) -> dict[str, Any]:
    """wrk for `seconds` with the server's CPU time counted from a written-out log to a written-out log, so
    each scenario pays for writing its own records and never for the backlog of the scenario before it (the
    rotation keeps the same neighbours every round: cache hits, 13k records a second, came before rl)."""
    wait_logs_written(url)
    cpu0 = _harness.cpu_seconds(pid)
    fig = wrk(url, headers, 64, seconds, tmp)
    wait_logs_written(url)
    cpu = _harness.cpu_seconds(pid) - cpu0
    requests = fig["requests"]
    fig.update(cpu_s=cpu, cpu_us_per_req=cpu * 1e6 / requests if requests and cpu else None)
    fig.update(core_rps=requests / cpu if requests and cpu else 0.0, cpu_share=min(1.0, cpu / seconds))
    return fig


# ---------------------------------------------------------------- the processes


def nginx_upstream(tmp: str, port: int) -> None:
    _harness.nginx_upstream(tmp, port, {"/": CHAT_COMPLETION})
    if not wait_ready(f"http://127.0.0.1:{port}/"):
        sys.exit("nginx upstream did not start")


def redis(tmp: str) -> str:
    port = free_port()
    start(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cpu=LOAD_CPU,
        log=os.path.join(tmp, "redis.log"),
    )
    end = time.time() + 10
    while time.time() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.05)
    sys.exit("redis-server did not start")


def gateway(
    exe: str, tmp: str, state: str, up: str, redis_url: str | None
) -> tuple[int, dict[str, dict[str, str]], int]:
    """Start `switchpoint serve` for one state backend: (port, per-scenario auth headers, pid)."""
    data = os.path.join(tmp, f"sp-{state}")
    os.makedirs(data, exist_ok=True)
    conf = os.path.join(data, "switchpoint.yaml")
    gateways = {name: {"authentication": True, "collect_logs": True, **extra} for name, extra in GATEWAYS.items()}
    with open(conf, "w") as f:
        json.dump(
            {"data_dir": data, "redis_url": redis_url, "providers": {"openai": {"base_url": up}}, "gateways": gateways},
            f,
        )
    headers = {}
    for name in GATEWAYS:
        token = _harness.create_token(exe, conf, name, cwd=data)
        headers[name] = {"Authorization": "Bearer sk-bench", "cf-aig-authorization": f"Bearer {token}"}
    port = free_port()
    proc = _harness.serve(exe, conf, port, log=os.path.join(tmp, f"switchpoint-{state}.log"), cwd=data)
    if not wait_ready(f"http://127.0.0.1:{port}/health"):
        sys.exit(f"switchpoint ({state}) did not become healthy; see {tmp}/switchpoint-{state}.log")
    return port, headers, proc.pid


def bare(tmp: str, up: str) -> tuple[int, int]:
    port = free_port()
    proc = start(
        [sys.executable, os.path.abspath(__file__), "--serve-bare", str(port), up],
        cpu=GATEWAY_CPU,
        log=os.path.join(tmp, "bare.log"),
    )
    if not wait_ready(f"http://127.0.0.1:{port}/health"):
        sys.exit("the bare aiohttp server did not start")
    return port, proc.pid


def serve_bare(port: int, up: str) -> None:
    """Bare aiohttp on uvloop, no gateway work: `/bare/...` reads the body and answers the upstream's JSON;
    `/proxy/...` is a minimal pass-through (the body to the upstream, its answer back, one keep-alive pool)."""
    import aiohttp
    import uvloop
    from aiohttp import web

    reply = json.dumps(CHAT_COMPLETION).encode()

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=reply, content_type="application/json")

    async def proxy(request: web.Request) -> web.Response:
        body = await request.read()
        session = request.app[SESSION]
        async with session.post(up + "/chat/completions", data=body, headers={"content-type": "application/json"}) as r:
            return web.Response(body=await r.read(), status=r.status, content_type="application/json")

    async def client(app: web.Application) -> Any:
        app[SESSION] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        yield
        await app[SESSION].close()

    SESSION = web.AppKey("session", aiohttp.ClientSession)
    app = web.Application()
    app.cleanup_ctx.append(client)
    app.router.add_route("*", "/proxy/{tail:.*}", proxy)
    app.router.add_route("*", "/{tail:.*}", handle)
    uvloop.install()
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None, backlog=4096)


# ---------------------------------------------------------------- profile


def profile(
    pid: int, url: str, headers: dict[str, str], seconds: int, tmp: str, name: str, rate: int = 100, gil: bool = False
) -> str:
    """py-spy on the server while wrk loads it (`rate` samples a second; `gil`: only the thread holding the
    GIL, so threads waiting on it or in C code that released it are not counted); the raw profile's path."""
    out = os.path.join(tmp, f"profile-{name.replace('@', '-').replace('+', '-')}.txt")
    args = ("-r", str(rate), *(("--gil",) if gil else ()))
    _harness.py_spy(pid, out, seconds, lambda: wrk(url, headers, 64, seconds + 1, tmp), args=args)
    return out


# ---------------------------------------------------------------- the run


def scenarios(
    memory: tuple[int, dict[str, dict[str, str]], int],
    redis_gw: tuple[int, dict[str, dict[str, str]], int],
    bare_server: tuple[int, int],
) -> dict[str, tuple[str, dict[str, str], int]]:
    """name -> (URL, headers, server pid)."""
    origin = f"http://127.0.0.1:{bare_server[0]}"
    found: dict[str, tuple[str, dict[str, str], int]] = {
        "bare": (f"{origin}/bare/chat/completions", {}, bare_server[1]),
        "bare-proxy": (f"{origin}/proxy/chat/completions", {}, bare_server[1]),
    }
    for state, (port, headers, pid) in zip(STATES, (memory, redis_gw), strict=True):
        for name in GATEWAYS:
            found[f"{name}@{state}"] = (_harness.compat_url(port, name), headers[name], pid)
    return found


def check(name: str, url: str, headers: dict[str, str]) -> None:
    """One call answers 200 (and a cache scenario is warm: its next call is a HIT)."""
    status, got = post(url, headers)
    if status != 200:
        sys.exit(f"{name}: the first call answered {status}")
    if name.startswith("cache"):
        status, got = post(url, headers)
        if got.get("cf-aig-cache-status") != "HIT":
            sys.exit(f"{name}: the second identical call was not a cache HIT ({got.get('cf-aig-cache-status')})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="3 s runs after 1 s of warm-up (noisier)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", help="write every figure here")
    ap.add_argument(
        "--profile",
        action="append",
        default=[],
        metavar="SCENARIO",
        help="after the rounds, py-spy this scenario's server for 8 s under load (repeatable)",
    )
    ap.add_argument("--only", help="comma-separated scenarios to run (e.g. plain@memory,rl@memory); default: all")
    ap.add_argument("--profile-rate", type=int, default=100, help="py-spy samples per second (more: finer, slower)")
    ap.add_argument("--profile-gil", action="store_true", help="py-spy samples only the thread holding the GIL")
    a = ap.parse_args()
    _harness.require_tools("wrk", "nginx", "redis-server", "taskset")
    dur, warm = (3, 1) if a.quick else (10, 2)
    tmp = tempfile.mkdtemp(prefix="bench-cache-limits-")
    exe = switchpoint_exe()
    results: dict[str, Any] = {
        "method": f"server on CPU {GATEWAY_CPU} (1 worker); nginx upstream, redis and wrk -t1 -c64 on CPU {LOAD_CPU}",
        "duration_s": dur,
        "rounds": {},
    }
    profiles: list[str] = []
    try:
        up_port = free_port()
        nginx_upstream(tmp, up_port)
        up = f"http://127.0.0.1:{up_port}/v1"
        redis_url = redis(tmp)
        found = scenarios(
            gateway(exe, tmp, "memory", up, None), gateway(exe, tmp, "redis", up, redis_url), bare(tmp, up)
        )
        for name, (url, headers, _) in found.items():
            check(name, url, headers)
        names = list(found) if not a.only else [n for n in a.only.split(",") if n in found]
        if not names:
            sys.exit(f"--only names none of: {', '.join(found)}")
        for r in range(a.rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                url, headers, pid = found[name]
                wrk(url, headers, 64, warm, tmp)
                fig = measured_run(url, headers, dur, tmp, pid)
                results["rounds"].setdefault(name, []).append(fig)
                p99, core = fig["p99_us"] or 0, fig["core_rps"]
                line = f"round {r + 1} {name:18} {fig['rps']:7.0f} req/s {core:7.0f} per core-s  p99 {p99:7.0f} us"
                line += f"  non2xx {fig['non2xx']}"
                print(line, file=sys.stderr, flush=True)
        for name in a.profile:
            url, headers, pid = found[name]
            profiles.append(summarize_profile(profile(pid, url, headers, 8, tmp, name, a.profile_rate, a.profile_gil)))
    finally:
        _harness.stop_all()
    if results["rounds"]:
        report(results)
    for text in profiles:
        print("\n" + text)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)


def _ratio(rounds: dict[str, list[dict[str, Any]]], name: str, base: str, key: str) -> float:
    """Median over rounds of `name`/`base` measured in the same round: pairs share the machine's mood."""
    if name not in rounds or base not in rounds:  # left out with --only
        return float("nan")
    pairs = zip(rounds[name], rounds[base], strict=True)
    return statistics.median(a[key] / b[key] if b[key] else 0.0 for a, b in pairs)


def report(results: dict[str, Any]) -> None:
    """Medians per scenario. Ratios are medians of same-round ratios, on requests per server CPU-second (see
    `wrk`), with wall-clock req/s beside them."""
    rounds = results["rounds"]
    wall = {name: statistics.median(f["rps"] for f in figs) for name, figs in rounds.items()}
    core = {name: statistics.median(f["core_rps"] for f in figs) for name, figs in rounds.items()}
    n = len(next(iter(rounds.values())))
    print(f"# {results['method']}; {n} interleaved rounds of {results['duration_s']} s, medians")
    print("# per core: requests / server CPU-seconds (what one core to itself would serve); wall: wrk's req/s")
    print("# share: the part of its core the server got (wall / per core); well below 1 means other load on CPU 0")
    head = f"{'scenario':17} {'per core':>8} {'CPU us/req':>10} {'x plain':>7} {'x bare':>6} | {'wall req/s':>10}"
    print(head + f" {'rounds (wall)':>20} {'x plain':>7} {'p99 ms':>7} {'non2xx':>6} {'share':>5}")
    for name, figs in rounds.items():
        plain = "plain@" + name.split("@")[1] if "@" in name else None
        p99 = statistics.median((f["p99_us"] or 0) for f in figs) / 1000
        each = "/".join(f"{f['rps']:.0f}" for f in figs)
        x_core = f"{_ratio(rounds, name, plain, 'core_rps'):.3f}" if plain else "-"
        x_wall = f"{_ratio(rounds, name, plain, 'rps'):.3f}" if plain else "-"
        x_bare = _ratio(rounds, name, "bare", "core_rps")
        bad = sum(f["non2xx"] for f in figs)
        cpu_us = 1e6 / core[name] if core[name] else 0.0
        share = statistics.median(f["rps"] / f["core_rps"] if f["core_rps"] else 0.0 for f in figs)
        print(
            f"{name:17} {core[name]:8.0f} {cpu_us:10.1f} {x_core:>7} {x_bare:6.3f} | {wall[name]:10.0f}"
            f" {each:>20} {x_wall:>7} {p99:7.1f} {bad:6d} {share:5.2f}"
        )
    if len(rounds) < len(STATES) * len(GATEWAYS) + 2:
        print("\n# goals: only with every scenario (no --only)")
        return
    print("\n# goals (per core; wall in brackets)")
    rows = []
    for state, goal in (("memory", GOAL_MEMORY), ("redis", GOAL_REDIS)):
        for name in ("rl", "rl-budget"):
            scenario, base = f"{name}@{state}", f"plain@{state}"
            ratio, ratio_wall = _ratio(rounds, scenario, base, "core_rps"), _ratio(rounds, scenario, base, "rps")
            verdict = "ok" if ratio >= goal else "MISS"
            rows.append((f"{scenario} / {base}", f"{ratio:.3f}", f"({ratio_wall:.3f})", f">= {goal}", verdict))
    speed = core["bare-proxy"] / GOAL_MACHINE_PROXY_RPS
    rows.append(("bare-proxy req/s (speed)", f"{core['bare-proxy']:.0f}", f"({wall['bare-proxy']:.0f})",
                 f"/ {GOAL_MACHINE_PROXY_RPS}", f"this machine ~ {speed:.2f} x the goal machine"))  # fmt: skip
    for state in STATES:
        hit, hit_wall = core[f"cache@{state}"], wall[f"cache@{state}"]
        verdict = "ok" if hit >= GOAL_CACHE_RPS else "below"
        rows.append((f"cache@{state} req/s", f"{hit:.0f}", f"({hit_wall:.0f})", f">= {GOAL_CACHE_RPS}", verdict))
        scaled = GOAL_CACHE_RPS * speed
        verdict = "ok" if hit >= scaled else f"MISS (needs {scaled / hit:.1f}x)"
        rows.append((f"cache@{state} vs scaled goal", f"{hit:.0f}", "", f">= {scaled:.0f}", verdict))
        for base in ("bare", "bare-proxy", f"plain@{state}"):
            ratio, ratio_wall = (
                _ratio(rounds, f"cache@{state}", base, "core_rps"),
                _ratio(rounds, f"cache@{state}", base, "rps"),
            )
            rows.append((f"cache@{state} / {base}", f"{ratio:.3f}", f"({ratio_wall:.3f})", "", ""))
    for row in rows:
        print(f"{row[0]:30} {row[1]:>8} {row[2]:>9} {row[3]:>9}  {row[4]}")
    results["median_core_rps"], results["median_wall_rps"] = core, wall


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--serve-bare":
        serve_bare(int(sys.argv[2]), sys.argv[3])
    else:
        main()
