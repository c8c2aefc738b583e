#!/usr/bin/env python3
"""What logging costs in throughput: requests/s with logging on vs `cf-aig-collect-log: false`, at SQLite and
at PostgreSQL (goal: logging on keeps >= 90% of the requests/s of logging off).

Method (as /work/shared/bench/bench.py): a fixed-answer nginx upstream and wrk (-t1 -c64) on CPU 1; one
`switchpoint serve` worker on CPU 0 with gateway authentication on, called through `/compat/chat/completions`.
On and off run in the same process, alternating (on, off, off, on, on, off: drift cancels), `--rounds` each.
PostgreSQL is the server at `--pg` (trust auth); a fresh database is created for the run and dropped after.

  .venv/bin/python bench/bench_logging.py                   # both backends, 5 rounds of 6 s per mode
  .venv/bin/python bench/bench_logging.py --quick --only sqlite
  .venv/bin/python bench/bench_logging.py --profile pg      # also py-spy 8 s of logging-on load, PostgreSQL
  .venv/bin/python bench/bench_logging.py --json out.json
  .venv/bin/python bench/bench_logging.py --latency --only sqlite   # also p50/p99 at concurrency 1, on vs off

The machine may be shared: each run waits for other processes to go quiet (< --quiet CPUs over a second,
at most --max-wait s), and is done again (up to --retries times) when they used more than twice that during it.
The table shows the load each kept run saw from others, from the PostgreSQL server, and as steal.

Every process started here is stopped here; traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import _harness
from _harness import CHAT_COMPLETION, CLK_TCK, MESSAGES, free_port

BODY = {"model": "openai/gpt-4o-mini", "temperature": 0.2, "messages": MESSAGES}
ORDER = ("on", "off", "off", "on")  # repeated: each mode runs first and second equally often
GOAL = 0.90
GRACE = 20  # seconds a process gets to stop cleanly (the gateway flushes its log queue)
FRAME_MARKERS = ("site-packages/", "src/", "lib/python3.11/")
PERCENTILES = (50, 75, 90, 99)  # the latency distribution wrk --latency prints


def wait_ready(url: str, proc: subprocess.Popen[bytes] | None = None, seconds: float = 60) -> None:
    """_harness.wait_ready, exiting with the reason when `url` did not answer."""
    if not _harness.wait_ready(url, seconds, proc):
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"process exited with {proc.returncode} before {url} answered")
        raise SystemExit(f"{url} did not answer within {seconds} s")


def nginx_upstream(tmp: Path) -> str:
    port = free_port()
    _harness.nginx_upstream(tmp, port, {"/": CHAT_COMPLETION}, log=tmp / "nginx.log")
    wait_ready(f"http://127.0.0.1:{port}/")
    return f"http://127.0.0.1:{port}/v1"


# ------------------------------------------------------------------------------------------------ PostgreSQL


@contextlib.contextmanager
def pg_database(admin_url: str) -> Iterator[str]:
    """A fresh database on the server `admin_url` points at (its own database is the admin one); dropped after."""
    import psycopg  # only needed for the PostgreSQL half

    name = f"sp_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin_url.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def count_logs(database_url: str | None, data_dir: Path) -> int:
    if database_url is None:
        import sqlite3

        con = sqlite3.connect(data_dir / "switchpoint.db")
        try:
            return int(con.execute("SELECT count(*) FROM logs").fetchone()[0])
        finally:
            con.close()
    import psycopg

    with psycopg.connect(database_url, connect_timeout=5) as conn:
        row = conn.execute("SELECT count(*) FROM logs").fetchone()
        return int(row[0]) if row else 0


# ------------------------------------------------------------------------------------------------ the gateway


def start_gateway(tmp: Path, name: str, upstream: str, database_url: str | None) -> dict[str, Any]:
    exe = _harness.switchpoint_exe()
    data = tmp / name
    data.mkdir()
    config = data / "switchpoint.json"
    settings: dict[str, Any] = {"data_dir": str(data), "providers": {"openai": {"base_url": upstream}},
                                "gateways": {"default": {"authentication": True, "collect_logs": True}}}  # fmt: skip
    if database_url is not None:
        settings["database_url"] = database_url
    config.write_text(json.dumps(settings))
    token = _harness.create_token(exe, config, "default", cwd=data)
    port = free_port()
    proc = _harness.serve(exe, config, port, log=data / "serve.log", cwd=data)
    wait_ready(f"http://127.0.0.1:{port}/health", proc)
    return {"proc": proc, "port": port, "data": data, "database_url": database_url, "url": _harness.compat_url(port),
            "headers": {"authorization": "Bearer sk-bench", "cf-aig-authorization": f"Bearer {token}"}}  # fmt: skip


def log_counters(port: int) -> dict[str, float]:
    """The log writer's counts from /metrics (a busy shared machine may be slow to answer: one retry)."""
    try:
        text = _get(f"http://127.0.0.1:{port}/metrics")
    except OSError:
        time.sleep(1)
        text = _get(f"http://127.0.0.1:{port}/metrics")
    out: dict[str, float] = {}
    for match in re.finditer(r'^switchpoint_log_records(?:_total)?\{outcome="(\w+)"\} ([\d.e+]+)$', text, re.M):
        out[match[1]] = float(match[2])
    for gauge in ("queue_depth", "spool_bytes"):
        found = re.search(rf"^switchpoint_log_{gauge} ([\d.e+]+)$", text, re.M)
        out[gauge] = float(found[1]) if found else 0.0
    return out


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as response:
        return str(response.read().decode())


