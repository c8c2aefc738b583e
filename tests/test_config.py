"""Tests for the config loader: defaults, the documented example, JSON, interpolation and error reports."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from switchpoint.config import (
    BUILTIN_PROVIDERS,
    Config,
    ConfigError,
    ConfigProblem,
    GatewayConfig,
    RetryConfig,
    ServerConfig,
    load_config,
)

DESIGN_EXAMPLE = """\
data_dir: ~/.local/share/switchpoint   # SQLite, key file, log spool
database_url: null                     # sqlite in data_dir, or postgresql://...
redis_url: null                        # in-process state, or redis://127.0.0.1:6379/0
gateways:
  default:
    authentication: false              # require cf-aig-authorization
    collect_logs: true
    cache_ttl: 0                       # seconds; 0 = off unless the request asks
    rate_limit: null                   # {limit: 100, window: 60, technique: sliding}
    retries: {max_attempts: 1, delay_ms: 0, backoff: constant}
    request_timeout_ms: null
providers:                             # override a built-in
  openai: {base_url: "https://api.openai.com/v1"}
custom_providers:
  acme: {base_url: "https://llm.acme.example", format: openai, compat_path: /v1/chat/completions}
routes:
  support: {elements: [...]}           # Cloudflare's dynamic-route JSON, as YAML
"""


@pytest.fixture(autouse=True)
def _no_data_dir_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SWITCHPOINT_DATA_DIR", raising=False)


def write(tmp_path: Path, text: str, name: str = "switchpoint.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def problems_of(path: Path) -> list[tuple[int | None, str, str]]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return [(p.line, p.path, p.message) for p in info.value.problems]


def test_defaults_without_a_file() -> None:
    config = load_config(None)
    assert config.data_dir == Path("~/.local/share/switchpoint").expanduser()
    assert config.data_dir.is_absolute()
    assert config.database_url is None and config.redis_url is None
    assert config.gateways == {"default": GatewayConfig()}
    gateway = config.gateways["default"]
    assert (gateway.authentication, gateway.collect_logs, gateway.cache_ttl) == (False, True, 0)
    assert gateway.retries == RetryConfig(max_attempts=1, delay_ms=0, backoff="constant")
    assert gateway.rate_limit is None and gateway.request_timeout_ms is None and gateway.account_id is None
    assert config.providers == {} and config.custom_providers == {} and config.routes == {}
    assert config.server == ServerConfig()
    assert config.server.max_body_bytes == 32 * 1024 * 1024
    assert config.server.upstream_pool_size == 4096


def test_empty_file_means_defaults(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "# nothing yet\n")) == load_config(None)


def test_design_example_parses(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, DESIGN_EXAMPLE))
    assert config.gateways["default"] == GatewayConfig()
    assert config.providers["openai"].base_url == "https://api.openai.com/v1"
    acme = config.custom_providers["acme"]
    assert (acme.base_url, acme.format, acme.compat_path) == (
        "https://llm.acme.example",
        "openai",
        "/v1/chat/completions",
    )
    assert (acme.embeddings_path, acme.auth_header, acme.headers) == ("/v1/embeddings", "authorization", {})
    assert config.routes == {"support": {"elements": ["..."]}}


def test_full_settings(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
gateways:
  prod:
    authentication: true
    cache_ttl: 300
    rate_limit: {limit: 100, window: 60, technique: fixed}
    retries: {max_attempts: 3, delay_ms: 200, backoff: exponential}
    request_timeout_ms: 30000
    account_id: acct-1
providers:
  anthropic:
    headers: {anthropic-version: 2023-06-01, X-Trace: "on", x-n: 2}
custom_providers:
  my-llm: {base_url: "http://10.0.0.5:8000/", format: anthropic, auth_header: X-Api-Key}
server: {max_body_bytes: 1024, idle_timeout_ms: 1000}
""",
    )
    config = load_config(path)
    assert list(config.gateways) == ["prod"]  # declaring gateways replaces the implicit default
    prod = config.gateways["prod"]
    assert prod.rate_limit is not None and prod.rate_limit.technique == "fixed"
    assert (prod.retries.max_attempts, prod.retries.backoff, prod.account_id) == (3, "exponential", "acct-1")
    # unquoted YAML dates stay text; header names are lower-cased
    assert config.providers["anthropic"].headers == {
        "anthropic-version": "2023-06-01",
        "x-trace": "on",
        "x-n": "2",
    }
    custom = config.custom_providers["my-llm"]
    assert (custom.base_url, custom.auth_header) == ("http://10.0.0.5:8000", "x-api-key")
    assert (config.server.max_body_bytes, config.server.idle_timeout_ms) == (1024, 1000)
    assert config.server.connect_timeout_ms == 10000


