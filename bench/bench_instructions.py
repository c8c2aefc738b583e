#!/usr/bin/env python3
"""Instructions per request of the gateway, per scenario: a figure that does not move with the machine's speed.

Wall-clock benches on this shared machine vary by tens of percent within minutes, which drowns the few
percent a change on the hot path is worth. Here `switchpoint serve` runs under valgrind's callgrind, which
counts the instructions every thread executes (the event loop, the log writer's thread, SQLite); each
scenario sends N identical requests one after another on one keep-alive connection between a zeroed and a
dumped counter, after its log records (and the previous scenario's) are written. The wait for those records
reads the gateway's SQLite file from this process: polling the gateway's /metrics instead would count its
scrapes, whose cost grows with every scenario's label sets, against the later scenarios. Repeat runs give the
same figures within a fraction of a percent, so A/B comparisons of a change need one run each.

Scenarios are those of bench_cache_limits.py (plain, cache hits, cache hits without logging, rate limit,
rate limit + budget), in-process state; the upstream is nginx answering a fixed chat completion.

  .venv/bin/python bench/bench_instructions.py [--requests 2000] [--only plain,cache] [--rounds 3] [--json out.json]

A run varies more than its parts: a full garbage collection, or the event loop waking more often while the
machine is loaded, can add tens of thousands of instructions to one scenario. `--rounds K` runs the scenarios
K times over, interleaved, and reports each one's median and the median of its ratios to `plain` in the same
round.

Needs valgrind (callgrind_control), nginx. Instructions are not time (a cache miss costs more than an
add), but for Python code they track CPU time closely.
"""

from __future__ import annotations

import argparse
import glob
import http.client
import json
import os
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import _harness
from _harness import free_port, switchpoint_exe, wait_ready
from bench_cache_limits import BODY, GATEWAYS, nginx_upstream, post


def wait_rows(db: str, gateway: str, rows: int, seconds: float = 120) -> None:
    """Until the log table holds `rows` records of `gateway`, read from the file (never through the gateway)."""
    end = time.time() + seconds
    while time.time() < end:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            (found,) = conn.execute("SELECT count(*) FROM logs WHERE gateway = ?", (gateway,)).fetchone()
        conn.close()
        if found >= rows:
            return
        time.sleep(0.1)
    sys.exit(f"{gateway}: {rows} log records not written after {seconds} s")


def start_under_callgrind(
    exe: str, tmp: str, up: str
) -> tuple[int, dict[str, dict[str, str]], subprocess.Popen[bytes]]:
    """`switchpoint serve` under callgrind with one gateway per scenario: (port, auth headers, process)."""
    data = os.path.join(tmp, "sp")
    os.makedirs(data, exist_ok=True)
    conf = os.path.join(data, "switchpoint.yaml")
    gateways = {name: {"authentication": True, "collect_logs": True, **extra} for name, extra in GATEWAYS.items()}
    with open(conf, "w") as f:
        json.dump({"data_dir": data, "providers": {"openai": {"base_url": up}}, "gateways": gateways}, f)
    headers = {}
    for name in GATEWAYS:
        token = _harness.create_token(exe, conf, name, cwd=data)
        headers[name] = {"Authorization": "Bearer sk-bench", "cf-aig-authorization": f"Bearer {token}"}
    port = free_port()
    out = os.path.join(tmp, "callgrind.out")
    cmd = [
        "valgrind", "--tool=callgrind", f"--callgrind-out-file={out}.%p", "--dump-instr=no", "--collect-jumps=no",
        exe, "serve", "--config", conf, "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    proc = _harness.start(cmd, cpu=_harness.GATEWAY_CPU, log=os.path.join(tmp, "switchpoint.log"), cwd=data)
    if not wait_ready(f"http://127.0.0.1:{port}/health", seconds=180, proc=proc):
        sys.exit(f"switchpoint under callgrind did not become healthy; see {tmp}/switchpoint.log")
    return port, headers, proc


def send(port: int, path: str, headers: dict[str, str], count: int) -> None:
    """`count` identical POSTs, one after another on one connection; every answer must be 200."""
    body = json.dumps(BODY).encode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    sent = {"content-type": "application/json", **headers}
    for _ in range(count):
        conn.request("POST", path, body=body, headers=sent)
        reply = conn.getresponse()
        reply.read()
        if reply.status != 200:
            sys.exit(f"{path}: answered {reply.status}")
    conn.close()


_TOTALS = re.compile(rb"^(?:summary|totals):\s+(\d+)", re.M)


def control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True)


