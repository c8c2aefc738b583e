"""Translation overhead: `/compat/chat/completions` to an OpenAI upstream (untranslated) vs an Anthropic one.

Run: `.venv/bin/python bench/bench_translation.py [--quick] [--streams N] [--auth] [--profile out.txt]`.
Needs `wrk`, `nginx` and `taskset` on PATH; every process it starts it stops (also on Ctrl-C and errors).

Method (as `bench.py`): the gateway runs alone on CPU 0 (one worker, logging on, authentication off; `--auth`
adds a governed run with a gateway token). CPU 1 holds the fakes and the load: one nginx answering a fixed
OpenAI `chat.completion` at `/v1/chat/completions` and a fixed Anthropic `message` at `/v1/messages`, a paced
SSE server streaming both dialects, `wrk -t1` and the stream client. Both routes are measured in the same run,
interleaved round by round (the median round is kept), so read the ratios, not the absolute numbers:

- translated req/s ÷ untranslated req/s at concurrency 64 (goal ≥ 0.70);
- time to first chunk (TTFC) p99 of N concurrent streams, translated − untranslated (goal ≤ 1 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from typing import Any

import _harness
from _harness import LOAD_CPU, MESSAGES, free_port, start, stop, wait_ready, wrk

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SWITCHPOINT = os.environ.get("SWITCHPOINT") or os.path.join(REPO, ".venv", "bin", "switchpoint")
PY_SPY = os.environ.get("PY_SPY") or os.path.join(REPO, ".venv", "bin", "py-spy")

ROUTES = {"untranslated": "openai/gpt-4o-mini", "translated": "anthropic/claude-sonnet-4-6"}
BODY = {
    "messages": MESSAGES,
    "temperature": 0.2,
    "max_tokens": 256,
}
OPENAI_REPLY = {
    "id": "chatcmpl-bench",
    "object": "chat.completion",
    "created": 1732000000,
    "model": "gpt-4o-mini",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello! This is a fixed answer from the bench upstream.",
                        "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 25, "completion_tokens": 14, "total_tokens": 39,
              "prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 0}},
    "system_fingerprint": "fp_bench",
}  # fmt: skip
ANTHROPIC_REPLY = {
    "id": "msg_bench",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-6",
    "content": [{"type": "text", "text": "Hello! This is a fixed answer from the bench upstream."}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {"input_tokens": 25, "output_tokens": 14, "cache_creation_input_tokens": 0,
              "cache_read_input_tokens": 0},
}  # fmt: skip


# ---------------------------------------------------------------- processes


def peak_rss_mb(pid: int) -> float:
    try:
        m = re.search(r"VmHWM:\s+(\d+)", open(f"/proc/{pid}/status").read())
        return int(m.group(1)) / 1024 if m else 0.0
    except OSError:
        return 0.0


# ---------------------------------------------------------------- the fake upstreams (CPU 1)


def nginx_upstream(tmp: str, port: int) -> subprocess.Popen[bytes]:
    answers = {"= /v1/chat/completions": OPENAI_REPLY, "= /v1/messages": ANTHROPIC_REPLY}
    return _harness.nginx_upstream(tmp, port, answers, keepalive_requests=1000000)


def _sse(obj: dict[str, Any], event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def openai_events(chunks: int) -> list[bytes]:
    """What OpenAI streams with include_usage: role, content deltas, the finish, a usage-only chunk, [DONE]."""
    head = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1732000000, "model": "gpt-4o-mini"}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        return _sse({**head, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]})

    usage = {"prompt_tokens": 5, "completion_tokens": chunks, "total_tokens": 5 + chunks}
    return [
        chunk({"role": "assistant", "content": ""}) + chunk({"content": "tok0 "}),
        *(chunk({"content": f"tok{i} "}) for i in range(1, chunks)),
        chunk({}, "stop") + _sse({**head, "choices": [], "usage": usage}) + b"data: [DONE]\n\n",
    ]


def anthropic_events(chunks: int) -> list[bytes]:
    """message_start, content_block_start, `chunks` text deltas, content_block_stop, message_delta, message_stop."""
    message = {"id": "msg_bench", "type": "message", "role": "assistant", "model": "claude-sonnet-4-6", "content": [],
               "stop_reason": None, "stop_sequence": None,
               "usage": {"input_tokens": 5, "output_tokens": 1, "cache_creation_input_tokens": 0,
                         "cache_read_input_tokens": 0}}  # fmt: skip

    def delta(i: int) -> bytes:
        body = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": f"tok{i} "}}
        return _sse(body, "content_block_delta")

    return [
        _sse({"type": "message_start", "message": message}, "message_start")
        + _sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
               "content_block_start")
        + delta(0),
        *(delta(i) for i in range(1, chunks)),
        _sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
        + _sse({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": chunks}}, "message_delta")
        + _sse({"type": "message_stop"}, "message_stop"),
    ]  # fmt: skip


SSE_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


async def sse_upstream(port: int, chunks: int, gap_ms: float) -> None:
    """Paced streams in both dialects, chosen by path; the first delta goes out at once, the rest `gap_ms` apart."""
    bodies = {b"/v1/chat/completions": openai_events(chunks), b"/v1/messages": anthropic_events(chunks)}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                m = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
                await reader.readexactly(int(m.group(1)) if m else 0)
                events = bodies.get(head.split(b" ", 2)[1].split(b"?")[0])
                if events is None:
                    writer.write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
                    continue
                writer.write(SSE_HEAD)
                for i, data in enumerate(events):
                    if i:
                        await asyncio.sleep(gap_ms / 1000)
                    writer.write(b"%x\r\n%s\r\n" % (len(data), data))
                    await writer.drain()
                writer.write(b"0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, IndexError):
            writer.close()

    srv = await asyncio.start_server(handle, "127.0.0.1", port, backlog=4096)
    async with srv:
        await srv.serve_forever()


# ---------------------------------------------------------------- the gateway (CPU 0)


def gateway(tmp: str, name: str, up: str, port: int, auth: bool) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    """Start switchpoint pinned to CPU 0 with both providers on `up`; returns the process and request headers."""
    data = os.path.join(tmp, name)
    os.makedirs(data, exist_ok=True)
    conf = os.path.join(data, "switchpoint.json")
    config = {"data_dir": data, "providers": {"openai": {"base_url": up}, "anthropic": {"base_url": up}},
              "gateways": {"default": {"authentication": auth, "collect_logs": True}}}  # fmt: skip
    with open(conf, "w") as f:
        json.dump(config, f)
    headers = {"Authorization": "Bearer sk-bench", "x-api-key": "sk-bench"}
    if auth:
        headers["cf-aig-authorization"] = f"Bearer {_harness.create_token(SWITCHPOINT, conf, 'default', cwd=data)}"
    log = os.path.join(data, "switchpoint.log")
    p = _harness.serve(SWITCHPOINT, conf, port, log=log, cwd=data)
    if not wait_ready(f"http://127.0.0.1:{port}/health"):
        raise RuntimeError(f"switchpoint did not become healthy; see {log}")
    return p, headers


def check(url: str, headers: dict[str, str], model: str) -> None:
    """One request each way before measuring: a 4xx/5xx here would make the figures meaningless."""
    req = urllib.request.Request(url, data=json.dumps(dict(BODY, model=model)).encode(), method="POST",
                                 headers={**headers, "Content-Type": "application/json"})  # fmt: skip
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            answer = json.loads(r.read())
    except urllib.error.HTTPError as e:
        raise RuntimeError(f"{model}: HTTP {e.code}: {e.read()[:300]!r}") from None
    if answer.get("object") != "chat.completion":
        raise RuntimeError(f"{model}: not a chat.completion: {answer}")


# ---------------------------------------------------------------- load (CPU 1)


async def streams(url: str, headers: dict[str, str], body: dict[str, Any], n: int, ramp_s: float) -> dict[str, Any]:
    """n concurrent streams opened over `ramp_s`: TTFC (first `data:` line), completion ([DONE] and all chunks)."""
    import aiohttp  # the load side only

    body = dict(body, stream=True)
    res: list[dict[str, Any]] = []
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as s:

        async def one(i: int) -> None:
            await asyncio.sleep(i * ramp_s / n)
            t0 = time.perf_counter()
            first = None
            texts = 0
            done = error = False
            try:
                async with s.post(url, json=body, headers=headers) as r:
                    async for line in r.content:
                        if not line.startswith(b"data:"):
                            continue
                        first = first or time.perf_counter()
                        texts += b'"content":"tok' in line
                        done = done or line.strip() == b"data: [DONE]"
                        error = error or b'"error"' in line
            except Exception:
                error = True
            ttfc = (first - t0) * 1e3 if first else None
            res.append({"ttfc_ms": ttfc, "texts": texts, "done": done and not error})

        await asyncio.gather(*(one(i) for i in range(n)))
    tt = sorted(r["ttfc_ms"] for r in res if r["ttfc_ms"] is not None)

    def pct(q: float) -> float | None:
        return round(tt[min(len(tt) - 1, int(q * len(tt)))], 2) if tt else None

    texts = max((r["texts"] for r in res), default=0)
    complete = sum(1 for r in res if r["done"] and r["texts"] == texts)
    return {"streams": n, "completed": complete, "chunks": texts, "ttfc_p50_ms": pct(0.5), "ttfc_p99_ms": pct(0.99)}


def profile(pid: int, out: str, seconds: int, run: Any) -> None:
    """py-spy the gateway (raw folded stacks, idle frames dropped) while `run()` loads it."""
    err = _harness.py_spy(pid, out, seconds, run, args=("-r", "250", "--nonblocking"), lead=1, exe=PY_SPY)
    if err is not None:
        print(f"py-spy failed: {err}", file=sys.stderr)


def profile_summary(prefix: str, top: int = 12) -> None:
    """Self time per function in each route's profile, and the share of samples inside the translators."""
    shares: dict[str, dict[str, float]] = {}
    for route in ROUTES:
        path = f"{prefix}.{route}.txt"
        if not os.path.exists(path):
            return
        own: dict[str, int] = {}
        total = formats = 0
        for frames, n in _harness.folded_stacks(path):
            leaf = re.sub(r":\d+\)$", ")", frames[-1])  # per function, not per line
            total += n
            own[leaf] = own.get(leaf, 0) + n
            formats += n if any("switchpoint/formats/" in frame for frame in frames) else 0
        shares[route] = {k: 100 * v / max(total, 1) for k, v in own.items()}
        print(f"\n# py-spy {route}: {total} samples, {100 * formats / max(total, 1):.1f}% inside switchpoint/formats "
              f"({path})")  # fmt: skip
        for leaf, pct in sorted(shares[route].items(), key=lambda kv: -kv[1])[:top]:
            print(f"  {pct:5.1f}%  {leaf}")
    print("\n# self time in switchpoint/formats (translated run)")
    mine = [(k, v) for k, v in shares["translated"].items() if "switchpoint/formats/" in k]
    for leaf, pct in sorted(mine, key=lambda kv: -kv[1])[:top]:
        print(f"  {pct:5.1f}%  {leaf}")


