"""The logs API's query vocabulary (Cloudflare's names) parsed into a typed `LogQuery`, for the API and the CLI.

Simple parameters (`provider=`, `min_cost=`, `start_date=`, `metadata.user=`) and `filters`, a JSON array of
`{key, operator, value}` with operators eq, neq, contains, lt, gt (and le, ge); every mistake is a
`BadRequest` naming the parameter. Repeating an equality parameter matches any of its values.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, get_args

import orjson

from switchpoint.errors import BadRequest
from switchpoint.store.logs import FIELDS, METADATA_PREFIX, ORDERABLE, Condition, Kind, LogQuery, Op

Pairs = Sequence[tuple[str, str]]
LIST_CONTROLS = frozenset({"order_by", "order_by_direction", "direction", "page", "per_page", "cursor", "meta_info"})
DELETE_CONTROLS = frozenset({"order_by", "order_by_direction", "direction", "limit"})
MAX_PER_PAGE = 1000
_ALIASES = {"status": "status_code", "total_tokens": "tokens"}
_EQ_PARAMS = frozenset(
    {"id", "gateway", "provider", "model", "event_id", "user_agent", "path", "surface", "method", "status_code"}
    | {"success", "cached", "stream", "feedback"}
)
_RANGE_PARAMS = frozenset({"cost", "duration", "ttfb", "tokens_in", "tokens_out", "tokens", "score"})
_OPS: tuple[str, ...] = get_args(Op)
_ONE_VALUE_OPS = frozenset({"lt", "gt", "le", "ge"})
_METADATA_KEY = re.compile(r'^[^"\\]{1,128}$')
_BOOLS = {"true": True, "1": True, "false": False, "0": False}
_INT_LIMIT = 2**31  # the integer columns are 32-bit on PostgreSQL


def parse_time(name: str, raw: Any) -> float:
    """A Unix timestamp or an ISO-8601 time (UTC when it names no offset), as epoch seconds."""
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return float(raw)
    try:
        return float(raw)
    except (TypeError, ValueError):
        pass
    try:
        moment = datetime.fromisoformat(str(raw))
    except ValueError:
        raise BadRequest(f"{name}: '{raw}' is neither an ISO-8601 time nor a Unix timestamp") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _number(name: str, raw: Any, kind: type[int] | type[float]) -> int | float:
    if isinstance(raw, bool):
        raise BadRequest(f"{name}: expected a number, got {raw!r}")
    try:
        value = kind(raw)
    except (TypeError, ValueError, OverflowError):
        raise BadRequest(f"{name}: expected {'an integer' if kind is int else 'a number'}, got {raw!r}") from None
    if kind is int and not -_INT_LIMIT <= value < _INT_LIMIT:
        raise BadRequest(f"{name}: {raw!r} is out of range")
    return value


def _value(name: str, kind: Kind, raw: Any) -> Any:
    """One filter value of `kind`; feedback 0 means thumbs down (-1), as in Cloudflare's `feedback=0|1`."""
    if kind == "time":
        return parse_time(name, raw)
    if kind == "bool":
        value = raw if isinstance(raw, bool) else _BOOLS.get(str(raw).lower())
        if value is None:
            raise BadRequest(f"{name}: expected true or false, got {raw!r}")
        return value
    if kind in ("int", "float"):
        number = _number(name, raw, int if kind == "int" else float)
        return -1 if name == "feedback" and number == 0 else number
    if not isinstance(raw, str | int | float):
        raise BadRequest(f"{name}: expected text, got {raw!r}")
    return str(raw)


def check_metadata_key(name: str) -> None:
    """`metadata.<key>` with a key that can be put in a JSON path safely."""
    if not _METADATA_KEY.match(name[len(METADATA_PREFIX) :]):
        raise BadRequest(f"'{name}': a metadata key is 1-128 characters without quotes or backslashes")


def _field(key: str) -> tuple[str, Kind]:
    if key.startswith(METADATA_PREFIX):
        check_metadata_key(key)
        return key, "str"
    key = _ALIASES.get(key, key)
    if key not in FIELDS:
        raise BadRequest(f"filters: unknown key '{key}'")
    return key, FIELDS[key][1]


def _filter(item: Any) -> Condition:
    if not isinstance(item, dict) or not {"key", "operator", "value"} <= set(item):
        raise BadRequest("filters: each filter is an object with key, operator and value")
    name, kind = _field(str(item["key"]))
    op = item["operator"]
    if op not in _OPS:
        raise BadRequest(f"filters: operator '{op}' is not one of {', '.join(_OPS)}")
    raw = item["value"] if isinstance(item["value"], list) else [item["value"]]
    if not raw or (op in _ONE_VALUE_OPS and len(raw) != 1):
        raise BadRequest(f"filters: '{op}' on '{name}' takes {'one value' if op in _ONE_VALUE_OPS else 'values'}")
    if (op == "contains" and kind != "str") or (op in _ONE_VALUE_OPS and kind in ("str", "bool")):
        raise BadRequest(f"filters: '{op}' does not apply to '{name}'")
    return Condition(name, op, tuple(_value(name, kind, v) for v in raw))