def instructions(tmp: str, pid: int, tag: str) -> int:
    """Dump the counters since the last zeroing and read the dump's total."""
    before = set(glob.glob(os.path.join(tmp, f"callgrind.out.{pid}*")))
    control(pid, "--dump=" + tag)
    end = time.time() + 60
    while time.time() < end:
        new = set(glob.glob(os.path.join(tmp, f"callgrind.out.{pid}*"))) - before
        for path in new:
            with open(path, "rb") as f:
                found = _TOTALS.search(f.read())
            if found:
                return int(found.group(1))
        time.sleep(0.1)
    sys.exit("callgrind wrote no dump")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--only", help="comma-separated scenarios (default: all of " + ",".join(GATEWAYS) + ")")
    ap.add_argument("--rounds", type=int, default=1, help="run the scenarios this many times over, interleaved")
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument(
        "--no-log", action="store_true", help="send `cf-aig-collect-log: false`: the request path without its log write"
    )
    a = ap.parse_args()
    _harness.require_tools("valgrind", "callgrind_control", "nginx")
    names = a.only.split(",") if a.only else list(GATEWAYS)
    unknown = [n for n in names if n not in GATEWAYS]
    if unknown:
        sys.exit(f"unknown scenarios: {unknown}")
    names = names * a.rounds
    tmp = tempfile.mkdtemp(prefix="bench-instructions-")
    exe = switchpoint_exe()
    figures: dict[str, Any] = {}
    try:
        up_port = free_port()
        nginx_upstream(tmp, up_port)
        port, headers, proc = start_under_callgrind(exe, tmp, f"http://127.0.0.1:{up_port}/v1")
        db = os.path.join(tmp, "sp", "switchpoint.db")
        logged_before: dict[str, int] = {}  # records written per gateway so far (a scenario may repeat)
        for name in names:
            if a.no_log:
                headers[name]["cf-aig-collect-log"] = "false"
            url = _harness.compat_url(port, name)
            path = url.split(str(port), 1)[1]
            status, _ = post(url, headers[name])
            if status != 200:
                sys.exit(f"{name}: answered {status}")
            send(port, path, headers[name], a.warmup)
            logs_on = not a.no_log and GATEWAYS[name].get("collect_logs", True)
            logged = logged_before.get(name, 0) + 1 + a.warmup if logs_on else 0
            if logged:
                wait_rows(db, name, logged)
            control(proc.pid, "--zero")
            send(port, path, headers[name], a.requests)
            if logged:
                logged_before[name] = logged + a.requests
                wait_rows(db, name, logged_before[name])
            total = instructions(tmp, proc.pid, name)
            label = name if name not in figures else f"{name}#{sum(k.split('#')[0] == name for k in figures) + 1}"
            figures[label] = total / a.requests
            print(f"{label:14} {figures[label]:12,.0f} instructions/request", file=sys.stderr, flush=True)
    finally:
        _harness.stop_all()
    print(f"{'scenario':14} {'instr/req':>12} {'x plain':>8}")
    base = None
    for name, value in figures.items():
        if name.split("#")[0] == "plain":
            base = value  # each ratio is to the last plain before it: the same round
        shown = f"{value / base:8.3f}" if base else ""
        print(f"{name:14} {value:12,.0f} {shown}")
    summary = summarize(figures) if a.rounds > 1 else {}
    if summary:
        print(f"medians of {a.rounds} rounds (x plain: the median of the same-round ratios)")
    for name, (median, ratio) in summary.items():
        shown = f"{ratio:8.3f}" if ratio is not None else ""
        print(f"{name:14} {median:12,.0f} {shown}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"requests": a.requests, "instructions_per_request": figures, "medians": summary}, f, indent=1)


def summarize(figures: dict[str, float]) -> dict[str, tuple[float, float | None]]:
    """Per scenario: the median of its rounds, and the median of its ratios to the plain run of its round."""
    values: dict[str, list[float]] = {}
    ratios: dict[str, list[float]] = {}
    base = None
    for label, value in figures.items():
        name = label.split("#")[0]
        if name == "plain":
            base = value
        values.setdefault(name, []).append(value)
        if base:
            ratios.setdefault(name, []).append(value / base)
    return {n: (statistics.median(v), statistics.median(ratios[n]) if n in ratios else None) for n, v in values.items()}


if __name__ == "__main__":
    main()
