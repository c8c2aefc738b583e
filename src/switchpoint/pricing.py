"""Model prices (the shipped `prices.json` merged with config overrides) and the cost of one call's usage.

Money. Prices are read as exact decimals (JSON numbers go through `Decimal`, never through binary floats), a
call's cost is computed exactly in `Decimal` and rounded once, half-even, to 1e-12 USD; only then is it turned
into the float the log row stores. Each record is therefore off by at most 5e-13 USD plus one float rounding
(relative 1e-16), so sums over millions of records match an exact decimal sum to far better than a cent.

Usage. `tokens_in` counts every prompt token (uncached + cache reads + cache writes) and `tokens_out` every
generated token (reasoning included), for every provider (`formats.usage` normalises them). So:

    cost = (tokens_in - cache_read - cache_write) * input + cache_read * cache_read + cache_write * cache_write
         + (tokens_out - reasoning) * output + reasoning * reasoning

where an unpriced cache rate falls back to `input` and an unpriced reasoning rate to `output`. Cached input is
billed once, at the cache price, never also at the input price. A missing count is taken as 0.

Matching `provider/model` against the table, first hit wins (lower-cased; the result is memoised):
  1. the provider alias is resolved (`xai` -> `grok`, `perplexity` -> `perplexity-ai`, ...), then
  2. the exact id, e.g. `openai/gpt-4o-2024-05-13` (priced apart from `gpt-4o`);
  3. the id without one dated-snapshot or alias suffix: `-YYYY-MM-DD`, `-YYYYMMDD`, `@YYYYMMDD`, `-MMDD`/`-YYMM`
     (4 digits) or `-latest`: `gpt-4o-mini-2024-07-18` -> `gpt-4o-mini`, `claude-sonnet-4-5-20250929` ->
     `claude-sonnet-4-5`, `grok-4-0709` -> `grok-4`, `claude-3-5-haiku-latest` -> `claude-3-5-haiku`;
  4. OpenRouter only: `vendor/model:free` costs 0; another `:variant` is stripped and tried again; then
     `vendor/model` is looked up in the vendor's own table (`openai/gpt-4o` -> `openai/gpt-4o`,
     `anthropic/claude-sonnet-4.5` -> `anthropic/claude-sonnet-4-5`, dots read as dashes), steps 2-3 each time.
No hit means the cost is unknown (None), never a guess from a similar name.

Not modelled (documented limits): long-context tiers (Claude Sonnet and GPT-5.4 above 200k/272k prompt tokens),
Anthropic 1-hour cache writes (2x input; billed here at the 5-minute rate), batch discounts, per-request fees.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Context, Decimal
from functools import cache
from importlib import resources
from typing import Any, NoReturn, Protocol

PRICE_FIELDS = ("input", "output", "cache_read", "cache_write", "reasoning")
CUSTOM_COST_FIELDS = ("per_token_in", "per_token_out", "per_cache_read_token", "per_cache_write_token", "total_cost")
_QUANTUM = Decimal("1e-12")  # USD; costs are rounded once, here
_CONTEXT = Context(prec=60, rounding=ROUND_HALF_EVEN)  # room for any bounded rate x token count
_MAX_NUMBER = Decimal("1e9")  # no price or custom cost is near this; it keeps the arithmetic bounded
_ZERO = Decimal(0)
_SUFFIX = re.compile(r"(?:-\d{4}-\d{2}-\d{2}|-\d{8}|@\d{8}|-\d{4}|-latest)$")
_MEMO_LIMIT = 4096  # model names are client-controlled: the memo is cleared rather than left to grow


class UsageLike(Protocol):
    """What cost needs from `formats.usage.Usage` (pricing is a leaf and cannot import it)."""

    @property
    def tokens_in(self) -> int | None: ...
    @property
    def tokens_out(self) -> int | None: ...
    @property
    def cache_read_tokens(self) -> int | None: ...
    @property
    def cache_write_tokens(self) -> int | None: ...
    @property
    def reasoning_tokens(self) -> int | None: ...


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """USD per 1,000,000 tokens; None means "not priced apart" (cache -> input, reasoning -> output)."""

    input: Decimal
    output: Decimal
    cache_read: Decimal | None = None
    cache_write: Decimal | None = None
    reasoning: Decimal | None = None
    source: str = ""


@dataclass(frozen=True, slots=True)
class CostResult:
    """`cost` in USD, None when unknown; `custom` when `cf-aig-custom-cost` set it; `usage_missing` when the
    answer carried no token counts at all."""

    cost: float | None
    custom: bool = False
    usage_missing: bool = False


@dataclass(frozen=True, slots=True)
class CustomCost:
    """A parsed `cf-aig-custom-cost` header: USD per token, or one `total_cost` for the call."""

    per_token_in: Decimal | None = None
    per_token_out: Decimal | None = None
    per_cache_read_token: Decimal | None = None
    per_cache_write_token: Decimal | None = None
    total_cost: Decimal | None = None

    def cost(self, usage: UsageLike | None) -> float | None:
        """`total_cost` as given; otherwise the per-token rates over the usage (None without usage)."""
        if self.total_cost is not None:
            return _usd(self.total_cost)
        if usage is None or _missing(usage) or self.per_token_in is None or self.per_token_out is None:
            return None
        read = self.per_cache_read_token if self.per_cache_read_token is not None else self.per_token_in
        write = self.per_cache_write_token if self.per_cache_write_token is not None else self.per_token_in
        return _usd(_units(usage, self.per_token_in, self.per_token_out, read, write, self.per_token_out))


FREE = ModelPrice(_ZERO, _ZERO, source="OpenRouter :free variant")


def _number(value: Any, name: str, where: str) -> Decimal:
    """A finite, non-negative number as an exact Decimal; ValueError naming the field otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise ValueError(f"{where}: {name} must be a number")
    number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if not number.is_finite():
        raise ValueError(f"{where}: {name} must be a finite number")
    if number < 0:
        raise ValueError(f"{where}: {name} must not be negative")
    if number > _MAX_NUMBER:
        raise ValueError(f"{where}: {name} is too large")
    return number


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a number")


