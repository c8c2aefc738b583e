"""Redis for tests: the shared server on 127.0.0.1:6379, and servers a test starts, kills and restarts.

Outside CI a missing Redis skips the tests that need it; with `CI=true` it fails them, so CI can never
pass by skipping.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest
from redis.asyncio import Redis

SHARED_URL = "redis://127.0.0.1:6379/0"


def unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: Redis is required)")
    pytest.skip(reason)


def _answers_ping(port: int, *, auth_ok: bool = False) -> bool:
    """PONG; with `auth_ok`, a server that wants a password first counts as up too."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            reply = sock.recv(64)
    except OSError:
        return False
    return reply.startswith(b"+PONG") or (auth_ok and reply.startswith(b"-NOAUTH"))


@pytest.fixture
def redis_url() -> str:
    if not _answers_ping(6379):
        unavailable("no Redis on 127.0.0.1:6379")
    return SHARED_URL


@pytest.fixture(params=["memory", "redis"])
def state_url(request: pytest.FixtureRequest) -> str | None:
    """Each test twice: None (in-process state), then the shared Redis (as `redis_url`: skipped without
    one, failed when CI=true)."""
    return request.getfixturevalue("redis_url") if request.param == "redis" else None


async def delete_prefix(url: str, prefix: str) -> None:
    client = Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=prefix + "*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class OwnRedis:
    """A throwaway redis-server on its own port, without persistence, that a test can kill and restart."""

    def __init__(self, *extra: str) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        command += self.extra
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not _answers_ping(self.port, auth_ok=True):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


@pytest.fixture
def own_redis() -> Iterator[OwnRedis]:
    yield from _own(OwnRedis())


@pytest.fixture
def own_redis_with_password() -> Iterator[OwnRedis]:
    """A server that wants `AUTH s3cret` (default user) or `AUTH app s3cret-app` (an ACL user)."""
    yield from _own(OwnRedis("--requirepass", "s3cret", "--user", "app", "on", ">s3cret-app", "~*", "+@all"))


def _own(server: OwnRedis) -> Iterator[OwnRedis]:
    if shutil.which("redis-server") is None:
        unavailable("redis-server is not on PATH")
    server.start()
    try:
        yield server
    finally:
        server.kill()
