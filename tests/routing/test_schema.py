"""The route document: both of Cloudflare's spellings in, the API spelling out; shape errors with paths."""

from __future__ import annotations

import pytest

from switchpoint.config import Config
from switchpoint.routing.schema import RouteInvalid, config_route, config_routes, config_version_id, parse_route
from tests.routing.builders import end, out, start

DOCS_SPELLING = {
    "elements": [
        start("c"),
        {"id": "c", "type": "conditional", "properties": {"condition": {"metadata.plan": "free"}},
         "outputs": out(true="rl", false="m")},
        {"id": "rl", "type": "rate_limit",
         "properties": {"limitType": "count", "key": "metadata.user_id", "limit": 100, "interval": 3600,
                        "technique": "fixed"},
         "outputs": out(success="m", fallback="end")},
        {"id": "m", "type": "model", "properties": {"provider": "openai", "model": "gpt-4o-mini", "timeout": 60000,
                                                    "retries": 4},
         "outputs": out(success="end", fallback="end"), "position": {"x": 1, "y": 2}},
        end(),
    ]
}  # fmt: skip


def test_docs_spelling_is_accepted_and_api_spelling_emitted() -> None:
    emitted = parse_route(DOCS_SPELLING).elements_json()
    assert emitted[1] == {
        "id": "c",
        "type": "conditional",
        "properties": {"conditions": {"metadata.plan": "free"}},
        "outputs": {"true": {"elementId": "rl"}, "false": {"elementId": "m"}},
    }
    assert emitted[2] == {
        "id": "rl",
        "type": "rate",
        "properties": {"key": "metadata.user_id", "limit": 100, "limitType": "count", "window": 3600,
                       "technique": "fixed"},
        "outputs": {"success": {"elementId": "m"}, "fallback": {"elementId": "end"}},
    }  # fmt: skip
    assert "position" not in emitted[3]  # editor metadata is dropped
    assert emitted[4] == {"id": "end", "type": "end", "outputs": {}}
    assert parse_route({"elements": emitted}).elements_json() == emitted  # normalizing twice changes nothing


def test_defaults_and_terraform_string_conditions() -> None:
    doc = {
        "elements": [
            {"id": "c", "type": "conditional", "properties": {"conditions": '{"metadata.plan": {"$eq": "paid"}}'},
             "outputs": {}},
            {"id": "r", "type": "rate", "properties": {"limit": 2.5, "window": 60}, "outputs": {}},
            {"id": "m", "type": "model", "properties": {"provider": "openai", "model": "x"}, "outputs": {}},
        ]
    }  # fmt: skip
    c, r, m = parse_route(doc).elements_json()
    assert c["properties"] == {"conditions": {"metadata.plan": {"$eq": "paid"}}}
    assert r["properties"] == {"limit": 2.5, "limitType": "count", "window": 60, "technique": "sliding"}
    assert m["properties"] == {"provider": "openai", "model": "x", "retries": 0}


@pytest.mark.parametrize(
    ("element", "field", "path"),
    [
        ({"id": "m", "type": "model", "properties": {"model": "x"}, "outputs": {}}, "properties.provider",
         ("elements", 0, "properties", "provider")),
        ({"id": "m", "type": "model", "properties": {"provider": "openai", "model": "x", "retries": 9}},
         "properties.retries", ("elements", 0, "properties", "retries")),
        ({"id": "r", "type": "rate", "properties": {"limit": 0, "window": 60}}, "properties.limit",
         ("elements", 0, "properties", "limit")),
        ({"id": "r", "type": "rate", "properties": {"limit": 1}}, "properties.window",
         ("elements", 0, "properties", "window")),
        ({"id": "r", "type": "rate", "properties": {"limit": 1, "window": 5, "technique": "leaky"}},
         "properties.technique", ("elements", 0, "properties", "technique")),
        ({"id": "r", "type": "rate", "properties": {"limit": 1, "window": 5, "limt": 3}}, "properties.limt",
         ("elements", 0, "properties", "limt")),
        ({"id": "c", "type": "conditional", "properties": {"conditions": "{not json"}}, "properties.conditions",
         ("elements", 0, "properties", "conditions")),
        ({"id": "x", "type": "router"}, "type", ("elements", 0, "type")),
        ({"id": "x"}, "type", ("elements", 0, "type")),
        ({"id": "s", "type": "start", "outputs": {"next": {}}}, "outputs.next.elementId",
         ("elements", 0, "outputs", "next", "elementId")),
    ],
)  # fmt: skip
def test_shape_errors_name_element_and_field(element: dict[str, object], field: str, path: tuple[object, ...]) -> None:
    with pytest.raises(RouteInvalid) as caught:
        parse_route({"elements": [element]})
    problems = caught.value.problems
    assert [(p.element_id, p.field, p.path) for p in problems] == [(element["id"], field, path)]
    assert caught.value.status == 400


def test_missing_elements_and_problem_text() -> None:
    with pytest.raises(RouteInvalid) as caught:
        parse_route({"name": "x"})
    [problem] = caught.value.problems
    assert (problem.element_id, problem.field, problem.path, problem.message) == (
        None,
        "elements",
        ("elements",),
        "Required",
    )
    assert str(problem) == "elements: Required"


def test_config_routes_are_read_only_records_with_content_versions() -> None:
    config = Config(routes={"support": DOCS_SPELLING})
    [record] = config_routes(config, "default")
    assert record.read_only and record.id == "config-support" and record.gateway == "default"
    assert record.version is not None and record.deployment is not None
    assert record.version.elements == parse_route(DOCS_SPELLING).elements_json()
    assert record.version.version_id == config_version_id(record.version.elements)
    assert record.deployment.version_id == record.version.version_id
    changed = config_route("support", {"elements": [start("end"), end()]}, "default")
    assert changed.version is not None and changed.version.version_id != record.version.version_id
