"""`pricing`: the shipped table, model-name matching, cost per rule, custom costs and exact sums."""

from __future__ import annotations

import math
import random
from decimal import Decimal

import orjson
import pytest

from switchpoint.formats.usage import Usage, usage_from_obj
from switchpoint.pricing import PRICE_FIELDS, CostResult, CustomCost, PriceBook, parse_custom_cost

MILLION = Decimal(1_000_000)


@pytest.fixture(scope="module")
def book() -> PriceBook:
    return PriceBook()


def approx(value: float | None, expected: str) -> bool:
    """Costs are exact decimals rounded to 1e-12 USD before becoming floats."""
    return value is not None and Decimal(repr(value)) == Decimal(expected)


# -- the shipped table -----------------------------------------------------------------------------------


def test_every_shipped_entry_is_valid_and_sourced() -> None:
    from importlib import resources

    data = orjson.loads(resources.files("switchpoint").joinpath("prices.json").read_bytes())
    assert len(data["models"]) == len(PriceBook())
    for key, entry in data["models"].items():
        assert key == key.lower() and "/" in key
        assert entry["_source"], key
        assert set(entry) <= {*PRICE_FIELDS, "_source"}, key
        assert entry["output"] >= 0 and entry["input"] >= 0, key


@pytest.mark.parametrize(
    ("provider", "model", "input_", "output", "cache_read", "cache_write"),
    [
        ("workers-ai", "@cf/moonshotai/kimi-k2.5", "0.6", "3", "0.1", None),
        ("workers-ai", "@cf/moonshotai/kimi-k2.6", "0.95", "4", "0.16", None),
        ("moonshot", "kimi-k2.5", "0.6", "3", "0.1", None),
        ("anthropic", "claude-sonnet-4-5", "3", "15", "0.3", "3.75"),
        ("anthropic", "claude-haiku-4-5", "1", "5", "0.1", "1.25"),
        ("anthropic", "claude-opus-4-1", "15", "75", "1.5", "18.75"),
        ("openai", "gpt-4o-mini", "0.15", "0.6", "0.075", None),
    ],
)
def test_key_prices(
    book: PriceBook, provider: str, model: str, input_: str, output: str, cache_read: str, cache_write: str | None
) -> None:
    price = book.price(provider, model)
    assert price is not None
    assert (price.input, price.output) == (Decimal(input_), Decimal(output))
    assert price.cache_read == Decimal(cache_read)
    assert price.cache_write == (Decimal(cache_write) if cache_write else None)


def test_anthropic_cache_rates_are_the_documented_multiples(book: PriceBook) -> None:
    for model in ("claude-opus-4-5", "claude-opus-4-1", "claude-sonnet-4-5", "claude-sonnet-4", "claude-haiku-4-5"):
        price = book.price("anthropic", model)
        assert price is not None and price.cache_read is not None and price.cache_write is not None
        assert price.cache_write == price.input * Decimal("1.25"), model
        assert price.cache_read == price.input * Decimal("0.1"), model


# -- matching --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "model", "key"),
    [
        ("openai", "gpt-4o-mini", "openai/gpt-4o-mini"),
        ("openai", "gpt-4o-mini-2024-07-18", "openai/gpt-4o-mini"),
        ("openai", "GPT-4o-2024-08-06", "openai/gpt-4o"),
        ("openai", "gpt-4o-2024-05-13", "openai/gpt-4o-2024-05-13"),  # an exact snapshot priced apart wins
        ("openai", "gpt-3.5-turbo-0125", "openai/gpt-3.5-turbo"),
        ("openai", "gpt-5-chat-latest", "openai/gpt-5-chat"),
        ("openai", "o3-mini-2025-01-31", "openai/o3-mini"),
        ("anthropic", "claude-sonnet-4-5-20250929", "anthropic/claude-sonnet-4-5"),
        ("anthropic", "claude-sonnet-4-20250514", "anthropic/claude-sonnet-4"),
        ("anthropic", "claude-3-5-haiku-latest", "anthropic/claude-3-5-haiku"),
        ("anthropic", "claude-opus-4-1@20250805", "anthropic/claude-opus-4-1"),
        ("grok", "grok-4-0709", "grok/grok-4"),
        ("xai", "grok-3-mini", "grok/grok-3-mini"),  # provider alias
        ("openrouter", "openai/gpt-4o-mini", "openai/gpt-4o-mini"),
        ("openrouter", "anthropic/claude-sonnet-4.5", "anthropic/claude-sonnet-4-5"),
        ("openrouter", "moonshotai/kimi-k2.5", "moonshot/kimi-k2.5"),
        ("openrouter", "google/gemini-2.5-flash", "openrouter/google/gemini-2.5-flash"),
        ("openrouter", "google/gemini-2.5-flash:nitro", "openrouter/google/gemini-2.5-flash"),
    ],
)
def test_model_name_matching(book: PriceBook, provider: str, model: str, key: str) -> None:
    found = book.lookup(provider, model)
    assert found is not None and found[0] == key


