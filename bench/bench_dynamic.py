#!/usr/bin/env python3
"""What a dynamic route costs on /compat: `dynamic/<route>` against a direct `openai/gpt-4o-mini` call.

Method (as /work/shared/bench/bench.py's switchpoint contender): a fixed OpenAI upstream (nginx) and the load
generator (wrk -t1) on CPU 1; `switchpoint serve` alone on CPU 0, one worker process, gateway authentication
and logging on. The route is declared in the config's `routes:` section: 10 elements, 3 conditions (metadata,
an `$or` over a header and a regex, a body field), a sticky percentage split, a rate element and three openai
model nodes, the shape of `bench_routes.py`. Both scenarios send the same request and headers (a
`cf-aig-metadata` the conditions read); only `model` differs. Rounds are interleaved (the order alternates
each round) and medians reported; the ratio is the median of the rounds' ratios. `core req/s` = requests /
gateway CPU seconds is robust to other load on a shared machine; `cpu` is the gateway's share of its core
during a run (well below 1 at c64: it was starved). Goal: dynamic >= 0.90 x direct requests/s.

  .venv/bin/python bench/bench_dynamic.py [--quick] [--rounds 3] [--json out.json] [--profile]

`--profile` runs py-spy on the gateway for 8 s under dynamic load after the rounds and prints the top frames.
Needs wrk, nginx, taskset (and py-spy for --profile). Traffic stays on 127.0.0.1; every process started here
is stopped here.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from typing import Any

import _harness
from _harness import GATEWAY_CPU, LOAD_CPU, MESSAGES, ROUTE, free_port, post, wait_ready

ROUTE_NAME = "support"
SCENARIOS = {"direct": "openai/gpt-4o-mini", "dynamic": f"dynamic/{ROUTE_NAME}"}
METADATA = {"plan": "paid", "team": "eu-support", "user_id": "u-1042"}
GOAL = 0.90
MAX_RERUNS = 3
# the figures of a wrk run this bench keeps (its --json has always held these)
FIGURES = ("rps", "requests", "cpu_us_per_req", "core_rps", "cpu_share", "p50_us", "p99_us", "non2xx")


def body(scenario: str) -> dict[str, Any]:
    return {"model": SCENARIOS[scenario], "messages": MESSAGES, "temperature": 0.2}


# ---------------------------------------------------------------- the processes


def nginx_upstream(tmp: str, port: int) -> None:
    _harness.nginx_upstream(tmp, port, {"/": _harness.CHAT_COMPLETION})
    if not wait_ready(f"http://127.0.0.1:{port}/"):
        sys.exit("nginx upstream did not start")


def gateway(exe: str, tmp: str, up: str) -> tuple[str, dict[str, str], int]:
    """Start `switchpoint serve` with the route in its config: (compat URL, request headers, pid)."""
    data = os.path.join(tmp, "sp")
    os.makedirs(data, exist_ok=True)
    conf = os.path.join(data, "switchpoint.yaml")  # JSON is YAML
    config = {
        "data_dir": data,
        "providers": {"openai": {"base_url": up}},
        "gateways": {"default": {"authentication": True, "collect_logs": True}},
        "routes": {ROUTE_NAME: ROUTE},
    }
    with open(conf, "w") as f:
        json.dump(config, f)
    token = _harness.create_token(exe, conf, "default", cwd=data)
    port = free_port()
    log = os.path.join(tmp, "switchpoint.log")
    proc = _harness.serve(exe, conf, port, log=log, cwd=data)
    if not wait_ready(f"http://127.0.0.1:{port}/health"):
        sys.exit(f"switchpoint did not become healthy; see {log}")
    headers = {
        "Authorization": "Bearer sk-bench",
        "cf-aig-authorization": f"Bearer {token}",
        "cf-aig-metadata": json.dumps(METADATA, separators=(",", ":")),
    }
    return _harness.compat_url(port), headers, proc.pid


# ---------------------------------------------------------------- load


def wrk(
    url: str, headers: dict[str, str], payload: dict[str, Any], conc: int, seconds: float, tmp: str, pid: int
) -> dict[str, Any]:
    """wrk's figures plus the gateway's CPU time per request (`core_rps` = requests / CPU seconds)."""
    figures = _harness.wrk(url, headers, payload, conc, seconds, tmp, pid=pid, check=True)
    return {k: figures[k] for k in FIGURES}


def throughput(
    url: str, headers: dict[str, str], payload: dict[str, Any], seconds: float, tmp: str, pid: int, min_cpu: float
) -> dict[str, Any]:
    """A c64 run in which the gateway had its core: on a shared machine other load on CPU 0 can starve it
    for seconds, which measures the neighbours, not the gateway. `starved` counts the runs thrown away."""
    starved = 0
    while True:
        figures = wrk(url, headers, payload, 64, seconds, tmp, pid)
        if figures["cpu_share"] >= min_cpu or starved == MAX_RERUNS:
            return {**figures, "starved": starved}
        starved += 1
        print(f"#   re-run: the gateway had {figures['cpu_share']:.2f} of its core ({figures['rps']:.0f} req/s)")


def profile(pid: int, url: str, headers: dict[str, str], tmp: str, seconds: int = 8) -> str:
    """py-spy (raw, folded stacks) on the gateway while wrk sends dynamic calls; the profile's path."""
    out = os.path.join(tmp, "profile-dynamic.txt")
    _harness.py_spy(pid, out, seconds, lambda: wrk(url, headers, body("dynamic"), 64, seconds + 1, tmp, pid))
    return out