def parse_custom_cost(header: str) -> CustomCost:
    """Parse `cf-aig-custom-cost`: `{"per_token_in": x, "per_token_out": y[, "per_cache_read_token": r]
    [, "per_cache_write_token": w]}` or `{"total_cost": n}`. USD per token, any decimals, kept exact.

    Omitted cache rates default to `per_token_in`. When `total_cost` is present it wins over any rates. Bad JSON,
    unknown keys, non-numbers, negative values or a missing `per_token_in`/`per_token_out` raise ValueError with
    a message naming the field (the caller answers 400).
    """
    where = "cf-aig-custom-cost"
    try:
        data = json.loads(header, parse_float=Decimal, parse_constant=_reject_constant)
    except ValueError as exc:
        raise ValueError(f"{where}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a JSON object")
    unknown = sorted(set(data) - set(CUSTOM_COST_FIELDS))
    if unknown:
        raise ValueError(f"{where}: unknown field {unknown[0]!r} (expected {', '.join(CUSTOM_COST_FIELDS)})")
    values = {name: _number(value, name, where) for name, value in data.items()}
    if "total_cost" in values:
        return CustomCost(total_cost=values["total_cost"])
    for name in ("per_token_in", "per_token_out"):
        if name not in values:
            raise ValueError(f"{where}: {name} is required unless total_cost is given")
    return CustomCost(**values)


def _missing(usage: UsageLike) -> bool:
    return usage.tokens_in is None and usage.tokens_out is None


def _units(
    usage: UsageLike, rate_in: Decimal, rate_out: Decimal, rate_read: Decimal, rate_write: Decimal, rate_reason: Decimal
) -> Decimal:
    """Exact sum of tokens x rate, with the cache parts taken out of the input and reasoning out of the output."""
    tokens_in = usage.tokens_in or 0
    tokens_out = usage.tokens_out or 0
    read = usage.cache_read_tokens or 0
    write = usage.cache_write_tokens or 0
    reasoning = min(usage.reasoning_tokens or 0, tokens_out)
    uncached = max(tokens_in - read - write, 0)
    total = uncached * rate_in + (tokens_out - reasoning) * rate_out
    # Most answers have no cache or reasoning parts: a Decimal product of zero is skipped, not computed.
    if read:
        total += read * rate_read
    if write:
        total += write * rate_write
    if reasoning:
        total += reasoning * rate_reason
    return total


def _usd(amount: Decimal) -> float:
    return float(amount.quantize(_QUANTUM, context=_CONTEXT))


def _price(entry: Mapping[str, Any], where: str) -> ModelPrice:
    unknown = sorted(k for k in entry if k not in PRICE_FIELDS and not k.startswith("_"))
    if unknown:
        raise ValueError(f"{where}: unknown field {unknown[0]!r} (expected {', '.join(PRICE_FIELDS)})")
    for name in ("input", "output"):
        if entry.get(name) is None:
            raise ValueError(f"{where}: {name} is required")
    rates = {name: _number(entry[name], name, where) for name in PRICE_FIELDS if entry.get(name) is not None}
    return ModelPrice(**rates, source=str(entry.get("_source", "")))


