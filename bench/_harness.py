"""What the bench scripts share: pinned processes, the fixed nginx upstream, wrk, /proc CPU time, py-spy.

One copy of each, so that every bench measures the same way (the method of /work/shared/bench/bench.py):
the server under test alone on CPU 0, the fakes and the load generator on CPU 1, traffic on 127.0.0.1,
and every process started here stopped here. The scripts are run as `python bench/<script>.py`, which puts
this folder on `sys.path`: `import _harness`. Standard library only, so a script imports it before it
knows which optional tools (aiohttp, psycopg, py-spy) it needs.
"""

from __future__ import annotations

import collections
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from typing import Any

GATEWAY_CPU, LOAD_CPU = 0, 1
CLK_TCK = os.sysconf("SC_CLK_TCK")

# The request every gateway bench sends and the fixed OpenAI answer its nginx upstream returns.
MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Say hello in one short sentence, please."},
]
CHAT_COMPLETION = {
    "id": "chatcmpl-bench",
    "object": "chat.completion",
    "created": 1732000000,
    "model": "gpt-4o-mini",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello! This is a fixed answer from the bench upstream."},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 25, "completion_tokens": 14, "total_tokens": 39},
}


# ---------------------------------------------------------------- the dynamic route


def _out(**targets: str) -> dict[str, Any]:
    return {name: {"elementId": target} for name, target in targets.items()}


def _model(element_id: str, model: str, fallback: str) -> dict[str, Any]:
    return {"id": element_id, "type": "model", "outputs": _out(success="end", fallback=fallback),
            "properties": {"provider": "openai", "model": model, "timeout": 30000, "retries": 1}}  # fmt: skip


# 10 elements, 3 conditions (metadata, an `$or` over a header and a regex, a body field), a sticky percentage
# split, a rate element and three openai model nodes. One definition, so that bench_routes.py (the walk alone,
# in µs) and bench_dynamic.py (the walk inside the gateway, in req/s) measure the same route.
ROUTE = {
    "elements": [
        {"id": "start", "type": "start", "outputs": _out(next="is_paid")},
        {"id": "is_paid", "type": "conditional", "properties": {"conditions": {"metadata.plan": {"$eq": "paid"}}},
         "outputs": _out(true="is_eu", false="is_eu")},
        {"id": "is_eu", "type": "conditional",
         "properties": {"conditions": {"$or": [{"headers.x-region": {"$in": ["eu", "uk"]}},
                                               {"metadata.team": {"$regex": "^eu-"}}]}},
         "outputs": _out(true="is_big", false="is_big")},
        {"id": "is_big", "type": "conditional", "properties": {"conditions": {"body.max_tokens": {"$gt": 4000}}},
         "outputs": _out(true="m_large", false="split")},
        {"id": "split", "type": "percentage", "properties": {"sticky": "metadata.user_id"},
         "outputs": _out(**{"70%": "quota", "else": "m_small"})},
        {"id": "quota", "type": "rate", "outputs": _out(success="m_large", fallback="m_small"),
         "properties": {"key": "metadata.user_id", "limit": 10**12, "limitType": "count", "window": 3600}},
        _model("m_large", "gpt-4.1", "m_small"),
        _model("m_small", "gpt-4o-mini", "m_last"),
        _model("m_last", "gpt-4.1-nano", "end"),
        {"id": "end", "type": "end", "outputs": {}},
    ]
}  # fmt: skip


# ---------------------------------------------------------------- processes

PROCS: list[subprocess.Popen[bytes]] = []  # everything start() started and stop() has not stopped yet


def require_tools(*tools: str, hint: str = "") -> None:
    """Exit at once, naming the tool, rather than half-way through a run with a cryptic error."""
    for tool in tools:
        if not shutil.which(tool):
            sys.exit(f"bench needs {tool}{hint}")


def switchpoint_exe() -> str:
    """$SWITCHPOINT, else the gateway beside this Python (the venv's), else the one on PATH."""
    exe = os.environ.get("SWITCHPOINT") or os.path.join(os.path.dirname(sys.executable), "switchpoint")
    if not os.path.exists(exe):
        exe = shutil.which("switchpoint") or ""
    if not exe:
        sys.exit("switchpoint not found: set SWITCHPOINT=/path/to/switchpoint")
    return exe