def _filters(raw: str) -> list[Condition]:
    try:
        items = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest("filters: not valid JSON (a JSON array of {key, operator, value})") from None
    return [_filter(item) for item in (items if isinstance(items, list) else [items])]


def _simple(key: str, raw: str, equal: dict[str, list[Any]]) -> Condition | None:
    """A plain parameter: an equality (collected into `equal`), a range bound or the time range."""
    if key in ("start_date", "end_date"):
        return Condition("created_at", "ge" if key == "start_date" else "le", (parse_time(key, raw),))
    bound, _, rest = key.partition("_")
    rest = _ALIASES.get(rest, rest)
    if bound in ("min", "max") and rest in _RANGE_PARAMS:
        return Condition(rest, "ge" if bound == "min" else "le", (_value(key, FIELDS[rest][1], raw),))
    name = _ALIASES.get(key, key)
    if name in _EQ_PARAMS or name.startswith(METADATA_PREFIX):
        name, kind = _field(name)
        equal.setdefault(name, []).append(_value(key, kind, raw))
        return None
    raise BadRequest(f"unknown query parameter '{key}'")


def _int_param(name: str, raw: str, low: int, high: int | None = None) -> int:
    value = int(_number(name, raw, int))
    if value < low or (high is not None and value > high):
        raise BadRequest(f"{name}: must be between {low} and {high}" if high else f"{name}: must be at least {low}")
    return value


def _controls(gateway: str | None, conditions: tuple[Condition, ...], ctl: dict[str, str]) -> LogQuery:
    order_by = _ALIASES.get(ctl.get("order_by", "created_at"), ctl.get("order_by", "created_at"))
    if order_by not in ORDERABLE:
        raise BadRequest(f"order_by: one of {', '.join(ORDERABLE)}")
    direction = ctl.get("order_by_direction", ctl.get("direction", "desc")).lower()
    if direction not in ("asc", "desc"):
        raise BadRequest("order_by_direction: asc or desc")
    cursor = ctl.get("cursor") or None
    page = _int_param("page", ctl.get("page", "1"), 1)
    if cursor is not None and (order_by != "created_at" or page != 1):
        raise BadRequest("cursor: pages by created_at only, and replaces page")
    return LogQuery(
        gateway,
        conditions,
        order_by,
        direction == "desc",
        per_page=_int_param("per_page", ctl.get("per_page", "20"), 1, MAX_PER_PAGE),
        page=page,
        cursor=cursor,
        meta_info=_value("meta_info", "bool", ctl.get("meta_info", "false")),
        limit=_int_param("limit", ctl["limit"], 1) if "limit" in ctl else None,
    )


def parse_log_query(gateway: str | None, pairs: Pairs, controls: frozenset[str] = LIST_CONTROLS) -> LogQuery:
    """The query string's (key, value) pairs as a `LogQuery`; `controls` are the paging/order names allowed."""
    conditions: list[Condition] = []
    equal: dict[str, list[Any]] = {}
    ctl: dict[str, str] = {}
    for key, raw in pairs:
        if key in controls:
            ctl[key] = raw
        elif key == "filters":
            conditions += _filters(raw)
        elif (cond := _simple(key, raw, equal)) is not None:
            conditions.append(cond)
    conditions += [Condition(name, "eq", tuple(values)) for name, values in equal.items()]
    return _controls(gateway, tuple(conditions), ctl)


def parse_patch(body: Any) -> dict[str, Any]:
    """A PATCH body's `feedback` (-1, 0 = clear, 1), `score` (0-100) and `metadata` (at most 5 scalars)."""
    if not isinstance(body, dict) or not body or not set(body) <= {"feedback", "score", "metadata"}:
        raise BadRequest("PATCH body: a JSON object with feedback, score and/or metadata")
    values: dict[str, Any] = {}
    if "feedback" in body:
        feedback = body["feedback"]
        if feedback not in (None, -1, 0, 1) or isinstance(feedback, bool | float):
            raise BadRequest("feedback: -1 (thumbs down), 1 (thumbs up), or 0/null to clear")
        values["feedback"] = feedback or None
    if "score" in body:
        score = body["score"]
        if score is not None and (
            isinstance(score, bool) or not isinstance(score, int | float) or not 0 <= score <= 100
        ):
            raise BadRequest("score: a number from 0 to 100, or null")
        values["score"] = score
    if "metadata" in body:
        values["metadata"] = _patch_metadata(body["metadata"])
    return values


def _patch_metadata(metadata: Any) -> dict[str, Any] | None:
    if metadata is None:
        return None
    scalars = (str, int, float, bool)
    if (
        not isinstance(metadata, dict)
        or len(metadata) > 5
        or not all(isinstance(v, scalars) for v in metadata.values())
    ):
        raise BadRequest("metadata: an object of at most 5 entries whose values are strings, numbers or booleans")
    return metadata