@pytest.mark.parametrize(
    ("provider", "model"),
    [
        ("openai", "gpt-4o-mini-tts-2025-03-20"),  # a different model, not gpt-4o-mini
        ("openai", "gpt-4o-turbo"),
        ("anthropic", "gpt-4o"),  # models are priced per provider
        ("custom-acme", "x"),
        ("openrouter", "unknown-vendor/model"),
        ("openai", ""),
        (None, "gpt-4o"),
    ],
)
def test_unmatched_names(book: PriceBook, provider: str | None, model: str) -> None:
    assert book.lookup(provider, model) is None


def test_openrouter_free_variant_costs_nothing(book: PriceBook) -> None:
    result = book.cost("openrouter", "meta-llama/llama-3.3-70b-instruct:free", Usage(1000, 1000))
    assert result == CostResult(0.0)


# -- cost per rule ---------------------------------------------------------------------------------------


def test_input_and_output(book: PriceBook) -> None:
    # gpt-4o: $2.50 in, $10 out per million
    assert approx(book.cost("openai", "gpt-4o", Usage(1000, 500)).cost, "0.0075")


def test_cached_read_is_billed_at_the_cache_price_only(book: PriceBook) -> None:
    cold = book.cost("openai", "gpt-4o", Usage(1000, 0)).cost
    warm = book.cost("openai", "gpt-4o", Usage(1000, 0, cache_read_tokens=800)).cost
    assert approx(warm, "0.0015")  # 200 x 2.50 + 800 x 1.25, not 1000 x 2.50 + 800 x 1.25
    assert cold is not None and warm is not None and warm < cold


def test_anthropic_answer_priced_without_double_counting(book: PriceBook) -> None:
    usage = usage_from_obj(
        {
            "usage": {
                "input_tokens": 10,
                "cache_creation_input_tokens": 200,
                "cache_read_input_tokens": 3000,
                "output_tokens": 42,
            }
        }  # fmt: skip
    )
    # 10 x 3 + 200 x 3.75 + 3000 x 0.30 + 42 x 15 = 2310 micro-dollars
    assert approx(book.cost("anthropic", "claude-sonnet-4-5-20250929", usage).cost, "0.00231")


def test_cache_write(book: PriceBook) -> None:
    # claude-haiku-4-5: write 1.25, so 1000 written + 0 uncached = 0.00125
    assert approx(book.cost("anthropic", "claude-haiku-4-5", Usage(1000, 0, 0, 1000)).cost, "0.00125")


def test_unpriced_cache_rates_fall_back_to_input() -> None:
    book = PriceBook({"custom-acme/m": {"input": 2.0, "output": 4.0}})
    assert approx(book.cost("custom-acme", "m", Usage(1000, 0, 600, 300)).cost, "0.002")


def test_reasoning_at_output_price_unless_priced_apart(book: PriceBook) -> None:
    # o3: reasoning is inside tokens_out and billed as output: 100 x 2 + 50 x 8
    assert approx(book.cost("openai", "o3", Usage(100, 50, reasoning_tokens=40)).cost, "0.0006")
    # sonar-deep-research prices reasoning at $3: 100 x 2 + 30 x 8 + 20 x 3
    assert approx(book.cost("perplexity-ai", "sonar-deep-research", Usage(100, 50, reasoning_tokens=20)).cost, "0.0005")


def test_unknown_model_has_no_cost(book: PriceBook) -> None:
    assert book.cost("openai", "gpt-99", Usage(10, 10)) == CostResult(None, custom=False, usage_missing=False)
    assert book.cost("custom-acme", None, Usage(10, 10)) == CostResult(None)


def test_missing_usage(book: PriceBook) -> None:
    assert book.cost("openai", "gpt-4o", None) == CostResult(None, custom=False, usage_missing=True)
    assert book.cost("openai", "gpt-4o", Usage()) == CostResult(None, usage_missing=True)


