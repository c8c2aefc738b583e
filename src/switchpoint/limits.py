"""Rate limits and spend limits as policy: which buckets a call counts against, checked in one atomic
state call, and what happens when the state cannot be reached (`state.fail_open`, per feature).

Rate limits count requests per gateway, or per gateway token or metadata value (`rate_limit.key`); a call
without that token or value shares one bucket (`-`), so leaving it out never escapes the limit. Spend
limits reserve the expected cost before the call in every rule that applies and settle with the real
cost after it, without waiting (`refund_soon`: at once in memory, batched in Redis). The same counters
serve dynamic routes' rate and budget nodes through `RouteLimiter`. Charges and buckets are built once per
rule object and kept in bounded dicts: the check itself is then one state call.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any, NamedTuple

import orjson
from multidict import istr

from switchpoint.config import FailOpenConfig, GatewayConfig, RateLimitConfig, SpendRule, Technique, metadata_text
from switchpoint.errors import BudgetExceeded, RateLimited
from switchpoint.state.base import (
    EPSILON,
    TECHNIQUES,
    Charge,
    CounterBackend,
    Decision,
    DecisionTuple,
    ImmediateCounters,
    Meter,
    Refused,
    StateUnavailable,
    with_amount,
)

log = logging.getLogger("switchpoint.limits")
_NONE = "-"  # the shared bucket of calls that lack the partitioning token or metadata value
_MAX_PART = 64  # longer partition values are hashed, so a client cannot make huge keys
_MAX_CACHED_CHARGES = 10_000  # charges kept built, per process (one per gateway/token/value or target/value)


# As `istr`: a CIMultiDict skips case-folding the name on each set.
_LIMIT, _REMAINING, _RESET = map(istr, ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"))


# An admitted call's place in its rate limit: the counters' answer as it came, a `Decision`'s fields
# (allowed, limit, remaining, reset_s, at), as a plain tuple on the in-process path. Most calls only ever
# turn it into the `RateLimit-*` headers (`write_rate_headers`); `rate_numbers` reads it.
RateDecision = DecisionTuple


class RateNumbers(NamedTuple):
    """A rate decision as the headers give it: whole numbers, a reset of at least 1 s."""

    limit: int
    remaining: int
    reset_s: int


def rate_numbers(rate: RateDecision) -> RateNumbers:
    reset = math.ceil(rate[3])
    return RateNumbers(int(rate[1]), int(rate[2] + EPSILON), reset if reset > 1 else 1)


def write_rate_headers(rate: RateDecision, out: MutableMapping[str, str]) -> None:
    """Set the three `RateLimit-*` headers in `out` (item by item: the cheapest way into a CIMultiDict), as
    `rate_numbers` gives them, computed in line: this runs on every admitted call. A limit and a reset take
    few values, so their text is looked up (`_whole_text`); only the remaining count is formatted each time."""
    reset = math.ceil(rate[3])
    out[_LIMIT] = _WHOLE_TEXT.get(rate[1]) or _whole_text(rate[1])
    out[_REMAINING] = "%d" % (rate[2] + EPSILON)  # noqa: UP031 - as str(int()) cuts it, at 2/3 of its cost
    out[_RESET] = _WHOLE_TEXT.get(reset) or _whole_text(reset if reset > 1 else 1)  # 0 s: not cached, rare


_WHOLE_TEXT: dict[float, str] = {}  # limits and resets in seconds, as text (bounded: a few limits, 1 s to a window)


def _whole_text(value: float) -> str:
    if len(_WHOLE_TEXT) >= _MAX_CACHED_CHARGES:
        _WHOLE_TEXT.clear()
    text = _WHOLE_TEXT[value] = str(int(value))
    return text


def rate_headers(rate: RateDecision) -> dict[str, str]:
    found: dict[str, str] = {}
    write_rate_headers(rate, found)
    return found


class RateLimitExceeded(RateLimited):
    """429/2003 carrying the refused call's `RateLimit-*` values; `retry_after` is when one more call fits."""

    def __init__(self, decision: RateDecision) -> None:
        super().__init__(retry_after=rate_numbers(decision).reset_s)
        self.decision = decision

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after), **rate_headers(self.decision)}