def test_empty_sections_take_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "gateways:\nproviders:\nserver:\n"))
    assert config == load_config(None)


def test_json_config_with_lines(tmp_path: Path) -> None:
    body = {"gateways": {"default": {"cache_ttl": 60}, "bench": {"collect_logs": False}}, "server": {}}
    config = load_config(write(tmp_path, json.dumps(body, indent="\t"), "config.json"))
    assert config.gateways["default"].cache_ttl == 60
    assert config.gateways["bench"].collect_logs is False

    compact = '{"gateways":{"default":{"cache_ttl":1e2}},"routes":{"r":{"s":"\\ud83d\\ude00"}}}'
    config = load_config(write(tmp_path, compact, "compact.json"))
    assert config.gateways["default"].cache_ttl == 100
    assert config.routes["r"]["s"] == "\U0001f600"

    bad = {"gateways": {"default": {"retries": {"max_attempts": 0}, "colect_logs": True}}}
    text = json.dumps(bad, indent=2)
    assert text.splitlines()[4].strip().startswith('"max_attempts"')
    assert problems_of(write(tmp_path, text, "bad.json")) == [
        (5, "gateways.default.retries.max_attempts", "Input should be greater than or equal to 1"),
        (7, "gateways.default.colect_logs", "unknown key"),
    ]


def test_json_syntax_error_has_a_line(tmp_path: Path) -> None:
    [(line, path, message)] = problems_of(write(tmp_path, '{\n  "gateways": {\n    "a": 1,,\n  }\n}\n'))
    assert (line, path) == (3, "")
    assert message.startswith("invalid YAML")


def test_interpolation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SP_TTL", "120")
    monkeypatch.setenv("SP_HOST", "llm.internal")
    monkeypatch.setenv("SP_EMPTY", "")
    monkeypatch.delenv("SP_UNSET", raising=False)
    path = write(
        tmp_path,
        """\
redis_url: ${SP_REDIS:-redis://127.0.0.1:6379/0}
gateways:
  default: {cache_ttl: "${SP_TTL}", account_id: "${SP_EMPTY:-fallback}"}
custom_providers:
  acme:
    base_url: https://${SP_HOST}:8443/v1
    headers: {x-team: "${SP_EMPTY}", x-both: "${SP_TTL}-${SP_UNSET:-none}"}
""",
    )
    config = load_config(path)
    assert config.redis_url == "redis://127.0.0.1:6379/0"
    assert config.gateways["default"].cache_ttl == 120
    assert config.gateways["default"].account_id == "fallback"
    assert config.custom_providers["acme"].base_url == "https://llm.internal:8443/v1"
    assert config.custom_providers["acme"].headers == {"x-team": "", "x-both": "120-none"}


def test_unset_variables_are_all_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SP_MISSING_URL", raising=False)
    monkeypatch.delenv("SP_MISSING_TTL", raising=False)
    path = write(
        tmp_path,
        """\
gateways:
  default:
    cache_ttl: ${SP_MISSING_TTL}
custom_providers:
  acme:
    base_url: ${SP_MISSING_URL}
""",
    )
    assert problems_of(path) == [
        (3, "gateways.default.cache_ttl", "environment variable SP_MISSING_TTL is not set"),
        (6, "custom_providers.acme.base_url", "environment variable SP_MISSING_URL is not set"),
    ]


def test_interpolation_runs_on_values_not_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SP_INJECT", "1\nserver: {max_body_bytes: 1}")
    config = load_config(write(tmp_path, 'routes:\n  r: {note: "${SP_INJECT}"}\n'))
    assert config.routes["r"]["note"] == "1\nserver: {max_body_bytes: 1}"
    assert config.server.max_body_bytes == ServerConfig().max_body_bytes