# ---------------------------------------------------------------- the run


def check(url: str, headers: dict[str, str]) -> None:
    """Each scenario answers 200 once; the dynamic one names the model its route picked."""
    for scenario in SCENARIOS:
        status, got = post(url, headers, body(scenario))
        if status != 200:
            sys.exit(f"{scenario}: the first call answered {status}")
        if scenario == "dynamic":
            print(f"# dynamic/{ROUTE_NAME} answered from {got.get('cf-aig-provider')}/{got.get('cf-aig-model')}")


def report(rounds: list[dict[str, dict[str, Any]]]) -> dict[str, Any]:
    med = {
        s: {
            k: statistics.median(r[s][c][k] or 0 for r in rounds)
            for c, k in (("c64", "rps"), ("c64", "core_rps"), ("c1", "p50_us"), ("c1", "p99_us"))
        }
        for s in SCENARIOS
    }
    bad = {s: sum(r[s][c]["non2xx"] for r in rounds for c in ("c64", "c1")) for s in SCENARIOS}
    print(f"{'scenario':10} {'req/s c64':>10} {'core req/s':>11} {'p50 c1':>8} {'p99 c1':>8} {'non2xx':>7}")
    for s in SCENARIOS:
        m = med[s]
        print(f"{s:10} {m['rps']:10.0f} {m['core_rps']:11.0f} {m['p50_us']:7.0f}u {m['p99_us']:7.0f}u {bad[s]:7d}")
    per_round = [r["dynamic"]["c64"]["rps"] / r["direct"]["c64"]["rps"] for r in rounds if r["direct"]["c64"]["rps"]]
    ratio = statistics.median(per_round) if per_round else 0.0
    core = med["dynamic"]["core_rps"] / med["direct"]["core_rps"] if med["direct"]["core_rps"] else 0.0
    print(f"ratio dynamic/direct req/s c64, median of rounds: {ratio:.3f} ({', '.join(f'{x:.3f}' for x in per_round)})")
    added = med["dynamic"]["p50_us"] - med["direct"]["p50_us"]
    print(f"ratio dynamic/direct core req/s: {core:.3f}; +p50 c1 {added:.0f} us")
    print(f"goal >= {GOAL:.2f}: {'met' if ratio >= GOAL else 'MISSED'}")
    return {"medians": med, "non2xx": bad, "ratio": ratio, "core_ratio": core, "per_round": per_round}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="3 s runs after 1 s of warm-up (noisier)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", help="write every figure here")
    ap.add_argument("--profile", action="store_true", help="py-spy the gateway under dynamic load afterwards")
    ap.add_argument(
        "--min-cpu",
        type=float,
        default=0.8,
        help="re-run (up to 3 times) a c64 run in which the gateway had less than this share of its core",
    )
    a = ap.parse_args()
    _harness.require_tools("wrk", "nginx", "taskset")
    dur, warm = (3, 1) if a.quick else (10, 2)
    tmp = tempfile.mkdtemp(prefix="bench-dynamic-")
    rounds: list[dict[str, dict[str, Any]]] = []
    try:
        up_port = free_port()
        nginx_upstream(tmp, up_port)
        url, headers, pid = gateway(_harness.switchpoint_exe(), tmp, f"http://127.0.0.1:{up_port}/v1")
        check(url, headers)
        print(f"# gateway on CPU {GATEWAY_CPU} (1 worker, auth + logging on); nginx and wrk -t1 on CPU {LOAD_CPU}")
        for s in SCENARIOS:
            wrk(url, headers, body(s), 64, warm, tmp, pid)
        for n in range(a.rounds):
            order = list(SCENARIOS) if n % 2 == 0 else list(reversed(SCENARIOS))
            figures: dict[str, dict[str, Any]] = {}
            for s in order:
                figures[s] = {
                    "c64": throughput(url, headers, body(s), dur, tmp, pid, a.min_cpu),
                    "c1": wrk(url, headers, body(s), 1, max(3, dur // 2), tmp, pid),
                }
            rounds.append(figures)
            done = [f"{s} {f['c64']['rps']:.0f} req/s (cpu {f['c64']['cpu_share']:.2f})" for s, f in figures.items()]
            print(f"# round {n + 1}: " + ", ".join(done))
        summary = report(rounds)
        if a.profile:
            print(_harness.summarize_profile(profile(pid, url, headers, tmp)))
    finally:
        _harness.stop_all()
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"rounds": rounds, **summary}, f, indent=1)


if __name__ == "__main__":
    main()
