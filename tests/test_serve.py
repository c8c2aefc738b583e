"""`switchpoint serve` as users run it: a real process (and several workers), the real CLI next to it."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.upstreams.server import UpstreamsThread

SWITCHPOINT = [sys.executable, "-m", "switchpoint"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def post(url: str, headers: dict[str, str]) -> int:
    body = json.dumps({"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}).encode()
    request = urllib.request.Request(url, data=body, headers={"content-type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        return err.code


def wait_healthy(port: int, proc: subprocess.Popen[bytes], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"serve exited early with {proc.returncode}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("gateway did not become healthy")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """`serve --workers 2` with authentication on, over the fake upstreams."""
    with UpstreamsThread() as ups:
        config = tmp_path / "switchpoint.yaml"
        config.write_text(
            f"data_dir: {tmp_path / 'data'}\n"
            f"providers:\n  openai: {{base_url: '{ups.openai_base}'}}\n"
            "gateways:\n  default: {authentication: true}\n"
        )
        port = free_port()
        proc = subprocess.Popen(
            [*SWITCHPOINT, "serve", "--config", str(config), "--port", str(port), "--workers", "2"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            wait_healthy(port, proc)
            yield config, port
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=20)
            assert proc.returncode == 0, err.decode()


def cli(config: Path, *args: str) -> str:
    done = subprocess.run([*SWITCHPOINT, *args, "--config", str(config)], capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode()


def statuses(port: int, token: str | None, n: int = 16) -> set[int]:
    url = f"http://127.0.0.1:{port}/v1/acct/default/compat/chat/completions"
    headers = {"authorization": "Bearer sk-test"}
    if token:
        headers["cf-aig-authorization"] = f"Bearer {token}"
    return {post(url, headers) for _ in range(n)}


def settle(port: int, token: str | None, want: set[int]) -> float:
    """Seconds until every worker answers `want` (each round spreads calls over both workers)."""
    start = time.monotonic()
    while statuses(port, token) != want:
        assert time.monotonic() - start < 3, "workers did not all pick up the change"
        time.sleep(0.05)
    return time.monotonic() - start


def test_workers_share_the_port_and_follow_token_changes(served: tuple[Path, int]) -> None:
    config, port = served
    assert statuses(port, None) == {401}
    token = cli(config, "tokens", "create", "--gateway", "default").splitlines()[-1]
    assert token.startswith("swp_")
    assert settle(port, token, {200}) < 1.5
    token_id = token.split("_")[1]
    cli(config, "tokens", "revoke", token_id)
    assert settle(port, token, {401}) < 1.5


def listening_pids(port: int) -> set[str]:
    out = subprocess.run(["ss", "-ltnp", f"sport = :{port}"], capture_output=True, text=True).stdout
    return set(re.findall(r"pid=(\d+)", out))


def test_two_worker_processes_serve(served: tuple[Path, int]) -> None:
    _, port = served
    deadline = time.monotonic() + 15  # the first worker may answer /health before the second listens
    while len(listening_pids(port)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(listening_pids(port)) == 2


def test_serve_refuses_a_bad_config_with_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("gateways:\n  default:\n    retries: {max_attempts: 9}\n")
    done = subprocess.run([*SWITCHPOINT, "serve", "--config", str(config)], capture_output=True, timeout=30)
    assert done.returncode == 2
    err = done.stderr.decode()
    assert f"{config}:3: gateways.default.retries.max_attempts" in err
    assert "Traceback" not in err


def test_serve_starts_with_no_config(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "SWITCHPOINT_DATA_DIR": str(tmp_path / "data")}
    proc = subprocess.Popen([*SWITCHPOINT, "serve", "--port", str(port)], env=env, stderr=subprocess.PIPE)
    try:
        wait_healthy(port, proc)
        assert (tmp_path / "data" / "switchpoint.db").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
    assert proc.returncode == 0
