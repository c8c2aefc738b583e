"""Mongo-style route conditions, compiled once (regexes included) into closures over a `RouteRequest`.

Fields: `metadata.<key>`, `headers.<name>` (case-insensitive) and `body.<top-level field>`. Operators:
`$eq $ne $gt $gte $lt $lte $in $nin $exists $regex` (with `$options` from `imsx`) and `$not` on a field;
`$and $or $not` over whole conditions; a plain value is implicit equality; several keys in one object all
have to hold. Comparisons are type-strict as in MongoDB: `"5"` is not `5`, `true` is not `1`, and the order
operators compare numbers with numbers and strings with strings only (header values are always strings). A
missing field equals only `null`, so `$ne`, `$nin` and `{"$eq": null}` match it.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

__all__ = ["MISSING", "ConditionError", "RouteRequest", "compile_condition", "field_getter"]


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<missing>"


MISSING: Any = _Missing()
_NUMBERS = (int, float)
_SOURCES = "field paths start with metadata., headers. or body. (e.g. metadata.plan)"


@dataclass(frozen=True, slots=True)
class RouteRequest:
    """What a route may look at. `headers` must answer lowercase names (aiohttp's CIMultiDict does; `build`
    lowercases a plain dict)."""

    metadata: Mapping[str, Any] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        metadata: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> RouteRequest:
        lowered = {k.lower(): v for k, v in (headers or {}).items()}
        return cls(metadata or {}, lowered, body or {})


Getter = Callable[[RouteRequest], Any]
Predicate = Callable[[RouteRequest], bool]
_Test = Callable[[Any], bool]
_Where = tuple[str | int, ...]
T = TypeVar("T")


class ConditionError(Exception):
    """A condition that cannot compile; `where` is the path inside the condition object."""

    def __init__(self, where: _Where, message: str) -> None:
        super().__init__(message)
        self.where = where
        self.message = message


def field_getter(path: Any) -> Getter:
    """`metadata.plan` → a closure reading it from a request (`MISSING` when absent)."""
    source, _, key = path.partition(".") if isinstance(path, str) else ("", "", "")
    if not key:
        raise ConditionError((), f"{path!r}: {_SOURCES}")
    if source == "metadata":
        return lambda r: r.metadata.get(key, MISSING)
    if source == "headers":
        name = key.lower()
        return lambda r: r.headers.get(name, MISSING)
    if source == "body":
        if "." in key:
            raise ConditionError((), f"{path!r}: only top-level body fields can be read (like body.max_tokens)")
        return lambda r: r.body.get(key, MISSING)
    raise ConditionError((), f"{path!r}: {_SOURCES}")


def compile_condition(query: Any) -> tuple[Predicate, tuple[str, ...]]:
    """The predicate and the field paths it reads; raises `ConditionError` naming where the problem is."""
    fields: list[str] = []
    predicate = _query(query, (), fields)
    return predicate, tuple(dict.fromkeys(fields))


def _every(tests: list[Callable[[T], bool]]) -> Callable[[T], bool]:
    if len(tests) == 1:
        return tests[0]
    frozen = tuple(tests)

    def every(value: T) -> bool:
        for test in frozen:
            if not test(value):
                return False
        return True

    return every


def _some(tests: list[Callable[[T], bool]]) -> Callable[[T], bool]:
    frozen = tuple(tests)

    def some(value: T) -> bool:
        for test in frozen:
            if test(value):
                return True
        return False

    return some


def _negate(test: Callable[[T], bool]) -> Callable[[T], bool]:
    return lambda value: not test(value)


def _query(query: Any, where: _Where, fields: list[str]) -> Predicate:
    if not isinstance(query, Mapping) or not query:
        raise ConditionError(where, 'must be a non-empty object such as {"metadata.plan": {"$eq": "paid"}}')
    predicates: list[Predicate] = []
    for key, spec in query.items():
        here = (*where, key)
        if key in ("$and", "$or"):
            if not isinstance(spec, list) or not spec:
                raise ConditionError(here, f"{key} takes a non-empty list of conditions")
            parts = [_query(part, (*here, i), fields) for i, part in enumerate(spec)]
            predicates.append(_every(parts) if key == "$and" else _some(parts))
        elif key == "$not":
            predicates.append(_negate(_query(spec, here, fields)))
        elif key.startswith("$"):
            raise ConditionError(here, f"unknown operator '{key}' here; use $and, $or, $not or a field path")
        else:
            predicates.append(_field(key, spec, here, fields))
    return _every(predicates)


def _field(path: str, spec: Any, where: _Where, fields: list[str]) -> Predicate:
    try:
        field_getter(path)  # validates the path
    except ConditionError as exc:
        raise ConditionError(where, exc.message) from None
    fields.append(path)
    test = _value_test(spec, where)
    source, _, key = path.partition(".")  # the getter, fused into one closure per field (one call fewer)
    if source == "metadata":
        return lambda r: test(r.metadata.get(key, MISSING))
    if source == "headers":
        name = key.lower()
        return lambda r: test(r.headers.get(name, MISSING))
    return lambda r: test(r.body.get(key, MISSING))


def _value_test(spec: Any, where: _Where) -> _Test:
    if isinstance(spec, Mapping) and any(str(k).startswith("$") for k in spec):
        if not all(str(k).startswith("$") for k in spec):
            raise ConditionError(where, "mixes operators ($...) with plain keys")
        return _operators(spec, where)
    return _eq(spec, {}, where)


def _operators(spec: Mapping[str, Any], where: _Where) -> _Test:
    tests: list[_Test] = []
    for op, arg in spec.items():
        if op == "$options":
            if "$regex" not in spec:
                raise ConditionError((*where, op), "$options only goes with $regex")
            continue
        make = _OPERATORS.get(op)
        if make is None:
            supported = ", ".join(_OPERATORS)
            raise ConditionError((*where, op), f"unknown operator '{op}' (supported: {supported})")
        tests.append(make(arg, spec, (*where, op)))
    if not tests:
        raise ConditionError(where, "$options only goes with $regex")
    return _every(tests)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _equal(value: Any, expected: Any) -> bool:
    if value is MISSING:
        return expected is None
    if isinstance(value, bool) or isinstance(expected, bool):
        return value is expected
    return bool(value == expected)


def _eq(arg: Any, spec: Mapping[str, Any], where: _Where) -> _Test:
    if isinstance(arg, str):  # the common case: a plain string compare (MISSING never equals a string)
        return lambda value: value == arg
    return lambda value: _equal(value, arg)


def _ne(arg: Any, spec: Mapping[str, Any], where: _Where) -> _Test:
    return _negate(_eq(arg, spec, where))


def _ordering(compare: Callable[[Any, Any], bool]) -> Callable[[Any, Mapping[str, Any], _Where], _Test]:
    def make(arg: Any, spec: Mapping[str, Any], where: _Where) -> _Test:
        if isinstance(arg, str):
            return lambda value: type(value) is str and compare(value, arg)
        if _is_number(arg):  # `type(...) in` rather than a helper call: bool is neither int nor float here
            return lambda value: type(value) in _NUMBERS and compare(value, arg)
        raise ConditionError(where, f"{where[-1]} compares with a number or a string, not {arg!r}")

    return make


def _in(arg: Any, spec: Mapping[str, Any], where: _Where) -> _Test:
    if not isinstance(arg, list):
        raise ConditionError(where, f"{where[-1]} takes a list of values")
    if all(isinstance(candidate, str) for candidate in arg):  # the common case: a set lookup
        members = frozenset(arg)
        return lambda value: isinstance(value, str) and value in members
    values = tuple(arg)
    return lambda value: any(_equal(value, candidate) for candidate in values)


def _nin(arg: Any, spec: Mapping[str, Any], where: _Where) -> _Test:
    return _negate(_in(arg, spec, where))


def _exists(arg: Any, spec: Mapping[str, Any], where: _Where) -> _Test:
    if not isinstance(arg, bool):
        raise ConditionError(where, "$exists takes true or false")
    if arg:
        return lambda value: value is not MISSING
    return lambda value: value is MISSING


_FLAGS = {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL, "x": re.VERBOSE}


def _regex(arg: Any, spec: Mapping[str, Any], where: _Where) -> _Test:
    if not isinstance(arg, str):
        raise ConditionError(where, "$regex takes a pattern string")
    options = spec.get("$options", "")
    if not isinstance(options, str) or set(options) - set(_FLAGS):
        raise ConditionError((*where[:-1], "$options"), "$options is a string of the flags i, m, s and x")
    flags = 0
    for letter in options:
        flags |= _FLAGS[letter]
    try:
        search = re.compile(arg, flags).search
    except re.error as exc:
        raise ConditionError(where, f"invalid regular expression: {exc}") from None
    return lambda value: isinstance(value, str) and search(value) is not None


def _not(arg: Any, spec: Mapping[str, Any], where: _Where) -> _Test:
    if not isinstance(arg, Mapping) or not arg or not all(str(k).startswith("$") for k in arg):
        raise ConditionError(where, '$not takes an operator object such as {"$in": ["a", "b"]}')
    return _negate(_operators(arg, where))


_OPERATORS: dict[str, Callable[[Any, Mapping[str, Any], _Where], _Test]] = {
    "$eq": _eq,
    "$ne": _ne,
    "$gt": _ordering(operator.gt),
    "$gte": _ordering(operator.ge),
    "$lt": _ordering(operator.lt),
    "$lte": _ordering(operator.le),
    "$in": _in,
    "$nin": _nin,
    "$exists": _exists,
    "$regex": _regex,
    "$not": _not,
}
