"""The YAML config file as frozen pydantic models, with `${ENV}` interpolation and errors that name each
bad key's dotted path and line; `load_config` is the one way in."""

from __future__ import annotations

import datetime
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo

BUILTIN_PROVIDERS: tuple[str, ...] = (
    "openai",
    "anthropic",
    "workers-ai",
    "groq",
    "deepseek",
    "mistral",
    "openrouter",
    "grok",
    "cerebras",
    "perplexity-ai",
    "moonshot",
)
DATA_DIR_ENV = "SWITCHPOINT_DATA_DIR"
DEFAULT_DATA_DIR = Path("~/.local/share/switchpoint")

_GATEWAY_ID = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_-]{0,63}")
_SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
_HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")
_ENV_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _gateway_id(value: str) -> str:
    if not _GATEWAY_ID.fullmatch(value):
        raise ValueError(f"gateway id {value!r} must match ^{_GATEWAY_ID.pattern}$")
    return value


def _slug(value: str) -> str:
    if not _SLUG.fullmatch(value):
        raise ValueError(f"custom provider slug {value!r} must match ^{_SLUG.pattern}$")
    return value


def _builtin_provider(value: str) -> str:
    if value not in BUILTIN_PROVIDERS:
        raise ValueError(f"{value!r} is not a built-in provider (one of: {', '.join(BUILTIN_PROVIDERS)})")
    return value


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an http:// or https:// URL")
    return value.rstrip("/")


