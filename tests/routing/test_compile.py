"""`compile_route`: every validation rule names the element id and the field; a good route compiles frozen."""

from __future__ import annotations

from dataclasses import FrozenInstanceError
from typing import Any

import pytest

from switchpoint.config import Config
from switchpoint.routing.compile import (
    ConditionNode,
    EndNode,
    LimitNode,
    ModelNode,
    SplitNode,
    StartNode,
    build_route_table,
    compile_route,
)
from switchpoint.routing.schema import RouteInvalid
from tests.routing.builders import REGISTRY, cond, end, model, out, rate, route, split, start


def problems(*elements: dict[str, Any], name: str = "r") -> list[tuple[str | None, str]]:
    with pytest.raises(RouteInvalid) as caught:
        compile_route(name, {"elements": list(elements)}, REGISTRY)
    return [(p.element_id, p.field) for p in caught.value.problems]


def test_every_element_type_compiles_into_frozen_nodes() -> None:
    compiled = route(
        start("c"),
        cond("c", {"metadata.plan": "paid"}, "s", "r"),
        split("s", {"50%": "m1", "else": "m2"}, sticky="metadata.user_id"),
        rate("r", "m1", "m2", key="metadata.user_id", limitType="cost", limit=5, window=86400, technique="fixed"),
        model("m1", fallback="m2", provider="workers-ai", model="@cf/moonshotai/kimi-k2.6", retries=2),
        model("m2", provider="custom-acme", model="x", timeout=None),
        end(),
    )
    nodes = compiled.nodes
    assert compiled.start == "start" and isinstance(nodes["start"], StartNode)
    assert isinstance(nodes["c"], ConditionNode) and nodes["c"].fields == ("metadata.plan",)
    s = nodes["s"]
    assert isinstance(s, SplitNode) and [(b[1], b[2]) for b in s.branches] == [("50%", "m1"), ("else", "m2")]
    r = nodes["r"]
    assert isinstance(r, LimitNode) and (r.cost, r.limit, r.window_s, r.technique) == (True, 5, 86400, "fixed")
    m1 = nodes["m1"]
    assert isinstance(m1, ModelNode)
    assert (m1.step.provider, m1.step.model, m1.step.timeout_ms, m1.step.retries) == (
        "workers-ai", "@cf/moonshotai/kimi-k2.6", 1000, 2,
    )  # fmt: skip
    assert m1.policy.max_attempts == 3 and m1.policy.first_byte_timeout_ms == 1000
    assert isinstance(nodes["end"], EndNode)
    with pytest.raises(FrozenInstanceError):
        compiled.start = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        compiled.nodes["x"] = nodes["end"]  # type: ignore[index]


def test_missing_start_and_end() -> None:
    assert problems(model("m")) == [
        ("m", "outputs.success.elementId"), ("m", "outputs.fallback.elementId"),
        (None, "elements"), (None, "elements"),
    ]  # fmt: skip


def test_two_starts() -> None:
    assert ("s2", "type") in problems(start("end"), start("end", id_="s2"), end())


def test_duplicate_ids() -> None:
    assert problems(start("end"), end(), end()) == [("end", "id")]


def test_dangling_output() -> None:
    assert problems(start("nowhere"), end()) == [("start", "outputs.next.elementId"), ("end", "id")]


def test_missing_outputs_per_type() -> None:
    found = problems(
        {"id": "start", "type": "start", "outputs": {}},
        {"id": "c", "type": "conditional", "properties": {"conditions": {"metadata.a": 1}}, "outputs": out(true="end")},
        end(),
    )
    assert ("start", "outputs.next") in found and ("c", "outputs.false") in found


def test_unknown_output_names() -> None:
    assert problems(start("m"), model("m") | {"outputs": out(success="end", fallback="end", failure="end")}, end()) == [
        ("m", "outputs.failure")
    ]
    found = problems(start("end"), end() | {"outputs": out(next="start")})
    assert found[0] == ("end", "outputs.next")  # then: it points to the start, and closes a loop
    assert set(found[1:]) == {("end", "outputs.next.elementId")}


def test_unreachable_element() -> None:
    assert problems(start("end"), model("orphan"), end()) == [("orphan", "id")]


def test_cycles_and_self_loops() -> None:
    found = problems(
        start("a"), model("a", success="b", fallback="end"), model("b", success="a", fallback="end"), end()
    )
    assert found == [("b", "outputs.success.elementId")]
    assert problems(start("a"), model("a", success="a", fallback="end"), end()) == [("a", "outputs.success.elementId")]
    assert problems(start("a"), model("a", success="start", fallback="end"), end()) == [
        ("a", "outputs.success.elementId"), ("a", "outputs.success.elementId"),  # points to start, and loops
    ]  # fmt: skip