# ------------------------------------------------------------------------------------------------ load
# The machine may be shared (and is a VM): around every run the script reads the CPU time used by processes
# outside its own tree (PostgreSQL's server apart: that is logging's own cost) and the hypervisor's steal time.
# A run waits (bounded) for a quiet moment before it starts and is done again when it was disturbed.


@dataclasses.dataclass(frozen=True)
class CpuSample:
    at: float
    procs: dict[int, tuple[int, str, int]]  # pid -> (parent pid, command, user + system ticks)
    steal: int  # ticks stolen from CPUs 0 and 1

    @classmethod
    def take(cls) -> CpuSample:
        procs: dict[int, tuple[int, str, int]] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                procs[int(entry)] = _harness.proc_stat(entry)
            except OSError:  # gone since the listing
                continue
        steal = 0
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith(("cpu0 ", "cpu1 ")):
                steal += int(line.split()[8])
        return cls(time.time(), procs, steal)


def _ours(procs: dict[int, tuple[int, str, int]]) -> set[int]:
    children: dict[int, list[int]] = collections.defaultdict(list)
    for pid, (ppid, _, _) in procs.items():
        children[ppid].append(pid)
    mine, todo = set(), [os.getpid()]
    while todo:
        pid = todo.pop()
        mine.add(pid)
        todo.extend(children.get(pid, ()))
    return mine


def load_between(before: CpuSample, after: CpuSample) -> dict[str, float]:
    """CPUs' worth of time, on average: other processes, the PostgreSQL server, and hypervisor steal."""
    seconds = max(after.at - before.at, 1e-3)
    mine = _ours(after.procs)
    other = db = 0
    for pid, (_, comm, ticks) in after.procs.items():
        if pid in mine:
            continue
        used = ticks - before.procs.get(pid, (0, "", 0))[2]
        if comm == "postgres":
            db += used
        else:
            other += used
    per = CLK_TCK * seconds
    return {"others": round(other / per, 2), "postgres": round(db / per, 2),
            "steal": round((after.steal - before.steal) / per, 2)}  # fmt: skip


def disturbed(load: dict[str, float], limit: float) -> bool:
    return load["others"] > limit or load["steal"] > limit