def _url_path(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError("must start with '/'")
    return value


def _header_name(value: str) -> str:
    if not _HEADER_NAME.fullmatch(value):
        raise ValueError(f"{value!r} is not a valid HTTP header name")
    return value.lower()


def _scalar_text(value: object) -> object:
    """Header values written unquoted (`2023-06-01`, `2`) arrive as dates or numbers; send them as text."""
    if isinstance(value, bool):
        raise ValueError("YAML reads unquoted true/false/yes/no/on/off as a boolean; quote the value")
    return str(value) if isinstance(value, int | float | datetime.date) else value


GatewayId = Annotated[str, AfterValidator(_gateway_id)]
Slug = Annotated[str, AfterValidator(_slug)]
BuiltinProvider = Annotated[str, AfterValidator(_builtin_provider)]
HttpUrl = Annotated[str, AfterValidator(_http_url)]
UrlPath = Annotated[str, AfterValidator(_url_path)]
HeaderName = Annotated[str, AfterValidator(_header_name)]
Headers = dict[HeaderName, Annotated[str, BeforeValidator(_scalar_text)]]


class _Model(BaseModel):
    """Frozen, unknown keys rejected; a key left empty in YAML (`providers:`) takes its default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _empty_means_default(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        fields = cls.model_fields
        return {k: v for k, v in data.items() if not (v is None and k in fields and _has_default(fields[k]))}


def _has_default(field: FieldInfo) -> bool:
    return not field.is_required() and field.get_default(call_default_factory=True) is not None


class RetryConfig(_Model):
    max_attempts: int = Field(default=1, ge=1, le=5)
    delay_ms: int = Field(default=0, ge=0, le=5000)
    backoff: Literal["constant", "linear", "exponential"] = "constant"


Technique = Literal["fixed", "sliding"]
_LIMIT_KEY = re.compile(r"token|metadata\.[^\s]{1,64}")
_RULE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
MAX_SPEND_RULES = 20


def _limit_key(value: str) -> str:
    if not _LIMIT_KEY.fullmatch(value):
        raise ValueError(f"{value!r} must be 'token' or 'metadata.<key>'")
    return value


def _rule_id(value: str) -> str:
    if not _RULE_ID.fullmatch(value):
        raise ValueError(f"rule id {value!r} must match ^{_RULE_ID.pattern}$")
    return value


def metadata_text(value: object) -> str:
    """One spelling per `cf-aig-metadata` scalar, shared by config filters and request values (`true`, `3`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class RateLimitConfig(_Model):
    limit: PositiveInt
    window: PositiveInt
    technique: Technique = "sliding"
    # None = one bucket for the whole gateway; "token" = per gateway token; "metadata.<k>" = per value of k.
    key: Annotated[str, AfterValidator(_limit_key)] | None = None


class SpendDimension(_Model):
    """How a spend rule uses one request attribute: `partition` keeps one bucket per distinct value,
    `filter` applies the rule only to the listed values."""

    mode: Literal["filter", "partition"]
    values: list[Annotated[str, BeforeValidator(metadata_text)]] = []

    @model_validator(mode="after")
    def _values_match_mode(self) -> SpendDimension:
        if self.mode == "filter" and not self.values:
            raise ValueError("a filter needs at least one value")
        if self.mode == "partition" and self.values:
            raise ValueError("a partition takes no values")
        return self


class SpendRule(_Model):
    """A cost limit in USD per window, shaped after Cloudflare's spend-limit rules."""

    id: Annotated[str, AfterValidator(_rule_id)]
    enabled: bool = True
    limit: PositiveFloat
    window: PositiveInt
    technique: Technique = "sliding"
    model: SpendDimension | None = None
    provider: SpendDimension | None = None
    metadata: dict[str, SpendDimension] = {}


class GatewayConfig(_Model):
    authentication: bool = False
    collect_logs: bool = True
    cache_ttl: NonNegativeInt = 0
    rate_limit: RateLimitConfig | None = None
    retries: RetryConfig = RetryConfig()
    request_timeout_ms: PositiveInt | None = None
    account_id: str | None = None
    spend_limits: list[SpendRule] = Field(default=[], max_length=MAX_SPEND_RULES)

    @field_validator("spend_limits")
    @classmethod
    def _unique_rule_ids(cls, rules: list[SpendRule]) -> list[SpendRule]:
        seen: set[str] = set()
        for rule in rules:
            if rule.id in seen:
                raise ValueError(f"duplicate spend rule id {rule.id!r}")
            seen.add(rule.id)
        return rules


class ProviderOverride(_Model):
    base_url: HttpUrl | None = None
    headers: Headers = {}


class CustomProviderConfig(_Model):
    base_url: HttpUrl
    format: Literal["openai", "anthropic"] = "openai"
    compat_path: UrlPath = "/v1/chat/completions"
    embeddings_path: UrlPath = "/v1/embeddings"
    auth_header: HeaderName = "authorization"
    headers: Headers = {}


class ServerConfig(_Model):
    max_body_bytes: PositiveInt = 33_554_432
    connect_timeout_ms: PositiveInt = 10_000
    idle_timeout_ms: PositiveInt = 300_000
    upstream_pool_size: PositiveInt = 4096
    log_queue_size: PositiveInt = 50_000
    cache_max_entry_bytes: PositiveInt = 25 * 1024 * 1024  # larger answers are served but not cached
    cache_max_memory_bytes: PositiveInt = 256 * 1024 * 1024  # the in-process cache, LRU by bytes


class FailOpenConfig(_Model):
    """Per feature: when shared state is unreachable, let calls through (true) or refuse them (false).
    The response cache always fails open."""

    rate_limit: bool = True
    budget: bool = False


class StateConfig(_Model):
    fail_open: FailOpenConfig = FailOpenConfig()


class LogsConfig(_Model):
    """Log retention: by age, by count, or both; at the cap either the oldest go or new ones are dropped
    (counted and logged loudly, never silently)."""

    retention_days: PositiveFloat | None = None
    max_records: PositiveInt | None = None
    strategy: Literal["delete_oldest", "stop_inserting"] = "delete_oldest"


class Config(_Model):
    data_dir: Path = Field(default=DEFAULT_DATA_DIR, validate_default=True)
    database_url: str | None = None
    redis_url: str | None = None
    # Bearer token for the management API (`/client/v4/accounts/{a}/ai-gateway/...`); unset = API off.
    admin_token: str | None = Field(default=None, min_length=16)
    gateways: dict[GatewayId, GatewayConfig] = Field(default_factory=lambda: {"default": GatewayConfig()})
    providers: dict[BuiltinProvider, ProviderOverride] = {}
    custom_providers: dict[Slug, CustomProviderConfig] = {}
    routes: dict[str, dict[str, Any]] = {}
    # per `provider/model`: USD per million tokens (input, output, cache_read, cache_write, reasoning)
    prices: dict[str, dict[str, float]] = {}
    server: ServerConfig = ServerConfig()
    state: StateConfig = StateConfig()
    logs: LogsConfig = LogsConfig()

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        try:
            return value.expanduser().absolute()
        except RuntimeError as exc:  # `~user` for an unknown user
            raise ValueError(str(exc)) from None


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with the config: dotted key path (`""` for the file itself), 1-based line, message."""

    path: str
    line: int | None
    message: str


class ConfigError(Exception):
    """Every problem found in one config file; `str()` is the report printed to the operator."""

    def __init__(self, source: str, problems: list[ConfigProblem]) -> None:
        super().__init__(source, problems)
        self.source = source
        self.problems = sorted(problems, key=lambda p: (p.line is None, p.line or 0))

    def __str__(self) -> str:
        return "\n".join([f"invalid config {self.source}:", *map(self._line, self.problems)])

    def _line(self, problem: ConfigProblem) -> str:
        where = self.source if problem.line is None else f"{self.source}:{problem.line}"
        return "  " + ": ".join(part for part in (where, problem.path, problem.message) if part)


_Key = tuple[str | int, ...]


def load_config(path: Path | None, data_dir: Path | None = None) -> Config:
    """Read, interpolate and validate the config; `data_dir` (the CLI flag) beats `$SWITCHPOINT_DATA_DIR`,
    which beats the file. `path=None` means all defaults. Raises `ConfigError` listing every problem."""
    source = "(defaults)" if path is None else str(path)
    raw, lines, problems = ({}, {}, []) if path is None else _read(path, source)
    raw, missing = _interpolate(raw, ())
    problems += [_problem(key, lines, f"environment variable {name} is not set") for key, name in missing]
    override = data_dir or os.environ.get(DATA_DIR_ENV) or None
    if override is not None:
        raw = {**raw, "data_dir": override}
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        problems += _validation_problems(exc, lines, skip={key for key, _ in missing})
        raise ConfigError(source, problems) from None
    if problems:
        raise ConfigError(source, problems)
    return config


def _read(path: Path, source: str) -> tuple[dict[str, Any], dict[_Key, int], list[ConfigProblem]]:
    data, lines = _parse(_read_text(path, source), source)
    if data is None:
        return {}, lines.lines, lines.problems
    if not isinstance(data, dict):
        raise ConfigError(source, [ConfigProblem("", lines.lines.get((), 1), "top level must be a mapping")])
    return data, lines.lines, lines.problems


def _read_text(path: Path, source: str) -> str:
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(source, [ConfigProblem("", None, "file does not exist")]) from None
    except OSError as exc:
        raise ConfigError(source, [ConfigProblem("", None, f"cannot read file: {exc.strerror}")]) from None
    try:
        return blob.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = blob[: exc.start].count(b"\n") + 1
        raise ConfigError(source, [ConfigProblem("", line, "file is not valid UTF-8")]) from None


def _parse(text: str, source: str) -> tuple[Any, _LineMap]:
    """JSON goes through `json` (exact numbers, tab indents, surrogate pairs), YAML through SafeLoader;
    both are composed into YAML nodes for line numbers (in valid JSON a tab can only be whitespace)."""
    try:
        data = json.loads(text)
    except ValueError:
        return _load_yaml(text, source)
    try:
        return data, _LineMap(yaml.compose(text.replace("\t", " "), Loader=yaml.SafeLoader))
    except yaml.YAMLError:
        return data, _LineMap(None)


def _load_yaml(text: str, source: str) -> tuple[Any, _LineMap]:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        lines = _LineMap(node)  # walk before constructing: merge keys (`<<`) rewrite the nodes
        return (None if node is None else loader.construct_document(node)), lines
    except yaml.YAMLError as exc:
        raise ConfigError(source, [_yaml_problem(exc)]) from None
    finally:
        loader.dispose()


def _yaml_problem(exc: yaml.YAMLError) -> ConfigProblem:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    message = f"invalid YAML: {problem}" + (f" ({context})" if context else "")
    return ConfigProblem("", None if mark is None else mark.line + 1, message)


class _LineMap:
    """Line of every key and list item, by key path, from the composed YAML nodes; flags duplicate keys.
    A node reached twice (an alias) is walked once, so its second place falls back to the alias's key."""

    def __init__(self, root: yaml.Node | None) -> None:
        self.lines: dict[_Key, int] = {(): 1 if root is None else root.start_mark.line + 1}
        self.problems: list[ConfigProblem] = []
        self._seen: set[int] = set()
        if root is not None:
            self._walk(root, ())

    def _walk(self, node: yaml.Node, key: _Key) -> None:
        if id(node) in self._seen:
            return
        self._seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            self._walk_mapping(node, key)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self._enter(item, (*key, index), item.start_mark.line + 1)

    def _walk_mapping(self, node: yaml.MappingNode, key: _Key) -> None:
        first: dict[str, int] = {}
        for key_node, value in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue
            line = key_node.start_mark.line + 1
            name = key_node.value
            if name in first:
                message = f"duplicate key (the one on line {first[name]} is ignored)"
                self.problems.append(ConfigProblem(_dotted((*key, name)), line, message))
            first.setdefault(name, line)
            self._enter(value, (*key, name), line)

    def _enter(self, node: yaml.Node, key: _Key, line: int) -> None:
        self.lines[key] = line
        self._walk(node, key)


def _interpolate(value: Any, key: _Key) -> tuple[Any, list[tuple[_Key, str]]]:
    """Expand `${VAR}` / `${VAR:-default}` in every string value; returns the unset variables by key path."""
    missing: list[tuple[_Key, str]] = []
    return _expand(value, key, missing), missing


def _expand(value: Any, key: _Key, missing: list[tuple[_Key, str]]) -> Any:
    if isinstance(value, str):
        return _ENV_VAR.sub(lambda match: _lookup(match, key, missing), value)
    if isinstance(value, dict):
        return {k: _expand(v, (*key, str(k)), missing) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, (*key, i), missing) for i, v in enumerate(value)]
    return value


def _lookup(match: re.Match[str], key: _Key, missing: list[tuple[_Key, str]]) -> str:
    name, default = match.group(1), match.group(2)
    found = os.environ.get(name)
    if default is not None and not found:  # like the shell: `:-` also covers set-but-empty
        return default
    if found is None:
        missing.append((key, name))
        return ""
    return found


def _validation_problems(exc: ValidationError, lines: dict[_Key, int], skip: set[_Key]) -> list[ConfigProblem]:
    """One problem per pydantic error, except at keys already reported as unset environment variables."""
    problems = []
    for error in exc.errors(include_url=False):
        key = tuple(part for part in error["loc"] if part != "[key]")
        if key in skip:
            continue
        ctx = error.get("ctx") or {}
        message = _MESSAGES.get(error["type"]) or (
            str(ctx["error"]) if error["type"] == "value_error" and "error" in ctx else error["msg"]
        )
        problems.append(_problem(key, lines, message))
    return problems


_MESSAGES = {"extra_forbidden": "unknown key", "missing": "required key is missing"}


def _problem(key: _Key, lines: dict[_Key, int], message: str) -> ConfigProblem:
    """The line is that of the key, or of its nearest ancestor present in the file."""
    line = next((lines[key[:n]] for n in range(len(key), -1, -1) if key[:n] in lines), None)
    return ConfigProblem(_dotted(key), line, message)


def _dotted(key: _Key) -> str:
    """`("gateways", "default", "retries")` -> `gateways.default.retries`; list items as `[0]`."""
    text = ""
    for part in key:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text
