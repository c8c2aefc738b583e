"""Mongo-style conditions over metadata, headers and top-level body fields: every operator, nesting, types."""

from __future__ import annotations

from typing import Any

import pytest
from multidict import CIMultiDict

from switchpoint.routing.conditions import MISSING, RouteRequest, compile_condition, field_getter

REQUEST = RouteRequest.build(
    metadata={"plan": "paid", "user_id": "u-123", "tier": 3, "beta": True, "score": 0.5, "none": None},
    headers={"X-Region": "eu-west", "User-Agent": "openai-python/1.2"},
    body={"model": "dynamic/support", "max_tokens": 4096, "stream": True, "temperature": 0.2},
)


def matches(query: dict[str, Any], request: RouteRequest = REQUEST) -> bool:
    predicate, _ = compile_condition(query)
    return predicate(request)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        # implicit equality and $eq / $ne
        ({"metadata.plan": "paid"}, True),
        ({"metadata.plan": "free"}, False),
        ({"metadata.plan": {"$eq": "paid"}}, True),
        ({"metadata.plan": {"$ne": "paid"}}, False),
        ({"metadata.missing": {"$ne": "x"}}, True),
        ({"metadata.tier": 3}, True),
        ({"metadata.tier": 3.0}, True),
        ({"metadata.tier": "3"}, False),  # type-strict
        ({"metadata.beta": True}, True),
        ({"metadata.beta": 1}, False),  # true is not 1
        ({"metadata.tier": True}, False),
        ({"metadata.none": None}, True),
        ({"metadata.missing": None}, True),  # missing equals null only
        ({"metadata.missing": {"$eq": "x"}}, False),
        # order
        ({"metadata.tier": {"$gt": 2}}, True),
        ({"metadata.tier": {"$gt": 3}}, False),
        ({"metadata.tier": {"$gte": 3}}, True),
        ({"metadata.tier": {"$lt": 3}}, False),
        ({"metadata.tier": {"$lte": 3}}, True),
        ({"metadata.score": {"$gt": 0.25, "$lt": 0.75}}, True),
        ({"body.max_tokens": {"$gt": 4000}}, True),
        ({"metadata.plan": {"$gt": "free"}}, True),  # strings compare with strings
        ({"metadata.plan": {"$gt": 1}}, False),  # and never with numbers
        ({"metadata.beta": {"$gt": 0}}, False),  # booleans are not numbers
        ({"metadata.missing": {"$lt": 10}}, False),
        # membership
        ({"metadata.plan": {"$in": ["free", "paid"]}}, True),
        ({"metadata.plan": {"$in": ["free"]}}, False),
        ({"metadata.tier": {"$in": [1, 2, 3]}}, True),
        ({"metadata.tier": {"$in": ["3"]}}, False),
        ({"metadata.missing": {"$in": [None]}}, True),
        ({"metadata.plan": {"$nin": ["free"]}}, True),
        ({"metadata.plan": {"$nin": ["paid"]}}, False),
        ({"metadata.missing": {"$nin": ["x"]}}, True),
        # existence
        ({"metadata.plan": {"$exists": True}}, True),
        ({"metadata.missing": {"$exists": True}}, False),
        ({"metadata.missing": {"$exists": False}}, True),
        ({"metadata.none": {"$exists": True}}, True),  # present, with a null value
        # regex
        ({"metadata.user_id": {"$regex": "^u-\\d+$"}}, True),
        ({"metadata.user_id": {"$regex": "^U-"}}, False),
        ({"metadata.user_id": {"$regex": "^U-", "$options": "i"}}, True),
        ({"metadata.tier": {"$regex": "3"}}, False),  # only strings match
        ({"headers.user-agent": {"$regex": "openai-python"}}, True),
        # $not on a field
        ({"metadata.plan": {"$not": {"$in": ["free", "trial"]}}}, True),
        ({"metadata.user_id": {"$not": {"$regex": "^u-"}}}, False),
        ({"metadata.missing": {"$not": {"$gt": 1}}}, True),
        # headers are case-insensitive, body fields top-level
        ({"headers.x-region": "eu-west"}, True),
        ({"headers.X-REGION": "eu-west"}, True),
        ({"body.model": "dynamic/support"}, True),
        ({"body.stream": True}, True),
        # several keys: all must hold
        ({"metadata.plan": "paid", "body.stream": True}, True),
        ({"metadata.plan": "paid", "body.stream": False}, False),
    ],
)
def test_operators(query: dict[str, Any], expected: bool) -> None:
    assert matches(query) is expected


def test_logical_operators_nest() -> None:
    paid_eu = {"$and": [{"metadata.plan": "paid"}, {"headers.x-region": {"$regex": "^eu-"}}]}
    assert matches(paid_eu)
    assert not matches({"$not": paid_eu})
    either = {"$or": [{"metadata.plan": "free"}, {"$and": [{"metadata.tier": {"$gte": 3}}, {"body.stream": True}]}]}
    assert matches(either)
    neither = {"$or": [{"metadata.plan": "free"}, {"$not": {"$or": [{"metadata.tier": 3}, {"metadata.beta": True}]}}]}
    assert not matches(neither)
    deep = {
        "$and": [{"$or": [{"$not": {"metadata.plan": "free"}}, {"metadata.x": 1}]}, {"body.max_tokens": {"$lte": 4096}}]
    }
    assert matches(deep)
    # $or is not short-circuited into "first branch only": a later branch can match
    assert matches({"$or": [{"metadata.plan": "free"}, {"metadata.plan": "trial"}, {"metadata.tier": 3}]})


def test_fields_read_are_reported() -> None:
    _, fields = compile_condition({"$or": [{"metadata.plan": "a"}, {"metadata.plan": "b", "headers.x": "1"}]})
    assert fields == ("metadata.plan", "headers.x")


def test_cimultidict_headers_work_without_lowering() -> None:
    headers: CIMultiDict[str] = CIMultiDict({"X-Region": "eu-west"})
    assert matches({"headers.x-region": "eu-west"}, RouteRequest(headers=headers))


def test_field_getter_missing_sentinel() -> None:
    assert field_getter("metadata.nope")(REQUEST) is MISSING
    assert field_getter("body.max_tokens")(REQUEST) == 4096
    assert repr(MISSING) == "<missing>"
