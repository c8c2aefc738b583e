"""Shared fixtures: the fake upstreams and a whole running gateway stack."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.stack import GatewayStack
from tests.upstreams.fixtures import upstreams, upstreams_thread, upstreams_thread_session

__all__ = ["upstreams", "upstreams_thread", "upstreams_thread_session"]


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayStack]:
    """One gateway over the fakes for the whole session; tests use distinct models and read their own logs."""
    data_dir: Path = tmp_path_factory.mktemp("gateway")
    gateway = GatewayStack(data_dir).start()
    try:
        yield gateway
    finally:
        gateway.stop()