class _Shape:
    """The spend rules that apply to one call shape (gateway, target, and the metadata values the rules
    read) and their counters: as charges of amount 0 that each call copies with its own amount, and with
    in-process counters as meters it takes from directly. Built once per shape and kept (see `_spend_shape`);
    every reservation points at its shape, which has all that `settle` needs besides the amounts."""

    __slots__ = ("counters", "gateway_id", "metadata", "meters", "model", "provider", "rules", "spend_limits")

    def __init__(
        self,
        gateway_id: str,
        spend_limits: list[SpendRule],
        provider: str,
        model: str | None,
        metadata: Mapping[str, Any] | None,
        rules: tuple[SpendRule, ...],
        counters: tuple[Charge, ...],
        meters: tuple[Meter, ...],
    ) -> None:
        self.gateway_id, self.spend_limits, self.provider, self.model = gateway_id, spend_limits, provider, model
        self.metadata = metadata  # the values the rules read are the same for every call of this shape
        self.rules, self.counters, self.meters = rules, counters, meters

    def unheld(self) -> _Shape:
        """This shape with nothing held: a reservation the state could not make (the budget failed open)."""
        return _Shape(self.gateway_id, self.spend_limits, self.provider, self.model, self.metadata, (), (), ())

    def charges(self, amount: float) -> tuple[Charge, ...]:
        """The counters as charges of `amount`."""
        if len(self.counters) == 1:
            return (with_amount(self.counters[0], amount),)
        return tuple([with_amount(c, amount) for c in self.counters])


# The expected cost held in each spend rule of a call's shape: (shape, estimate, the clock it was held at),
# all that `settle` needs to correct it. A plain tuple: one is built on every budgeted call.
Reservation = tuple[_Shape, float, float]


def _part(value: object) -> str:
    text = metadata_text(value)
    if len(text) <= _MAX_PART:
        return text
    return "#" + hashlib.sha256(text.encode()).hexdigest()[:32]


def _bucket(prefix: str, parts: Sequence[str]) -> str:
    return prefix if not parts else prefix + ":" + orjson.dumps(parts).decode()


def _rule_bucket(
    gateway_id: str, rule: SpendRule, provider: str, model: str | None, metadata: Mapping[str, Any]
) -> str | None:
    """The rule's bucket for this call, or None when a filter leaves the call out."""
    parts: list[str] = []
    full_model = None if model is None else f"{provider}/{model}"
    for dimension, values in ((rule.model, (model, full_model)), (rule.provider, (provider,))):
        if dimension is None:
            continue
        if dimension.mode == "filter" and not any(v in dimension.values for v in values if v is not None):
            return None
        if dimension.mode == "partition":
            parts.append(_part(values[0] if values[0] is not None else _NONE))
    for key in sorted(rule.metadata):
        dimension, value = rule.metadata[key], metadata.get(key)
        if dimension.mode == "filter" and (value is None or metadata_text(value) not in dimension.values):
            return None
        if dimension.mode == "partition":
            parts.append(_part(_NONE if value is None else value))
    return _bucket(f"sl:{gateway_id}:{rule.id}", parts)


class _SpendRules:
    """A gateway's spend rules, the metadata keys they read, and what applies per call shape."""

    __slots__ = ("metadata_keys", "rules", "shapes")

    def __init__(self, rules: list[SpendRule]) -> None:
        self.rules = rules
        self.metadata_keys = tuple(sorted({key for rule in rules for key in rule.metadata}))
        self.shapes: dict[tuple[str, str | None, tuple[str | None, ...]], _Shape] = {}