def test_every_problem_reported_with_its_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
gateways:
  default:
    authentication: true
    cache_ttl: soon
    retries:
      max_attempts: 3
    colect_logs: false
    rate_limit: {limit: 10}
server:
  upstream_pool_size: 0
""",
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert [(p.line, p.path) for p in info.value.problems] == [
        (4, "gateways.default.cache_ttl"),
        (7, "gateways.default.colect_logs"),
        (8, "gateways.default.rate_limit.window"),
        (10, "server.upstream_pool_size"),
    ]
    report = str(info.value).splitlines()
    assert report[0] == f"invalid config {path}:"
    assert report[2] == f"  {path}:7: gateways.default.colect_logs: unknown key"
    assert report[3] == f"  {path}:8: gateways.default.rate_limit.window: required key is missing"
    assert len(report) == 5


def test_unquoted_boolean_header_value(tmp_path: Path) -> None:
    [(line, path, message)] = problems_of(write(tmp_path, "providers:\n  groq:\n    headers: {x-debug: on}\n"))
    assert (line, path) == (3, "providers.groq.headers.x-debug")
    assert "quote the value" in message


def test_bad_gateway_id(tmp_path: Path) -> None:
    [(line, path, message)] = problems_of(write(tmp_path, "gateways:\n  ok_1: {}\n  -bad: {}\n"))
    assert (line, path) == (3, "gateways.-bad")
    assert "gateway id '-bad'" in message


def test_bad_custom_provider_slug(tmp_path: Path) -> None:
    text = "custom_providers:\n  acme: {base_url: 'https://a.example'}\n  Acme_2: {base_url: 'https://b.example'}\n"
    [(line, path, message)] = problems_of(write(tmp_path, text))
    assert (line, path) == (3, "custom_providers.Acme_2")
    assert "slug" in message


def test_custom_provider_fields(tmp_path: Path) -> None:
    text = """\
custom_providers:
  acme:
    format: gemini
    compat_path: chat
    base_url: ftp://files.example
  bare: {}
"""
    assert [(line, path) for line, path, _ in problems_of(write(tmp_path, text))] == [
        (3, "custom_providers.acme.format"),
        (4, "custom_providers.acme.compat_path"),
        (5, "custom_providers.acme.base_url"),
        (6, "custom_providers.bare.base_url"),
    ]


def test_unknown_builtin_provider(tmp_path: Path) -> None:
    text = "providers:\n  openai: {base_url: 'https://proxy.example/v1'}\n  opneai: {}\n"
    [(line, path, message)] = problems_of(write(tmp_path, text))
    assert (line, path) == (3, "providers.opneai")
    assert "not a built-in provider" in message
    assert "workers-ai" in BUILTIN_PROVIDERS and len(BUILTIN_PROVIDERS) == 11


def test_yaml_syntax_error_line(tmp_path: Path) -> None:
    text = "gateways:\n  default:\n    cache_ttl: 5\n   bad: [1\nserver: {}\n"
    [(line, path, message)] = problems_of(write(tmp_path, text))
    assert (line, path) == (4, "")
    assert message.startswith("invalid YAML:")


def test_duplicate_key(tmp_path: Path) -> None:
    text = "gateways:\n  default: {cache_ttl: 1}\n  default: {cache_ttl: 2}\n"
    assert problems_of(write(tmp_path, text)) == [
        (3, "gateways.default", "duplicate key (the one on line 2 is ignored)")
    ]


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    assert problems_of(write(tmp_path, "\n- gateways\n")) == [(2, "", "top level must be a mapping")]


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    assert problems_of(path) == [(None, "", "file does not exist")]
    with pytest.raises(ConfigError, match="nope.yaml: file does not exist"):
        load_config(path)


def test_data_dir_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, f"data_dir: {tmp_path / 'from-file'}\n")
    assert load_config(path).data_dir == tmp_path / "from-file"
    monkeypatch.setenv("SWITCHPOINT_DATA_DIR", str(tmp_path / "from-env"))
    assert load_config(path).data_dir == tmp_path / "from-env"
    assert load_config(None).data_dir == tmp_path / "from-env"
    assert load_config(path, data_dir=tmp_path / "from-flag").data_dir == tmp_path / "from-flag"


def test_data_dir_is_expanded_and_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert load_config(write(tmp_path, "data_dir: ~/sp\n")).data_dir == tmp_path / "sp"
    assert load_config(None, data_dir=Path("rel")).data_dir == tmp_path / "rel"


def test_models_are_frozen() -> None:
    config = load_config(None)
    with pytest.raises(ValidationError):
        config.server = ServerConfig()  # type: ignore[misc]
    with pytest.raises(ValidationError):
        config.gateways["default"].cache_ttl = 5  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        ConfigProblem("a", 1, "m").line = 2  # type: ignore[misc]


def test_unknown_top_level_key_rejected() -> None:
    with pytest.raises(ValidationError):
        Config.model_validate({"gatways": {}})


def test_state_limits_and_cache_defaults() -> None:
    config = load_config(None)
    assert (config.state.fail_open.rate_limit, config.state.fail_open.budget) == (True, False)
    assert config.server.cache_max_entry_bytes == 25 * 1024 * 1024
    assert config.server.cache_max_memory_bytes == 256 * 1024 * 1024
    gateway = config.gateways["default"]
    assert gateway.spend_limits == []
    assert gateway.rate_limit is None


def test_rate_limit_key_and_spend_rules(tmp_path: Path) -> None:
    text = """\