def free_port() -> int:
    """A port the kernel just handed out, so runs never collide with each other or a fixed port in use."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(
    cmd: list[str], cpu: int, log: str | os.PathLike[str] | None = None, cwd: str | os.PathLike[str] | None = None
) -> subprocess.Popen[bytes]:
    """Start `cmd` pinned to one CPU (taskset execs it: the pid is the command's own), stderr to `log`.

    Pinning keeps the server under test and the load on separate cores, so they do not measure each other.
    The process is remembered in PROCS so that stop_all() stops it whatever happens.
    """
    with open(log or os.devnull, "wb") as err:  # the child keeps its own descriptor
        proc = subprocess.Popen(["taskset", "-c", str(cpu), *cmd], stdout=subprocess.DEVNULL, stderr=err, cwd=cwd)
    PROCS.append(proc)
    return proc


def stop(proc: subprocess.Popen[bytes], grace: float = 8) -> None:
    """SIGTERM (a clean shutdown: nginx, redis and the gateway flush and exit), SIGKILL after `grace` s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc in PROCS:
        PROCS.remove(proc)


def stop_all(grace: float = 8) -> None:
    """Stop every process still in PROCS, newest first (the gateway before the upstream it talks to)."""
    for proc in list(reversed(PROCS)):
        stop(proc, grace)


def wait_ready(url: str, seconds: float = 60, proc: subprocess.Popen[bytes] | None = None) -> bool:
    """Whether `url` answered (any status below 500) within `seconds`; False at once if `proc` exits.

    Servers take a moment to bind; measuring before they answer would count connection errors.
    """
    end = time.time() + seconds
    while time.time() < end:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return True
        except urllib.error.HTTPError as e:
            if e.code < 500:
                return True
            time.sleep(0.2)
        except Exception:  # refused, reset, a half-started server's garbage: not up yet
            time.sleep(0.2)
    return False


def post(url: str, headers: dict[str, str], payload: Any) -> tuple[int, dict[str, str]]:
    """One JSON POST before measuring: (status, lower-cased response headers). A first call that fails
    would make every figure after it meaningless."""
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"content-type": "application/json", **headers}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            response.read()
            return response.status, {k.lower(): v for k, v in response.headers.items()}
    except urllib.error.HTTPError as err:
        return err.code, {k.lower(): v for k, v in err.headers.items()}


# ---------------------------------------------------------------- the fixed upstream and the gateway


def nginx_upstream(
    tmp: str | os.PathLike[str],
    port: int,
    answers: Mapping[str, Any],
    *,
    keepalive_requests: int | None = None,
    log: str | os.PathLike[str] | None = None,
) -> subprocess.Popen[bytes]:
    """One nginx worker on the load CPU answering fixed JSON: `answers` maps an nginx location (`/`,
    `= /v1/messages`) to the body it returns with 200; without a `/` location other paths answer 404.

    nginx is the cheapest upstream there is, so the figures are the gateway's, not the fake's. The caller
    waits for it (wait_ready) and decides what a failed start means.
    """

    def literal(obj: object) -> str:  # a single-quoted nginx string
        return json.dumps(obj).replace("\\", "\\\\").replace("'", "\\'")

    locations = [f"location {where} {{ return 200 '{literal(body)}'; }}" for where, body in answers.items()]
    if "/" not in answers:
        locations.append("""location / { return 404 '{"error":"not found"}'; }""")
    keepalive = f" keepalive_requests {keepalive_requests};" if keepalive_requests else ""
    served = "\n    ".join(locations)
    conf = os.path.join(tmp, "upstream.conf")
    with open(conf, "w") as f:
        f.write(f"""worker_processes 1; daemon off; pid {tmp}/up.pid; error_log {tmp}/up.err;
events {{ worker_connections 8192; }}
http {{ access_log off;{keepalive}
  server {{ listen 127.0.0.1:{port} backlog=4096; default_type application/json;
    {served} }} }}
""")
    return start(["nginx", "-c", conf, "-p", str(tmp)], cpu=LOAD_CPU, log=log)


