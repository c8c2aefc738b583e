"""Pytest fixtures serving the fake upstreams: ``upstreams`` (on the test's loop) and ``upstreams_thread``.

``upstreams_thread`` shares one background-thread server across the session and clears it before each test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from .server import Upstreams, UpstreamsThread, start_upstreams


@pytest.fixture
async def upstreams() -> AsyncIterator[Upstreams]:
    """Fresh fakes on the running event loop, closed after the test."""
    ups = await start_upstreams()
    try:
        yield ups
    finally:
        await ups.close()


@pytest.fixture(scope="session")
def upstreams_thread_session() -> Iterator[UpstreamsThread]:
    """One thread-served set of fakes for the whole session."""
    with UpstreamsThread() as ups:
        yield ups


@pytest.fixture
def upstreams_thread(upstreams_thread_session: UpstreamsThread) -> UpstreamsThread:
    """The session's thread-served fakes, with recorded requests and flaky counters cleared."""
    upstreams_thread_session.clear()
    return upstreams_thread_session