def test_partial_usage_counts_what_is_there(book: PriceBook) -> None:
    assert approx(book.cost("openai", "text-embedding-3-small", Usage(1000, None)).cost, "0.00002")


def test_inconsistent_cache_counts_never_go_negative(book: PriceBook) -> None:
    # more cached than prompt tokens: uncached clamps at zero, reasoning at the output
    assert approx(book.cost("openai", "gpt-4o", Usage(100, 10, 400, None, 50)).cost, "0.0006")


# -- overrides -------------------------------------------------------------------------------------------


def test_override_merges_field_by_field_and_adds_models() -> None:
    book = PriceBook({"openai/gpt-4o": {"output": 12.5}, "custom-acme/x": {"input": 1, "output": 2, "cache_read": 0.5}})
    price = book.price("openai", "gpt-4o-2024-11-20")
    assert price is not None and (price.input, price.output, price.cache_read) == (
        Decimal("2.5"),
        Decimal("12.5"),
        Decimal("1.25"),
    )
    assert approx(book.cost("custom-acme", "x", Usage(1000, 1000, 1000)).cost, "0.0025")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"custom-acme/x": {"input": 1.0}}, "output is required"),
        ({"openai/gpt-4o": {"input": -1.0}}, "input must not be negative"),
        ({"openai/gpt-4o": {"outptu": 1.0}}, "unknown field 'outptu'"),
        ({"openai/gpt-4o": {"input": "cheap"}}, "input must be a number"),
        ({"openai/gpt-4o": {"input": float("inf")}}, "input must be a finite number"),
        ({"gpt-4o": {"input": 1.0, "output": 1.0}}, "'provider/model'"),
    ],
)
def test_bad_overrides(overrides: dict[str, dict[str, float]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PriceBook(overrides)


# -- custom cost -----------------------------------------------------------------------------------------


def test_custom_per_token(book: PriceBook) -> None:
    custom = parse_custom_cost('{"per_token_in": 0.000001, "per_token_out": 0.000002}')
    result = book.cost("openai", "gpt-4o", Usage(1000, 500), custom=custom)
    assert result.custom and not result.usage_missing
    assert approx(result.cost, "0.002")


def test_custom_cache_rates_default_to_per_token_in(book: PriceBook) -> None:
    custom = parse_custom_cost('{"per_token_in": 0.000001, "per_token_out": 0.000002}')
    assert custom.per_cache_read_token is None
    assert approx(book.cost("anthropic", "m", Usage(1000, 0, 800, 100), custom=custom).cost, "0.001")
    explicit = parse_custom_cost(
        '{"per_token_in": 1e-6, "per_token_out": 2e-6, "per_cache_read_token": 1e-7, "per_cache_write_token": 2e-6}'
    )
    # 100 uncached x 1e-6 + 800 x 1e-7 + 100 x 2e-6
    assert approx(book.cost("anthropic", "m", Usage(1000, 0, 800, 100), custom=explicit).cost, "0.00038")


def test_custom_total_cost(book: PriceBook) -> None:
    custom = parse_custom_cost('{"total_cost": 0.25}')
    assert custom == CustomCost(total_cost=Decimal("0.25"))
    assert book.cost("openai", "gpt-4o", Usage(1, 1), custom=custom) == CostResult(0.25, custom=True)
    assert book.cost("x", "y", None, custom=custom) == CostResult(0.25, custom=True, usage_missing=True)
    both = parse_custom_cost('{"total_cost": 1, "per_token_in": 5, "per_token_out": 5}')
    assert both.cost(Usage(1000, 1000)) == 1.0  # total_cost wins


def test_custom_per_token_without_usage(book: PriceBook) -> None:
    custom = parse_custom_cost('{"per_token_in": 1, "per_token_out": 1}')
    assert book.cost("openai", "gpt-4o", None, custom=custom) == CostResult(None, custom=True, usage_missing=True)


def test_custom_rates_keep_every_decimal() -> None:
    custom = parse_custom_cost('{"per_token_in": 0.00000012345678901, "per_token_out": 0}')
    assert custom.per_token_in == Decimal("0.00000012345678901")
    assert approx(custom.cost(Usage(1_000_000, 7)), "0.12345678901")


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("not json", "not valid JSON"),
        ('{"per_token_in": NaN, "per_token_out": 1}', "not valid JSON"),
        ("[0.1]", "expected a JSON object"),
        ("{}", "per_token_in is required"),
        ('{"per_token_in": 0.1}', "per_token_out is required"),
        ('{"per_token_in": -0.1, "per_token_out": 1}', "per_token_in must not be negative"),
        ('{"per_token_in": 0.1, "per_token_out": "0.2"}', "per_token_out must be a number"),
        ('{"per_token_in": 0.1, "per_token_out": true}', "per_token_out must be a number"),
        ('{"total_cost": null}', "total_cost must be a number"),
        ('{"total_cost": 1e400}', "total_cost is too large"),
        ('{"total": 1}', "unknown field 'total'"),
        ('{"per_token_in": 1, "per_token_out": 1, "per_cache_token": 1}', "unknown field 'per_cache_token'"),
    ],
)
def test_bad_custom_cost(header: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        parse_custom_cost(header)
    assert str(info.value).startswith("cf-aig-custom-cost: ")


# -- sums ------------------------------------------------------------------------------------------------


def exact(usage: Usage, rates: tuple[Decimal, Decimal, Decimal, Decimal], scale: Decimal) -> Decimal:
    """An independent exact cost: uncached x in + read x read + write x write + out x out."""
    rate_in, rate_out, rate_read, rate_write = rates
    tokens_in, tokens_out = usage.tokens_in or 0, usage.tokens_out or 0
    read, write = usage.cache_read_tokens or 0, usage.cache_write_tokens or 0
    return (
        (tokens_in - read - write) * rate_in + read * rate_read + write * rate_write + tokens_out * rate_out
    ) / scale


def test_ten_thousand_records_sum_to_the_exact_decimal_total(book: PriceBook) -> None:
    rng = random.Random(20260801)
    models = [("openai", "gpt-4o-mini"), ("anthropic", "claude-sonnet-4-5"), ("workers-ai", "@cf/moonshotai/kimi-k2.5"),
              ("deepseek", "deepseek-v4-pro"), ("workers-ai", "@cf/meta/llama-3.2-1b-instruct")]  # fmt: skip
    custom = parse_custom_cost('{"per_token_in": 0.0000001234567, "per_token_out": 0.00000098765}')
    assert custom.per_token_in is not None and custom.per_token_out is not None
    custom_rates = (custom.per_token_in, custom.per_token_out, custom.per_token_in, custom.per_token_in)
    floats: list[float] = []
    total = Decimal(0)
    for n in range(10_000):
        prompt = rng.randint(1, 200_000)
        read = rng.randint(0, prompt // 2)
        write = rng.randint(0, (prompt - read) // 4)
        usage = Usage(prompt, rng.randint(0, 8_000), read, write)
        if n % 10 == 0:
            cost = book.cost("openai", "gpt-4o", usage, custom=custom).cost
            total += exact(usage, custom_rates, Decimal(1))
        else:
            provider, model = models[n % len(models)]
            price = book.price(provider, model)
            assert price is not None
            read_rate = price.cache_read if price.cache_read is not None else price.input
            write_rate = price.cache_write if price.cache_write is not None else price.input
            cost = book.cost(provider, model, usage).cost
            total += exact(usage, (price.input, price.output, read_rate, write_rate), MILLION)
        assert cost is not None
        floats.append(cost)
    cent = Decimal("0.01")
    for summed in (sum(floats), math.fsum(floats)):  # a database's naive SUM and a careful one
        assert abs(Decimal(repr(summed)) - total) < Decimal("1e-6")
        assert Decimal(repr(summed)).quantize(cent) == total.quantize(cent)


@pytest.mark.parametrize("model", ["gpt-4o-mini", "gpt-4o-2024-08-06", "claude-sonnet-4-5"])
def test_the_budget_estimate_is_the_exact_cost_of_plain_tokens_in_floats(book: PriceBook, model: str) -> None:
    provider = "anthropic" if model.startswith("claude") else "openai"
    for tokens_in, tokens_out in ((0, 512), (75, 512), (123_457, 1)):
        exact = book.cost(provider, model, Usage(tokens_in, tokens_out)).cost
        assert exact is not None and exact > 0
        assert book.estimate(provider, model, tokens_in, tokens_out) == pytest.approx(exact, rel=1e-12, abs=1e-12)


def test_an_unpriced_model_has_no_estimate(book: PriceBook) -> None:
    assert book.estimate("openai", "no-such-model", 10, 512) is None
    assert book.estimate("openai", "no-such-model", 10, 512) is None  # memoised as unknown too
    assert book.estimate(None, None, 10, 512) is None