def wait_quiet(limit: float, max_wait: float) -> dict[str, float]:
    """Wait until others use under `limit` CPUs over a second (at most `max_wait` s); returns that load."""
    deadline = time.time() + max_wait
    while True:
        before = CpuSample.take()
        time.sleep(1)
        load = load_between(before, CpuSample.take())
        if not disturbed(load, limit) or time.time() > deadline:
            return load


def wrk(
    url: str, headers: dict[str, str], seconds: float, tmp: Path, conc: int = 64, lat: bool = False
) -> dict[str, Any]:
    """_harness.wrk's figures, with the load others put on the machine meanwhile and (with `lat`) p50/p99 in ms."""
    before = CpuSample.take()
    fig = _harness.wrk(url, headers, BODY, conc, seconds, tmp, latency=lat, check=True, percentiles=PERCENTILES)
    load = load_between(before, CpuSample.take())
    found = {pct: fig[f"p{pct}_us"] for pct in PERCENTILES}
    latency_ms = {f"p{pct}": round(us / 1000, 3) for pct, us in found.items() if us is not None}
    return {"rps": fig["rps"], "requests": fig["requests"], "non2xx": fig["non2xx"],
            "socket_errors": fig["socket_errors"], "load": load, "latency_ms": latency_ms}  # fmt: skip