gateways:
  default:
    rate_limit: {limit: 100, window: 60, technique: fixed, key: metadata.user_id}
    spend_limits:
      - {id: daily, limit: 5, window: 86400}
      - id: per-user-gpt
        limit: 0.5
        window: 3600
        technique: fixed
        model: {mode: filter, values: [gpt-4o, openai/gpt-4o-mini]}
        provider: {mode: partition}
        metadata: {user_id: {mode: partition}, plan: {mode: filter, values: [free, 2, true]}}
state:
  fail_open: {rate_limit: false, budget: true}
"""
    config = load_config(write(tmp_path, text))
    gateway = config.gateways["default"]
    assert gateway.rate_limit is not None and gateway.rate_limit.key == "metadata.user_id"
    daily, per_user = gateway.spend_limits
    assert (daily.id, daily.limit, daily.window, daily.technique, daily.enabled) == ("daily", 5, 86400, "sliding", True)
    assert per_user.model is not None and per_user.model.values == ["gpt-4o", "openai/gpt-4o-mini"]
    assert per_user.provider is not None and per_user.provider.mode == "partition"
    assert per_user.metadata["plan"].values == ["free", "2", "true"]
    assert (config.state.fail_open.rate_limit, config.state.fail_open.budget) == (False, True)


def test_bad_limits_are_reported_by_key_path(tmp_path: Path) -> None:
    rules = ", ".join(f"{{id: r{i}, limit: 1, window: 60}}" for i in range(21))
    text = f"""\
gateways:
  a:
    rate_limit: {{limit: 1, window: 60, key: user}}
    spend_limits:
      - {{id: dup, limit: 1, window: 60}}
      - {{id: dup, limit: 0, window: 60, model: {{mode: filter}}, provider: {{mode: partition, values: [x]}}}}
      - {{id: "has space", limit: 1, window: 60, technique: leaky}}
  b:
    spend_limits: [{rules}]
"""
    problems = problems_of(write(tmp_path, text))
    assert (3, "gateways.a.rate_limit.key", "'user' must be 'token' or 'metadata.<key>'") in problems
    paths = {path for _, path, _ in problems}
    assert {
        "gateways.a.spend_limits[1].limit",
        "gateways.a.spend_limits[1].model",
        "gateways.a.spend_limits[1].provider",
        "gateways.a.spend_limits[2].id",
        "gateways.a.spend_limits[2].technique",
        "gateways.b.spend_limits",
    } <= paths
    by_path = {path: message for _, path, message in problems}
    assert by_path["gateways.a.spend_limits[1].model"] == "a filter needs at least one value"
    assert by_path["gateways.a.spend_limits[1].provider"] == "a partition takes no values"
    assert "at most 20" in by_path["gateways.b.spend_limits"]


def test_spend_rule_ids_are_unique_per_gateway() -> None:
    rule = {"id": "r", "limit": 1, "window": 60}
    with pytest.raises(ValidationError, match="duplicate spend rule id 'r'"):
        GatewayConfig.model_validate({"spend_limits": [rule, rule]})