# ---------------------------------------------------------------- main


def measure_http(tmp: str, up: str, a: argparse.Namespace, auth: bool) -> dict[str, Any]:
    """Rounds of (c64 both routes, c1 both routes), interleaved; the median of each figure is kept."""
    port = free_port()
    proc, headers = gateway(tmp, "auth" if auth else "open", up, port, auth)
    url = _harness.compat_url(port)
    dur, warm = (3, 1) if a.quick else (10, 2)
    rounds: dict[str, list[dict[str, Any]]] = {route: [] for route in ROUTES}
    try:
        for model in ROUTES.values():
            check(url, headers, model)
            wrk(url, headers, dict(BODY, model=model), 64, warm, tmp)
        for i in range(a.rounds):  # ABBA order, so a drift in the machine's load hits both routes alike
            order = list(ROUTES.items())[:: -1 if i % 2 else 1]
            got = {route: {"c64": wrk(url, headers, dict(BODY, model=m), 64, dur, tmp)} for route, m in order}
            for route, model in order:
                got[route]["c1"] = wrk(url, headers, dict(BODY, model=model), 1, max(3, dur // 2), tmp)
                rounds[route].append(got[route])
        if a.profile and not auth:
            for route, model in ROUTES.items():
                body = dict(BODY, model=model)
                profile(proc.pid, f"{a.profile}.{route}.txt", 8, lambda b=body: wrk(url, headers, b, 64, 9, tmp))
        rss = peak_rss_mb(proc.pid)
    finally:
        stop(proc)
    out: dict[str, Any] = {}
    for route, runs in rounds.items():
        fig: dict[str, Any] = {"rss_mb": rss}
        for level in ("c64", "c1"):
            fig[level] = {k: statistics.median(r[level][k] or 0 for r in runs) for k in ("rps", "p50_us", "p99_us")}
            fig[level]["non2xx"] = sum(r[level]["non2xx"] for r in runs)
            fig[level]["socket_errors"] = "; ".join(sorted({r[level]["socket_errors"] for r in runs} - {""}))
        out[route] = fig
    pairs = zip(rounds["translated"], rounds["untranslated"], strict=True)
    out["ratios"] = [t["c64"]["rps"] / max(u["c64"]["rps"], 1e-9) for t, u in pairs]
    return out


def measure_streams(tmp: str, a: argparse.Namespace) -> dict[str, Any]:
    sport = free_port()
    cmd = [sys.executable, os.path.abspath(__file__), "--serve-sse", str(sport), "--chunks", str(a.chunks),
           "--gap-ms", str(a.gap_ms)]  # fmt: skip
    start(cmd, cpu=LOAD_CPU, log=os.path.join(tmp, "sse.log"))
    if not wait_ready(f"http://127.0.0.1:{sport}/health", 10):
        raise RuntimeError("the SSE upstream did not start")
    port = free_port()
    proc, headers = gateway(tmp, "streams", f"http://127.0.0.1:{sport}/v1", port, False)
    url = _harness.compat_url(port)
    runs: dict[str, list[dict[str, Any]]] = {route: [] for route in ROUTES}
    affinity = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {1})  # the stream client shares CPU 1 with the fakes, as wrk does
    try:
        # Warm-up at full size, discarded: it grows the gateway's upstream pool (shared by both routes, as they
        # have the same host), so neither measured route pays for opening it. Then rounds in alternating order.
        for model in ROUTES.values():
            asyncio.run(streams(url, headers, dict(BODY, model=model), 8, 0.1))
        asyncio.run(streams(url, headers, dict(BODY, model=ROUTES["untranslated"]), a.streams, a.ramp))
        for i in range(a.rounds):
            order = list(ROUTES.items())[:: -1 if i % 2 else 1]
            for route, model in order:
                runs[route].append(asyncio.run(streams(url, headers, dict(BODY, model=model), a.streams, a.ramp)))
        rss = peak_rss_mb(proc.pid)
    finally:
        os.sched_setaffinity(0, affinity)
        stop(proc)
    out: dict[str, Any] = {"rss_mb": rss, "rounds": runs}
    for route, got in runs.items():
        median = {k: statistics.median(r[k] if r[k] is not None else float("inf") for r in got)
                  for k in ("ttfc_p50_ms", "ttfc_p99_ms")}  # fmt: skip
        out[route] = {"streams": a.streams, "completed": min(r["completed"] for r in got),
                      "chunks": min(r["chunks"] for r in got), **median}  # fmt: skip
    return out


def report(results: dict[str, Any]) -> None:
    print(f"# {results['method']}")
    cols = f"{'req/s c64':>10} {'p99 c64':>9} {'p50 c1':>8} {'p99 c1':>8} {'rss MB':>7} {'non2xx':>7}"
    print(f"{'run':6} {'route':13} {cols}")
    for run in ("open", "auth"):
        for route in ROUTES if run in results else ():
            f = results[run][route]
            r, c = f["c64"], f["c1"]
            print(f"{run:6} {route:13} {r['rps']:10.0f} {r['p99_us']:8.0f}u {c['p50_us']:7.0f}u {c['p99_us']:7.0f}u "
                  f"{f['rss_mb']:7.0f} {r['non2xx'] + c['non2xx']:7d}")  # fmt: skip
            errs = "; ".join(e for e in (r["socket_errors"], c["socket_errors"]) if e)
            if errs:
                print(f"{'':21} {errs}")
    s = results.get("streams")
    if s:
        print(f"{'streams, median round':21}{'complete':>9} {'chunks':>7} {'TTFC p50':>11} {'TTFC p99':>10}")
        for route in ROUTES:
            f = s[route]
            each = ", ".join(str(r["ttfc_p99_ms"]) for r in s["rounds"][route])
            print(f"{route:20} {f['completed']:>4}/{f['streams']:<4} {f['chunks']:7d} {f['ttfc_p50_ms']:8.2f} ms "
                  f"{f['ttfc_p99_ms']:7.2f} ms   (p99 per round: {each})")  # fmt: skip
    print()
    for run in ("open", "auth"):
        if run in results:
            fig = results[run]
            ratio = statistics.median(fig["ratios"])
            added = (fig["translated"]["c1"]["p50_us"] - fig["untranslated"]["c1"]["p50_us"]) / 1000
            verdict = "ok" if ratio >= 0.70 else "MISSED"
            each = ", ".join(f"{r:.2f}" for r in fig["ratios"])
            print(f"[{run}] translated/untranslated req/s c64 = {ratio:.2f} (goal >= 0.70: {verdict}; per round: "
                  f"{each}); added p50 c1 = {added:+.3f} ms")  # fmt: skip
    if s and s["translated"]["ttfc_p99_ms"] is not None and s["untranslated"]["ttfc_p99_ms"] is not None:
        added = s["translated"]["ttfc_p99_ms"] - s["untranslated"]["ttfc_p99_ms"]
        verdict = "ok" if added <= 1.0 else "MISSED"
        print(f"added TTFC p99 (translated - untranslated, {s['translated']['streams']} streams) = {added:+.2f} ms "
              f"(goal <= 1 ms: {verdict})")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="3 s runs instead of 10 s (noisier)")
    ap.add_argument("--rounds", type=int, help="interleaved rounds per route; the median is kept (default 1 quick, 3)")
    ap.add_argument("--streams", type=int, default=500, help="concurrent streams per route and round (0: no streams)")
    ap.add_argument("--chunks", type=int, default=20, help="text deltas per stream")
    ap.add_argument("--gap-ms", type=float, default=200, help="pause between deltas")
    ap.add_argument("--ramp", type=float, default=2.0, help="seconds over which the streams are opened")
    ap.add_argument("--auth", action="store_true", help="also a governed run: gateway authentication on, with a token")
    ap.add_argument(
        "--profile",
        metavar="PREFIX",
        help="py-spy the gateway under c64 load, each route: PREFIX.{translated,untranslated}.txt",
    )
    ap.add_argument("--json", help="write all figures here")
    a = ap.parse_args()
    a.rounds = a.rounds or (1 if a.quick else 3)
    _harness.require_tools("wrk", "nginx", "taskset", hint=" on PATH")
    if not os.path.exists(SWITCHPOINT):
        sys.exit(f"no switchpoint at {SWITCHPOINT} (set SWITCHPOINT=...)")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind through the finally below
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C even when started in the background
    tmp = tempfile.mkdtemp(prefix="bench-translation-")
    results: dict[str, Any] = {"method": "gateway pinned to CPU 0 (1 worker, logging on); nginx, SSE fake, wrk -t1 "
                                         "and stream client on CPU 1; median of interleaved rounds"}  # fmt: skip
    try:
        up_port = free_port()
        nginx_upstream(tmp, up_port)
        if not wait_ready(f"http://127.0.0.1:{up_port}/", 10):
            raise RuntimeError(f"nginx did not start; see {tmp}/up.err")
        up = f"http://127.0.0.1:{up_port}/v1"
        results["open"] = measure_http(tmp, up, a, auth=False)
        if a.auth:
            results["auth"] = measure_http(tmp, up, a, auth=True)
        if a.streams > 0:
            results["streams"] = measure_streams(tmp, a)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    finally:
        _harness.stop_all()
        if not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(tmp, ignore_errors=True)
    report(results)
    if a.profile:
        profile_summary(a.profile)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--serve-sse":
        sp = argparse.ArgumentParser()
        sp.add_argument("--serve-sse", type=int, required=True)
        sp.add_argument("--chunks", type=int, default=20)
        sp.add_argument("--gap-ms", type=float, default=200)
        o = sp.parse_args()
        asyncio.run(sse_upstream(o.serve_sse, o.chunks, o.gap_ms))
    else:
        main()