@cache
def _shipped() -> dict[str, Any]:
    text = resources.files("switchpoint").joinpath("prices.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text, parse_float=Decimal)
    return data


def _candidates(model: str) -> Iterator[str]:
    yield model
    stripped = _SUFFIX.sub("", model, count=1)
    if stripped and stripped != model:
        yield stripped


class PriceBook:
    """The price table: shipped entries, then `overrides` (`{"provider/model": {"input": 1.0, ...}}`, USD per
    million tokens) merged field by field over them. An override for a model not shipped needs input and output.
    """

    def __init__(
        self, overrides: Mapping[str, Mapping[str, float]] | None = None, *, table: Mapping[str, Any] | None = None
    ) -> None:
        data = _shipped() if table is None else table
        entries: dict[str, dict[str, Any]] = {k.lower(): dict(v) for k, v in data.get("models", {}).items()}
        for key, fields in (overrides or {}).items():
            if "/" not in key.strip("/"):
                raise ValueError(f"prices.{key}: expected a 'provider/model' key")
            name = key.lower()
            entries[name] = {**entries.get(name, {}), **fields, "_source": "config override"}
        self._prices = {key: _price(entry, f"prices.{key}") for key, entry in entries.items()}
        self._aliases: dict[str, str] = dict(data.get("provider_aliases", {}))
        self._vendors: dict[str, str] = dict(data.get("openrouter_vendors", {}))
        self._memo: dict[tuple[str, str], tuple[str, ModelPrice] | None] = {}
        self._rates: dict[tuple[str | None, str | None], tuple[float, float] | None] = {}

    def __len__(self) -> int:
        return len(self._prices)

    def lookup(self, provider: str | None, model: str | None) -> tuple[str, ModelPrice] | None:
        """The matching table key and its price (rules in the module docstring), or None."""
        if not provider or not model:
            return None
        memo_key = (provider, model)
        if memo_key in self._memo:
            return self._memo[memo_key]
        slug = provider.lower()
        slug = self._aliases.get(slug, slug)
        found = self._find(slug, model.lower())
        if found is None and slug == "openrouter":
            found = self._openrouter(model.lower())
        if len(self._memo) >= _MEMO_LIMIT:
            self._memo.clear()
        self._memo[memo_key] = found
        return found

    def price(self, provider: str | None, model: str | None) -> ModelPrice | None:
        found = self.lookup(provider, model)
        return found[1] if found is not None else None

    def cost(
        self, provider: str | None, model: str | None, usage: UsageLike | None, custom: CustomCost | None = None
    ) -> CostResult:
        """Cost of one call in USD. `custom` (from `parse_custom_cost`) replaces the table and marks the result."""
        missing = usage is None or _missing(usage)
        if custom is not None:
            return CostResult(custom.cost(usage), custom=True, usage_missing=missing)
        if usage is None or missing:
            return CostResult(None, usage_missing=True)
        price = self.price(provider, model)
        if price is None:
            return CostResult(None)
        read = price.cache_read if price.cache_read is not None else price.input
        write = price.cache_write if price.cache_write is not None else price.input
        reason = price.reasoning if price.reasoning is not None else price.output
        units = _units(usage, price.input, price.output, read, write, reason)
        return CostResult(_usd(units.scaleb(-6)))

    def estimate(self, provider: str | None, model: str | None, tokens_in: int, tokens_out: int) -> float | None:
        """A budget reservation's guess: `cost` of plain input and output tokens (no cache or reasoning parts)
        in binary floats, from per-token rates converted once per model. A guess needs no exact decimals, and
        this runs before every call on a gateway with spend limits. None when the model is not priced."""
        key = (provider, model)
        rates = self._rates.get(key)
        if rates is None:
            if key in self._rates:
                return None
            price = self.price(provider, model)
            rates = None if price is None else (float(price.input) / 1e6, float(price.output) / 1e6)
            if len(self._rates) >= _MEMO_LIMIT:
                self._rates.clear()
            self._rates[key] = rates
            if rates is None:
                return None
        return tokens_in * rates[0] + tokens_out * rates[1]

    def _find(self, provider: str, model: str) -> tuple[str, ModelPrice] | None:
        for name in _candidates(model):
            key = f"{provider}/{name}"
            price = self._prices.get(key)
            if price is not None:
                return key, price
        return None

    def _openrouter(self, model: str) -> tuple[str, ModelPrice] | None:
        name, _, variant = model.partition(":")
        if variant == "free":
            return f"openrouter/{model}", FREE
        if variant and (found := self._find("openrouter", name)) is not None:
            return found
        vendor, _, rest = name.partition("/")
        native = self._vendors.get(vendor)
        if native is None or not rest:
            return None
        return self._find(native, rest) or self._find(native, rest.replace(".", "-"))