def _text(value: object) -> str | None:
    return None if value is None else metadata_text(value)


def _rule_text(rule: SpendRule) -> str:
    return f"rule '{rule.id}' (cost limit {rule.limit:g} per {rule.window}s, {rule.technique})"


class Limits:
    """Built once per process from the state's counters and `config.state.fail_open`.

    With counters that answer without waiting (in-process: `immediate`), callers on the hot path use
    `check_rate_now` and `reserve_now`, the same checks without a coroutine each."""

    def __init__(self, counters: CounterBackend, fail_open: FailOpenConfig | None = None) -> None:
        self._counters = counters
        self._now = counters if isinstance(counters, ImmediateCounters) else None
        self.immediate = self._now is not None
        self._fail_open = fail_open or FailOpenConfig()
        self._rate_charges: dict[tuple[str, str | None], tuple[RateLimitConfig, Charge]] = {}
        self._rate_meters: dict[tuple[str, str | None], tuple[RateLimitConfig, Meter]] = {}
        self._spend: dict[str, _SpendRules] = {}
        # Shapes of gateways whose spend rules read no metadata, by (gateway, provider, model).
        self._plain_shapes: dict[tuple[str, str, str | None], _Shape] = {}
        self._failing: set[str] = set()
        self.failures = {"rate_limit": 0, "budget": 0}  # calls that met unreachable state, per feature

    async def check_rate(
        self,
        gateway_id: str,
        gateway: GatewayConfig,
        token_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> RateDecision | None:
        """Count this call; None when the gateway has no rate limit (or the state failed open). Raises
        `RateLimitExceeded` (429/2003) over the limit, `RateLimited` when the state failed closed."""
        rule = gateway.rate_limit
        if rule is None:
            return None
        if self._now is not None:
            return self.check_rate_now(gateway_id, rule, token_id, metadata)
        charge = self._rate_charge(gateway_id, rule, _rate_part(rule, token_id, metadata))
        try:
            decision = (await self._counters.consume((charge,)))[0]
        except StateUnavailable as exc:
            if not self._unavailable("rate_limit", exc):
                raise RateLimited("Rate limit state is unavailable", retry_after=1) from None
            return None
        if self._failing:
            self._available("rate_limit")
        return _admitted(decision)

    def check_rate_now(
        self,
        gateway_id: str,
        rule: RateLimitConfig,
        token_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> RateDecision:
        """`check_rate` of the gateway's `rate_limit` with `immediate` counters (which are never unreachable),
        without waiting: the bucket's meter, kept while the rule stays the same object, takes one."""
        part = None if rule.key is None else _rate_part(rule, token_id, metadata)
        held = self._rate_meters.get((gateway_id, part))
        if held is None or held[0] is not rule:
            held = self._rate_meter(gateway_id, rule, part)
        decision = held[1].take(1)
        if not decision[0]:
            raise RateLimitExceeded(decision)
        return decision

    def _rate_meter(self, gateway_id: str, rule: RateLimitConfig, part: str | None) -> tuple[RateLimitConfig, Meter]:
        counters = self._now
        if counters is None:
            raise TypeError("check_rate_now needs immediate counters; await check_rate")
        if len(self._rate_meters) >= _MAX_CACHED_CHARGES:
            self._rate_meters.clear()
        held = self._rate_meters[(gateway_id, part)] = (rule, counters.meter(self._rate_charge(gateway_id, rule, part)))
        return held

    def _rate_charge(self, gateway_id: str, rule: RateLimitConfig, part: str | None) -> Charge:
        """The charge for this call's bucket, reused while the rule stays the same object (bounded)."""
        cached = self._rate_charges.get((gateway_id, part))
        if cached is not None and cached[0] is rule:
            return cached[1]
        if len(self._rate_charges) >= _MAX_CACHED_CHARGES:
            self._rate_charges.clear()
        bucket = f"rl:{gateway_id}"
        if rule.key is not None:
            bucket = f"{bucket}:{rule.key}:{_NONE if part is None else _part(part)}"
        charge = Charge(bucket, 1, rule.limit, rule.window, rule.technique)
        self._rate_charges[(gateway_id, part)] = (rule, charge)
        return charge

    async def reserve(
        self,
        gateway_id: str,
        gateway: GatewayConfig,
        provider: str,
        model: str | None,
        metadata: Mapping[str, Any] | None,
        estimate: float,
    ) -> Reservation | None:
        """Hold `estimate` USD in every enabled spend rule that applies; None when the gateway has none.
        Raises `BudgetExceeded` (429/2041) naming the first rule it does not fit, or when the state is
        unreachable and budgets fail closed. An unpriced call (estimate 0) passes while a rule has money left."""
        if not gateway.spend_limits:
            return None
        if self._now is not None:
            return self.reserve_now(gateway_id, gateway.spend_limits, provider, model, metadata, estimate)
        if estimate < 0:
            estimate = 0.0
        shape = self._spend_shape(gateway_id, gateway.spend_limits, provider, model, metadata)
        if not shape.counters:
            return (shape, estimate, 0.0)
        try:
            decisions = await self._counters.consume(shape.charges(estimate))
        except StateUnavailable as exc:
            if not self._unavailable("budget", exc):
                raise BudgetExceeded("Spend limit state is unavailable", retry_after=1) from None
            return (shape.unheld(), estimate, 0.0)
        if self._failing:
            self._available("budget")
        _check_spend(decisions, shape.rules, provider, model)
        return (shape, estimate, decisions[0].at)

    def reserve_now(
        self,
        gateway_id: str,
        spend_limits: list[SpendRule],
        provider: str,
        model: str | None,
        metadata: Mapping[str, Any] | None,
        estimate: float,
    ) -> Reservation:
        """`reserve` in the gateway's (non-empty) `spend_limits` with `immediate` counters (which are never
        unreachable), without waiting: with one rule, its meter holds the estimate."""
        if estimate < 0:
            estimate = 0.0
        shape = self._plain_shapes.get((gateway_id, provider, model))
        if shape is None or shape.spend_limits is not spend_limits:
            shape = self._spend_shape(gateway_id, spend_limits, provider, model, metadata)
        meters = shape.meters
        if len(meters) == 1:  # the usual gateway: one rule
            try:
                return (shape, estimate, meters[0].hold(estimate))
            except Refused as refused:
                _check_spend((refused.decision,), shape.rules, provider, model)
        counters = self._now
        if counters is None:
            raise TypeError("reserve_now needs immediate counters; await reserve")
        if not meters:
            return (shape, estimate, 0.0)
        decisions = counters.consume_now(shape.charges(estimate))
        _check_spend(decisions, shape.rules, provider, model)
        return (shape, estimate, decisions[0][4])

    def spend_applies(
        self,
        gateway_id: str,
        spend_limits: list[SpendRule],
        provider: str,
        model: str | None,
        metadata: Mapping[str, Any] | None,
    ) -> bool:
        """Whether any enabled rule of the gateway's `spend_limits` holds this call (its shape is kept: the
        reservation finds it again)."""
        return bool(spend_limits) and bool(self._spend_shape(gateway_id, spend_limits, provider, model, metadata).rules)

    def _spend_shape(
        self,
        gateway_id: str,
        rules: list[SpendRule],
        provider: str,
        model: str | None,
        metadata: Mapping[str, Any] | None,
    ) -> _Shape:
        """The rules that apply to this call and their counters, kept per gateway while its rules stay the
        same object (bounded, like the rate-limit charges), by target and the metadata values the rules read."""
        known = self._spend.get(gateway_id)
        if known is None or known.rules is not rules:
            if len(self._spend) >= _MAX_CACHED_CHARGES:
                self._spend.clear()
            known = self._spend[gateway_id] = _SpendRules(rules)
        keys = known.metadata_keys
        values = tuple([_text(metadata.get(k)) if metadata else None for k in keys]) if keys else ()
        found = known.shapes.get((provider, model, values))
        if found is not None:
            return found
        applying: list[SpendRule] = []
        counters: list[Charge] = []
        for rule in rules:
            if rule.enabled:
                bucket = _rule_bucket(gateway_id, rule, provider, model, metadata or {})
                if bucket is not None:
                    applying.append(rule)
                    counters.append(Charge(bucket, 0.0, rule.limit, rule.window, rule.technique))
        meters = tuple([self._now.meter(c) for c in counters]) if self._now is not None else ()
        if len(known.shapes) >= _MAX_CACHED_CHARGES:
            known.shapes.clear()
        read = {k: metadata[k] for k in keys if k in metadata} if metadata and keys else None
        built = _Shape(gateway_id, rules, provider, model, read, tuple(applying), tuple(counters), meters)
        known.shapes[(provider, model, values)] = built
        if not keys:  # the shape depends on the target alone: `reserve_now` finds it in one lookup
            if len(self._plain_shapes) >= _MAX_CACHED_CHARGES:
                self._plain_shapes.clear()
            self._plain_shapes[(gateway_id, provider, model)] = built
        return built

    def settle(
        self,
        reservation: Reservation | None,
        actual_cost: float | None,
        provider: str | None = None,
        model: str | None = None,
    ) -> None:
        """Correct the reservation with the real cost: refund the difference, or charge the excess (it is
        spent already, so no check). `actual_cost` None keeps the estimate (`governance.settle_budget` never
        passes it: a call without usage is settled with an estimate of what was relayed, or 0 when the provider
        did not bill it). When the answer came from another provider or model than reserved (a fallback), the
        whole estimate goes back and the cost is charged to the rules of the one that answered. Does not wait
        (`refund_soon`), never raises: the call is over."""
        if reservation is None or actual_cost is None:
            return
        shape, estimate, at = reservation
        if provider is None and model is None:
            provider, model = shape.provider, shape.model
        if actual_cost < 0:
            actual_cost = 0.0
        held = shape.counters
        if held and provider == shape.provider and model == shape.model:
            delta = estimate - actual_cost  # the same rules and buckets as reserved
            if -EPSILON <= delta <= EPSILON:
                return
            meters = shape.meters
            if len(meters) == 1:  # the usual gateway, in-process: one rule
                meters[0].give_back(delta, at)
                return
            if len(held) == 1:
                try:
                    self._counters.refund_one(held[0], delta, at)
                except StateUnavailable as exc:
                    self._unavailable("budget", exc)
                return
            adjust: Sequence[Charge] = [with_amount(c, delta) for c in held]
        else:
            answered = self._spend_shape(
                shape.gateway_id, shape.spend_limits, provider or shape.provider, model, shape.metadata
            )
            now = [with_amount(c, -actual_cost) for c in answered.counters]
            if [c.key for c in now] == [c.key for c in held]:
                adjust = [with_amount(c, estimate - actual_cost) for c in held]
            else:
                adjust = [with_amount(c, estimate) for c in held] + now
            adjust = [c for c in adjust if abs(c.amount) > EPSILON]
        if adjust:
            self._refund_soon(adjust, at)

    async def route_check(
        self, bucket: str, amount: float, limit: float, window_s: int, technique: str, take: bool = True
    ) -> bool:
        """A dynamic route's rate or budget node: does `amount` fit (and take it when `take`)? When the state
        is unreachable the answer follows `fail_open.rate_limit`: yes, or no (the node's fallback)."""
        charges = (Charge(f"rt:{bucket}", amount, limit, window_s, _technique(technique)),)
        try:
            decisions = await (self._counters.consume(charges) if take else self._counters.peek(charges))
        except StateUnavailable as exc:
            return self._unavailable("rate_limit", exc)
        if self._failing:
            self._available("rate_limit")
        return decisions[0].allowed

    async def route_add(self, bucket: str, amount: float, window_s: int, technique: str) -> None:
        """Record a route budget's real cost once known, without a check; never raises (the call is over)."""
        self.route_add_soon(bucket, amount, window_s, technique)

    def route_add_soon(self, bucket: str, amount: float, window_s: int, technique: str) -> None:
        """`route_add` without waiting: the charge goes out with the next refunds (at once in memory)."""
        if amount > 0:
            self._refund_soon((Charge(f"rt:{bucket}", -amount, 0, window_s, _technique(technique)),), 0)

    def _refund_soon(self, charges: Sequence[Charge], at: float) -> None:
        try:
            self._counters.refund_soon(charges, at)
        except StateUnavailable as exc:  # a backend that cannot even hold them (Redis holds, and logs)
            self._unavailable("budget", exc)

    def _unavailable(self, feature: str, exc: StateUnavailable) -> bool:
        """Count the failure, log the first of a run, and say whether the feature fails open."""
        self.failures[feature] += 1
        fail_open: bool = getattr(self._fail_open, feature)
        if feature not in self._failing:
            self._failing.add(feature)
            action = "letting calls through" if fail_open else "refusing calls"
            log.warning("%s state unavailable, %s: %s", feature, action, exc)
        return fail_open

    def _available(self, feature: str) -> None:
        if feature in self._failing:
            self._failing.discard(feature)
            log.warning("%s state available again", feature)


class RouteLimiter:
    """Dynamic routes' `Limiter` and `LimitPeek` (routing/evaluate.py) over the gateway's shared counters:
    `consume` before a node admits a call, `peek` for explain views, `add` to settle a budget node with the
    call's real cost (`RouteOutcome.charges`)."""

    def __init__(self, limits: Limits) -> None:
        self._limits = limits

    async def consume(self, bucket: str, amount: float, limit: float, window_s: int, technique: str) -> bool:
        return await self._limits.route_check(bucket, amount, limit, window_s, technique)

    async def peek(self, bucket: str, amount: float, limit: float, window_s: int, technique: str) -> bool:
        return await self._limits.route_check(bucket, amount, limit, window_s, technique, take=False)

    async def add(self, bucket: str, amount: float, window_s: int, technique: str) -> None:
        await self._limits.route_add(bucket, amount, window_s, technique)


def _rate_part(rule: RateLimitConfig, token_id: str | None, metadata: Mapping[str, Any] | None) -> str | None:
    """Which bucket of a keyed rate limit this call counts in (None: the shared one, see `_NONE`)."""
    if rule.key == "token":
        return token_id
    value = metadata.get(rule.key[9:]) if metadata and rule.key else None  # after "metadata."
    return None if value is None else metadata_text(value)


def _admitted(decision: Decision) -> RateDecision:
    """The call's place in its rate limit; raises `RateLimitExceeded` (429/2003) when it was refused."""
    if not decision[0]:
        raise RateLimitExceeded(decision)
    return decision


def _check_spend(
    decisions: Sequence[DecisionTuple], rules: Sequence[SpendRule], provider: str, model: str | None
) -> None:
    """Raise `BudgetExceeded` (429/2041) naming the first rule the call did not fit."""
    for i, decision in enumerate(decisions):
        if not decision[0]:
            where = f"{provider} {model}" if model else provider
            message = f"Spend limit exceeded: {_rule_text(rules[i])} for {where}"
            raise BudgetExceeded(message, retry_after=max(1, math.ceil(decision[3])))


def _technique(technique: str) -> Technique:
    for known in TECHNIQUES:
        if technique == known:
            return known
    raise ValueError(f"technique must be one of {', '.join(TECHNIQUES)}, got {technique!r}")