def create_token(exe: str, conf: str | os.PathLike[str], gateway: str, cwd: str | os.PathLike[str]) -> str:
    """A gateway token from `switchpoint tokens create` (its last line), for runs with authentication on."""
    made = subprocess.run(
        [exe, "tokens", "create", "--gateway", gateway, "--config", str(conf)], capture_output=True, text=True, cwd=cwd
    )
    lines = made.stdout.strip().splitlines()
    if not lines:
        sys.exit(f"switchpoint tokens create --gateway {gateway} printed nothing: {made.stderr}")
    return lines[-1].strip()


def serve(
    exe: str, conf: str | os.PathLike[str], port: int, log: str | os.PathLike[str], cwd: str | os.PathLike[str]
) -> subprocess.Popen[bytes]:
    """`switchpoint serve` alone on the gateway CPU with one worker: one core's worth, comparable run to run.
    The caller waits for `/health`."""
    cmd = [exe, "serve", "--config", str(conf), "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    return start(cmd, cpu=GATEWAY_CPU, log=log, cwd=cwd)


def compat_url(port: int, gateway: str = "default") -> str:
    """The gateway's OpenAI-compatible chat endpoint, the one every gateway bench loads."""
    return f"http://127.0.0.1:{port}/v1/bench/{gateway}/compat/chat/completions"


# ---------------------------------------------------------------- CPU time from /proc


def proc_stat(pid: int | str) -> tuple[int, str, int]:
    """(parent pid, command, user + system ticks of all its threads) from /proc/<pid>/stat.

    The command sits in parentheses and may itself hold spaces or ')': the fields are split after the last ')'.
    """
    with open(f"/proc/{pid}/stat") as f:
        head, _, tail = f.read().rpartition(")")
    fields = tail.split()
    return int(fields[1]), head.partition("(")[2], int(fields[11]) + int(fields[12])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far. Around a run, it gives requests per
    CPU-second: what one core to itself would serve, robust to other load on a shared machine."""
    return proc_stat(pid)[2] / CLK_TCK


# ---------------------------------------------------------------- wrk


def write_wrk_script(path: str | os.PathLike[str], payload: Any, headers: Mapping[str, str]) -> str:
    """A wrk Lua script POSTing `payload` as JSON with `headers`; its path."""
    lines = [
        'wrk.method = "POST"',
        f"wrk.body = {json.dumps(json.dumps(payload))}",
        'wrk.headers["Content-Type"] = "application/json"',
    ]
    lines += [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return str(path)


def parse_wrk(out: str, percentiles: tuple[int, ...] = (50, 99)) -> dict[str, Any]:
    """wrk's text output as figures: req/s, requests, `p<N>_us` per percentile N in µs (with --latency: wrk
    prints 50, 75, 90 and 99; None otherwise), non-2xx, socket errors."""

    def lat(tag: str) -> float | None:
        m = re.search(rf"^\s*{tag}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        return float(m.group(1)) * {"us": 1, "ms": 1e3, "s": 1e6}[m.group(2)] if m else None

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    done = re.search(r"(\d+) requests in", out)
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errs = re.search(r"Socket errors:.*", out)
    return {
        "rps": float(rps.group(1)) if rps else 0.0,
        "requests": int(done.group(1)) if done else 0,
        **{f"p{pct}_us": lat(str(pct)) for pct in percentiles},
        "non2xx": int(bad.group(1)) if bad else 0,
        "socket_errors": errs.group(0) if errs else "",
    }


def wrk(
    url: str,
    headers: Mapping[str, str],
    payload: Any,
    conc: int,
    seconds: float,
    tmp: str | os.PathLike[str],
    *,
    pid: int | None = None,
    latency: bool = True,
    check: bool = False,
    percentiles: tuple[int, ...] = (50, 99),
) -> dict[str, Any]:
    """`wrk -t1` on the load CPU for `seconds` at `conc` connections: parse_wrk's figures, and with `pid` that
    server's CPU time over the run (zeros without): `cpu_s`, `cpu_us_per_req`, `core_rps` (requests / CPU
    seconds: what one core to itself would serve) and `cpu_share` (the part of its core it got: well below 1
    means other load starved it). `check`: exit when wrk printed no figures rather than report 0 req/s.
    `percentiles`: the latency percentiles to report (see parse_wrk)."""
    lua = write_wrk_script(os.path.join(tmp, "post.lua"), payload, headers)
    duration = int(seconds) if float(seconds).is_integer() else seconds  # wrk refuses `-d2.0s`
    cmd = ["taskset", "-c", str(LOAD_CPU), "wrk", "-t1", f"-c{conc}", f"-d{duration}s"]
    cmd += ["--latency"] if latency else []
    cpu0 = cpu_seconds(pid) if pid else 0.0
    run = subprocess.run([*cmd, "-s", lua, url], capture_output=True, text=True)
    cpu = cpu_seconds(pid) - cpu0 if pid else 0.0
    if check and "Requests/sec" not in run.stdout:
        sys.exit(f"wrk failed ({run.returncode}): {run.stdout}{run.stderr}")
    figures = parse_wrk(run.stdout, percentiles)
    requests = figures["requests"]
    figures["cpu_s"] = cpu
    figures["cpu_us_per_req"] = cpu * 1e6 / requests if requests and cpu else None
    figures["core_rps"] = requests / cpu if requests and cpu else 0.0
    figures["cpu_share"] = cpu / seconds
    return figures


# ---------------------------------------------------------------- py-spy


def py_spy_exe() -> str:
    """py-spy beside this Python (the venv's), else the one on PATH."""
    exe = os.path.join(os.path.dirname(sys.executable), "py-spy")
    return exe if os.path.exists(exe) else "py-spy"


def py_spy(
    pid: int,
    out: str | os.PathLike[str],
    seconds: int,
    load: Callable[[], object],
    *,
    args: tuple[str, ...] = (),
    lead: float = 0,
    exe: str | None = None,
) -> str | None:
    """py-spy records `pid` for `seconds` (raw folded stacks to `out`) while `load()` keeps it busy: a profile
    of the server under load, not idle. `lead` s pass between starting py-spy and the load (it needs a moment
    to attach). None when py-spy succeeded, else the tail of its complaint (commonly: no ptrace permission)."""
    cmd = [exe or py_spy_exe(), "record", "-p", str(pid), "-d", str(seconds), *args, "-f", "raw", "-o", str(out)]
    spy = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    PROCS.append(spy)  # stopped with the rest on Ctrl-C or an error
    try:
        time.sleep(lead)
        load()
        _, err = spy.communicate(timeout=seconds + 30)
    finally:
        stop(spy)
    return err.decode()[-500:] if spy.returncode else None


def folded_stacks(path: str | os.PathLike[str]) -> Iterator[tuple[list[str], int]]:
    """(frames root first, samples) per line of a raw py-spy profile (`a;b;c 12`); other lines skipped."""
    with open(path) as f:
        for line in f:
            stack, _, count = line.rstrip().rpartition(" ")
            if stack and count.isdigit():
                yield stack.split(";"), int(count)


FRAME_MARKERS = ("site-packages/", "src/", "lib/python3")


def short_frame(frame: str, markers: tuple[str, ...] = FRAME_MARKERS) -> str:
    """`func (path/to/file.py:123)` -> `func (package/file.py)`: a function's lines merged, its path cut after
    the first of `markers`, so the same function reads the same from any checkout or venv."""
    m = re.match(r"(.*) \((.*?):\d+\)$", frame)
    if not m:
        return frame
    func, path = m.groups()
    for marker in markers:
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{func} ({path})"


def summarize_profile(path: str | os.PathLike[str], top: int = 25) -> str:
    """Own and total time per frame (percent of samples) of a raw py-spy profile; totals for switchpoint
    code only (the rest is the runtime and libraries, which the project does not tune)."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for frames, n in folded_stacks(path):
        samples += n
        own[short_frame(frames[-1])] += n
        for frame in {short_frame(fr) for fr in frames}:
            total[frame] += n
    if not samples:
        return f"{path}: no samples (py-spy needs ptrace permission)"
    lines = [f"{path}: {samples} samples", "  own%  frame"]
    lines += [f"  {100 * n / samples:5.1f} {frame}" for frame, n in own.most_common(top)]
    lines += ["  total% frame (switchpoint code)"]
    mine = [(frame, n) for frame, n in total.most_common() if "switchpoint/" in frame]
    lines += [f"  {100 * n / samples:5.1f} {frame}" for frame, n in mine[:top]]
    return "\n".join(lines)
