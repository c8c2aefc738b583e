"""The Redis backend's circuit breaker on its own, over a clock the test moves."""

from __future__ import annotations

from switchpoint.state.breaker import Breaker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_one_failure_opens_it_and_calls_fail_fast_until_the_retry_time() -> None:
    clock = Clock()
    breaker = Breaker(0.5, clock=clock)
    assert breaker.admit() == "go"
    assert breaker.failed(probe=False) is True  # opened: the caller logs once
    assert breaker.failed(probe=False) is False  # other calls that were in flight: already open
    assert not breaker.closed
    clock.now += 0.49
    assert breaker.admit() == "refuse"


def test_half_open_lets_exactly_one_probe_through_and_its_success_closes_it() -> None:
    clock = Clock()
    breaker = Breaker(0.5, clock=clock)
    breaker.failed(probe=False)
    clock.now += 0.5
    assert [breaker.admit() for _ in range(3)] == ["probe", "refuse", "refuse"]
    assert breaker.succeeded() is True  # closed: the caller logs the recovery
    assert breaker.closed and breaker.admit() == "go"
    assert breaker.succeeded() is False


def test_a_failed_probe_doubles_the_wait_up_to_the_cap_and_success_resets_it() -> None:
    clock = Clock()
    breaker = Breaker(0.5, max_interval_s=1.5, clock=clock)
    breaker.failed(probe=False)
    waits = []
    for _ in range(4):
        start = clock.now
        while breaker.admit() != "probe":
            clock.now += 0.25
        waits.append(clock.now - start)
        assert breaker.failed(probe=True) is False
    assert waits == [0.5, 1.0, 1.5, 1.5]
    clock.now += 1.5
    assert breaker.admit() == "probe"
    breaker.succeeded()
    breaker.failed(probe=False)
    clock.now += 0.5
    assert breaker.admit() == "probe"  # back to the first interval


def test_an_abandoned_probe_lets_the_next_call_probe() -> None:
    clock = Clock()
    breaker = Breaker(0.5, clock=clock)
    breaker.failed(probe=False)
    clock.now += 1
    assert breaker.admit() == "probe"
    breaker.abandon()
    assert breaker.admit() == "probe"