def test_unknown_provider_and_malformed_model() -> None:
    assert problems(start("m"), model("m", provider="nope"), end()) == [("m", "properties.provider")]
    assert problems(start("m"), model("m", provider="dynamic"), end()) == [("m", "properties.provider")]
    assert problems(start("m"), model("m", model="gpt 4o"), end()) == [("m", "properties.model")]
    assert problems(start("m"), model("m", model="gpt\n"), end()) == [("m", "properties.model")]


def test_compat_aliases_resolve_to_the_slug() -> None:
    alias = next((a for p in REGISTRY.by_slug.values() for a in p.compat_aliases), None)
    if alias is None:
        pytest.skip("no provider has a /compat alias")
    compiled = route(start("m"), model("m", provider=alias), end())
    node = compiled.nodes["m"]
    assert isinstance(node, ModelNode) and node.step.provider in REGISTRY.by_slug


@pytest.mark.parametrize(
    ("outputs", "field"),
    [
        ({"60%": "end", "50%": "end"}, "outputs"),  # over 100%
        ({"10%": "end", "20%": "end", "5%": "end", "1%": "end", "2%": "end", "3%": "end", "else": "end"}, "outputs"),
        ({"half": "end", "else": "end"}, "outputs.half"),
        ({"0%": "end", "else": "end"}, "outputs.0%"),
        ({"150%": "end"}, "outputs.150%"),
        ({"30%": "end"}, "outputs.else"),  # the remainder goes nowhere
        ({}, "outputs"),
    ],
)
def test_percentage_rules(outputs: dict[str, str], field: str) -> None:
    assert ("p", field) in problems(start("p"), split("p", outputs), end())


def test_percentage_sum_of_exactly_100_needs_no_else() -> None:
    compiled = route(start("p"), split("p", {"33.3%": "end", "66.7%": "end"}), end())
    node = compiled.nodes["p"]
    assert isinstance(node, SplitNode) and node.branches[-1][0] == float("inf")


@pytest.mark.parametrize(
    ("conditions", "field"),
    [
        ({"metadata.a": {"$foo": 1}}, "properties.conditions.metadata.a.$foo"),
        ({"$xor": [{"metadata.a": 1}]}, "properties.conditions.$xor"),
        ({"plan": "paid"}, "properties.conditions.plan"),
        ({"cookies.a": 1}, "properties.conditions.cookies.a"),
        ({"body.a.b": 1}, "properties.conditions.body.a.b"),
        ({"metadata.a": {"$in": "x"}}, "properties.conditions.metadata.a.$in"),
        ({"metadata.a": {"$gt": [1]}}, "properties.conditions.metadata.a.$gt"),
        ({"metadata.a": {"$exists": 1}}, "properties.conditions.metadata.a.$exists"),
        ({"metadata.a": {"$regex": "("}}, "properties.conditions.metadata.a.$regex"),
        ({"metadata.a": {"$regex": "a", "$options": "q"}}, "properties.conditions.metadata.a.$options"),
        ({"metadata.a": {"$options": "i"}}, "properties.conditions.metadata.a.$options"),
        ({"metadata.a": {"$not": 3}}, "properties.conditions.metadata.a.$not"),
        ({"metadata.a": {"$eq": 1, "b": 2}}, "properties.conditions.metadata.a"),
        ({"$and": []}, "properties.conditions.$and"),
        ({"$or": [{"metadata.a": 1}, {"metadata.b": {"$bad": 1}}]}, "properties.conditions.$or.1.metadata.b.$bad"),
        ({}, "properties.conditions"),
    ],
)
def test_bad_conditions(conditions: dict[str, Any], field: str) -> None:
    assert problems(start("c"), cond("c", conditions, "end", "end"), end()) == [("c", field)]


def test_bad_limit_key_and_sticky_path() -> None:
    assert problems(start("r"), rate("r", "end", "end", key="user"), end()) == [("r", "properties.key")]
    assert problems(start("p"), split("p", {"else": "end"}, sticky="ip"), end()) == [("p", "properties.sticky")]


def test_route_name_is_checked() -> None:
    assert problems(start("end"), end(), name="bad name!") == [(None, "name")]


def test_route_table_config_wins_and_broken_routes_are_left_out() -> None:
    good = [start("m"), model("m"), end()]
    config = Config(gateways={"a": {}, "b": {}}, routes={"cfg": {"elements": good}})
    stored = {
        ("a", "mine"): ("v1", good),
        ("a", "cfg"): ("v2", good),
        ("b", "broken"): ("v3", [start("end")]),
    }
    table = build_route_table(config, REGISTRY, stored, version=7)
    assert table.version == 7
    assert sorted(table.routes) == [("a", "cfg"), ("a", "mine"), ("b", "cfg")]
    cfg = table.get("a", "cfg")
    mine = table.get("a", "mine")
    assert cfg is not None and cfg.version_id is not None and cfg.version_id.startswith("config-")
    assert mine is not None and mine.version_id == "v1" and mine.gateway == "a"
    assert table.get("b", "broken") is None and table.get("b", "mine") is None
    assert len(table.problems) == 2 and "shadowed" in table.problems[0] and "broken" in table.problems[1]
