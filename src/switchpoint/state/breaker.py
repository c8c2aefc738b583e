"""A circuit breaker for the Redis backend, so that a server that is down or hung costs one waiting call per
retry, not every call sent meanwhile.

Closed: every call goes through. Open (after a failure): calls fail fast until the retry time. Half-open
(after it): exactly one call, the probe, goes through while the others still fail fast; its success closes
the breaker, its failure opens it again for twice as long (up to `max_interval_s`). A hung server (one that
accepts connections and never answers) is detected by the reply timeout, so only the probe waits it out.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

Admission = Literal["go", "probe", "refuse"]


class Breaker:
    """State only; the caller logs the transitions `failed` and `succeeded` report."""

    __slots__ = ("_clock", "_interval_s", "_max_interval_s", "_min_interval_s", "_probing", "_retry_at")

    def __init__(
        self, interval_s: float, max_interval_s: float = 2.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._min_interval_s = interval_s
        self._max_interval_s = max(interval_s, max_interval_s)
        self._interval_s = interval_s
        self._clock = clock
        self._retry_at: float | None = None  # None: closed
        self._probing = False

    @property
    def closed(self) -> bool:
        return self._retry_at is None

    def admit(self) -> Admission:
        """May a call go out? "go" (closed); "probe": yes, as the one probe (report its outcome with
        `probe=True`, or `abandon` it); "refuse": fail fast."""
        retry_at = self._retry_at
        if retry_at is None:
            return "go"
        if self._probing or self._clock() < retry_at:
            return "refuse"
        self._probing = True
        return "probe"

    def failed(self, probe: bool) -> bool:
        """Record a failed call; True when this opened a closed breaker (the moment to log)."""
        if probe:
            self._probing = False
            self._interval_s = min(self._interval_s * 2, self._max_interval_s)
            self._retry_at = self._clock() + self._interval_s
            return False
        if self._retry_at is None:
            self._retry_at = self._clock() + self._interval_s
            return True
        return False  # already open: a call sent before it opened, or one failing fast

    def succeeded(self) -> bool:
        """Record an answered call; True when this closed an open breaker (the moment to log)."""
        self._probing = False
        self._interval_s = self._min_interval_s
        if self._retry_at is None:
            return False
        self._retry_at = None
        return True

    def abandon(self) -> None:
        """The probe ended without an answer either way (its caller was cancelled): the next call probes."""
        self._probing = False