def latency(gateway: dict[str, Any], a: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """p50/p99 at concurrency 1, logging on and off alternating: what the flushes cost the calls they delay."""
    on = gateway["headers"]
    off = {**on, "cf-aig-collect-log": "false"}
    runs: dict[str, list[dict[str, float]]] = {"on": [], "off": []}
    for i in range(2 * a.rounds):
        mode = ORDER[i % len(ORDER)]
        wait_quiet(a.quiet, a.max_wait)
        run = wrk(gateway["url"], on if mode == "on" else off, a.seconds, tmp, conc=1, lat=True)
        runs[mode].append(run["latency_ms"])
        settle(gateway)
    out = {mode: {k: statistics.median(r[k] for r in rs) for k in ("p50", "p99")} for mode, rs in runs.items()}
    print(f"  concurrency 1, median of runs: on p50 {out['on']['p50']:.3f} ms p99 {out['on']['p99']:.3f} ms; "
          f"off p50 {out['off']['p50']:.3f} ms p99 {out['off']['p99']:.3f} ms", file=sys.stderr)  # fmt: skip
    return {"median_ms": out, "runs": runs}


def settle(gateway: dict[str, Any], seconds: float = 20) -> dict[str, float]:
    """Wait until the writer's queue is empty, so the next run does not pay for this one's records."""
    deadline = time.time() + seconds
    counters = log_counters(gateway["port"])
    while counters.get("queue_depth", 0) > 0 and time.time() < deadline:
        time.sleep(0.1)
        counters = log_counters(gateway["port"])
    return counters


def cpu_per_request(pid: int, before: CpuSample, after: CpuSample, requests: int) -> dict[str, float]:
    """CPU microseconds per request of the gateway (every thread of it) and of the PostgreSQL server."""
    if not requests:
        return {}
    ticks = after.procs.get(pid, (0, "", 0))[2] - before.procs.get(pid, (0, "", 0))[2]
    postgres = load_between(before, after)["postgres"] * (after.at - before.at)
    return {"cpu_us": round(ticks / CLK_TCK / requests * 1e6, 1), "pg_cpu_us": round(postgres / requests * 1e6, 1)}


def measure(gateway: dict[str, Any], a: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    on = gateway["headers"]
    off = {**on, "cf-aig-collect-log": "false"}
    wrk(gateway["url"], on, a.warm, tmp)
    wrk(gateway["url"], off, a.warm, tmp)
    settle(gateway)
    runs: list[dict[str, Any]] = []
    discarded: list[dict[str, Any]] = []
    stored_before = count_logs(gateway["database_url"], gateway["data"])
    for i in range(2 * a.rounds):
        mode = ORDER[i % len(ORDER)]
        for attempt in range(a.retries + 1):  # a run disturbed by others is done again
            wait_quiet(a.quiet, a.max_wait)
            before = CpuSample.take()
            run = {"mode": mode, **wrk(gateway["url"], on if mode == "on" else off, a.seconds, tmp)}
            settle(gateway)  # the records' writing is part of the run's CPU time
            run.update(cpu_per_request(gateway["proc"].pid, before, CpuSample.take(), run["requests"]))
            load = run["load"]
            print(f"  {mode:>3}: {run['rps']:7.0f} req/s, gateway {run.get('cpu_us', 0):6.1f} CPU us/req, postgres "
                  f"{run.get('pg_cpu_us', 0):5.1f}; others used {load['others']:.2f} CPUs, steal {load['steal']:.2f}",
                  file=sys.stderr)  # fmt: skip
            if (not disturbed(load, 2 * a.quiet) and run["rps"] > 0) or attempt == a.retries:
                break
            discarded.append(run)
        runs.append(run)
    counters = settle(gateway)
    time.sleep(0.5)
    stored = count_logs(gateway["database_url"], gateway["data"]) - stored_before
    logged = sum(r["requests"] for r in runs + discarded if r["mode"] == "on")  # wrk counts requests cut at the end
    return {"runs": runs, "discarded": discarded, "records_stored": stored, "requests_logging_on": logged,
            "writer": counters}  # fmt: skip


# ------------------------------------------------------------------------------------------------ profile


def profile(gateway: dict[str, Any], seconds: int, tmp: Path, name: str) -> dict[str, Any]:
    """py-spy (raw, collapsed stacks) over `seconds` of logging-on load; self and inclusive time per function."""
    out = tmp / f"profile-{name}.txt"
    target = _python_pid(gateway["proc"].pid)
    wait_quiet(0.1, 90)
    _harness.py_spy(target, out, seconds, lambda: wrk(gateway["url"], gateway["headers"], seconds + 1, tmp), lead=1)
    settle(gateway)
    return summarise(out)


def _python_pid(pid: int) -> int:
    """`taskset` execs the command, so the pid is the gateway's own (kept apart in case a wrapper forks)."""
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return int(children[0]) if children else pid


# Frames on the event-loop thread that only logging on runs (queueing and writing records), and those both
# modes run (the record is built for the metrics whether or not it is stored).
LOGGING_ONLY = (
    "LogWriter.", "store/logrows.py", "store/sqlite_batches.py", "concurrent/futures/thread.py", "encode_record",
    "asyncpg/", "aiosqlite/", "sqlalchemy/",
)  # fmt: skip
BOTH_MODES = ("Exchange.log_record", "Metrics.observe")


def summarise(raw: Path, top: int = 25) -> dict[str, Any]:
    """Self and inclusive time per function over the event-loop thread's samples (other threads idle or
    run the SQLite driver: counted apart), and the shares of LOGGING_ONLY and BOTH_MODES frames."""
    self_time: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    logging_time: collections.Counter[str] = collections.Counter()
    total = others = logging_total = building = 0
    if not raw.exists():
        return {"error": f"py-spy wrote nothing to {raw}"}
    for stack, n in _harness.folded_stacks(raw):
        frames = [_harness.short_frame(f, FRAME_MARKERS) for f in stack]
        if not frames[0].startswith("<module>"):  # a thread other than the main (event-loop) one
            others += n
            if any("aiosqlite" in f for f in frames):
                logging_time["SQLite writer thread (aiosqlite), not in the total"] += n
            continue
        total += n
        self_time[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
        hit = next((f for f in frames if any(k in f for k in LOGGING_ONLY)), None)
        if hit is not None:
            logging_total += n
            logging_time[hit] += n
            continue
        hit = next((f for f in frames if any(k in f for k in BOTH_MODES)), None)
        if hit is not None:
            building += n
            logging_time[f"{hit} (logging off too)"] += n

    def pct(n: int) -> float:
        return round(100 * n / total, 1) if total else 0.0

    logging = [
        ("logging on only (queue, writer, driver)", pct(logging_total)),
        ("building the record (both modes)", pct(building)),
    ]
    logging += [(f, pct(n)) for f, n in logging_time.most_common(8)]  # fmt: skip
    return {
        "samples": total,
        "other_thread_samples": others,
        "raw_file": str(raw),
        "logging": logging,
        "self": [(f, pct(n)) for f, n in self_time.most_common(top)],
        "inclusive": [(f, pct(n)) for f, n in inclusive.most_common(top * 3)
                      if any(k in f for k in ("switchpoint", "sqlalchemy", "asyncpg", "aiosqlite", "orjson"))][:top],
    }  # fmt: skip


# ------------------------------------------------------------------------------------------------ report


def summary(fig: dict[str, Any]) -> dict[str, Any]:
    """Means per mode; the on/off ratio of throughput and of gateway CPU per request (the steadier figure)."""
    runs = fig["runs"]

    def mean(mode: str, key: str) -> float:
        values = [r[key] for r in runs if r["mode"] == mode and key in r]
        return statistics.mean(values) if values else 0.0

    pairs = [runs[i : i + 2] for i in range(0, len(runs) - 1, 2)]  # each pair holds one on and one off run
    paired = [next(r["rps"] for r in p if r["mode"] == "on") / max(next(r["rps"] for r in p if r["mode"] == "off"), 1)
              for p in pairs]  # fmt: skip
    out: dict[str, Any] = {
        f"{mode}_{key}": mean(mode, key) for mode in ("on", "off") for key in ("rps", "cpu_us", "pg_cpu_us")
    }
    out["ratio"] = out["on_rps"] / max(out["off_rps"], 1)
    out["cpu_ratio"] = out["off_cpu_us"] / out["on_cpu_us"] if out["on_cpu_us"] else 0.0
    out["paired"], out["paired_median"] = paired, statistics.median(paired)
    return out


def _load_cell(load: dict[str, float]) -> str:
    return f"{load['others']:.2f}/{load['steal']:.2f}"


def print_table(results: dict[str, Any]) -> None:
    head = f"{'backend':<11}{'logging':<8}{'runs (req/s, wrk -t1 -c64)':<42}{'mean':>7}{'non2xx':>7}"
    print(f"\n{head}{'gw CPU us/req':>15}{'pg CPU us/req':>15}  others/steal CPUs per run")
    for name, fig in results["backends"].items():
        s = summary(fig)
        for mode in ("off", "on"):
            runs = [r for r in fig["runs"] if r["mode"] == mode]
            cells = " ".join(f"{r['rps']:7.0f}" for r in runs)
            bad = sum(r["non2xx"] for r in runs)
            load = " ".join(_load_cell(r["load"]) for r in runs)
            print(f"{name:<11}{mode:<8}{cells:<42}{s[mode + '_rps']:7.0f}{bad:7d}{s[mode + '_cpu_us']:15.1f}"
                  f"{s[mode + '_pg_cpu_us']:15.1f}  {load}")  # fmt: skip
    print()
    for name, fig in results["backends"].items():
        s = summary(fig)
        ratio = s["ratio"]
        verdict = "within goal" if ratio >= GOAL else f"OVER BUDGET (goal: on >= {GOAL:.0%} of off)"
        pairs = " ".join(f"{p:.2f}" for p in s["paired"])
        print(f"{name}: req/s logging on / off = {ratio:.3f} (logging costs {1 - ratio:.1%}) {verdict}")
        print(f"  per adjacent on/off pair: {pairs} (median {s['paired_median']:.3f}); gateway CPU per request "
              f"off/on = {s['cpu_ratio']:.3f} (logging adds {s['on_cpu_us'] - s['off_cpu_us']:.1f} us/req,"
              f" {1 - s['cpu_ratio']:.1%} of capacity)")  # fmt: skip
        writer = fig["writer"]
        print(f"  {len(fig['discarded'])} disturbed run(s) done again; records stored {fig['records_stored']} for"
              f" ~{fig['requests_logging_on']} logged requests; writer: "
              + ", ".join(f"{k}={int(v)}" for k, v in sorted(writer.items())))  # fmt: skip
    for name, prof in results.get("profiles", {}).items():
        print(f"\nprofile ({name}, logging on; {prof.get('samples', 0)} samples of the event-loop thread, "
              f"{prof.get('other_thread_samples', 0)} of other threads; raw: {prof.get('raw_file')})")  # fmt: skip
        print("  logging's share of the event-loop thread:")
        for frame, pct in prof.get("logging", []):
            print(f"    {pct:5.1f}%  {frame}")
        print("  self time, event-loop thread:")
        for frame, pct in prof.get("self", [])[:15]:
            print(f"    {pct:5.1f}%  {frame}")
        print("  inclusive (project, SQLAlchemy, drivers):")
        for frame, pct in prof.get("inclusive", [])[:20]:
            print(f"    {pct:5.1f}%  {frame}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=("sqlite", "pg"), help="one backend only")
    ap.add_argument("--rounds", type=int, default=5, help="runs per mode (default 5)")
    ap.add_argument("--seconds", type=float, default=6, help="seconds per run (default 6)")
    ap.add_argument("--warm", type=float, default=2, help="warm-up seconds per mode (default 2)")
    ap.add_argument("--quick", action="store_true", help="2 rounds of 3 s")
    ap.add_argument("--quiet", type=float, default=0.1, help="start a run once others use < this many CPUs")
    ap.add_argument("--max-wait", type=float, default=90, help="seconds to wait for that quiet (then run anyway)")
    ap.add_argument("--retries", type=int, default=6, help="times a run is redone when others used > 2x --quiet")
    ap.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test", help="admin URL of the server")
    ap.add_argument("--profile", choices=("sqlite", "pg", "both"), help="py-spy the gateway under logging-on load")
    ap.add_argument("--json", help="write all figures here")
    ap.add_argument("--latency", action="store_true", help="also p50/p99 at concurrency 1, logging on vs off")
    a = ap.parse_args()
    _harness.require_tools("wrk", "nginx", "taskset", hint=" (apt-get install wrk nginx)")
    if a.quick:
        a.rounds, a.seconds, a.warm = 2, 3, 1
    backends = [a.only] if a.only else ["sqlite", "pg"]
    tmp = Path(tempfile.mkdtemp(prefix="bench-logging-"))
    results: dict[str, Any] = {"method": "gateway pinned to CPU 0 (1 worker, auth on); nginx upstream + wrk -t1 -c64 "
                               "on CPU 1; logging on vs cf-aig-collect-log: false, alternating", "backends": {},
                               "profiles": {}}  # fmt: skip
    try:
        upstream = nginx_upstream(tmp)
        for name in backends:
            with contextlib.ExitStack() as stack:
                url = stack.enter_context(pg_database(a.pg)) if name == "pg" else None
                gateway = start_gateway(tmp, name, upstream, url)
                stack.callback(_harness.stop, gateway["proc"], GRACE)
                label = "PostgreSQL" if name == "pg" else "SQLite"
                print(f"{label}: {a.rounds} rounds x {a.seconds} s per mode ...", file=sys.stderr, flush=True)
                results["backends"][label] = measure(gateway, a, tmp)
                if a.latency:
                    results["backends"][label]["latency_c1"] = latency(gateway, a, tmp)
                if a.profile in (name, "both"):
                    results["profiles"][label] = profile(gateway, 8, tmp, name)
    finally:
        _harness.stop_all(GRACE)
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=2, default=str))
    print_table(results)
    if not a.profile:  # keep the raw profiles
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
