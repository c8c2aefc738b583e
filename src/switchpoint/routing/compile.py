"""Route document → immutable `CompiledRoute`: every validation rule lives here, conditions become closures.

`compile_route` collects every problem (shape, outputs, graph, providers, conditions, percentages) before
raising `RouteInvalid`, each naming the element id and the field. Evaluating the result is a walk over frozen
nodes (`routing.evaluate`); nothing is parsed per call.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

from switchpoint.config import Config
from switchpoint.routing.attempts import RetryPolicy
from switchpoint.routing.conditions import MISSING, ConditionError, Getter, Predicate, compile_condition, field_getter
from switchpoint.routing.schema import (
    ConditionalElement,
    Element,
    EndElement,
    ModelElement,
    PercentageElement,
    RateElement,
    RouteDocument,
    RouteInvalid,
    RouteProblem,
    StartElement,
    check_name,
    config_version_id,
    parse_route,
)

__all__ = ["MISSING", "CompiledRoute", "RouteTable", "build_route_table", "compile_route"]

MAX_PERCENTAGE_OUTPUTS = 5
_PERCENT = re.compile(r"(\d{1,3}(?:\.\d+)?)%")
_MODEL_ID = re.compile(r"[^\s\x00-\x1f\x7f]{1,256}")
# output names each element type must have, and may have
_REQUIRED = {"start": ("next",), "conditional": ("true", "false"), "rate": ("success",),
             "model": ("success", "fallback")}  # fmt: skip
_ALLOWED = {"start": {"next"}, "conditional": {"true", "false"}, "rate": {"success", "fallback"},
            "model": {"success", "fallback"}, "end": set()}  # fmt: skip


class ProviderRecord(Protocol):
    @property
    def name(self) -> str: ...


class ProviderRegistry(Protocol):
    """What compiling needs from `providers.registry.Registry` (routing may not import providers)."""

    @property
    def by_slug(self) -> Mapping[str, object]: ...

    def for_compat(self, prefix: str) -> ProviderRecord | None: ...


@dataclass(frozen=True, slots=True)
class ModelStep:
    """One model element as the caller's `send` sees it."""

    element_id: str
    provider: str  # the provider's registry slug (`registry.get(step.provider)`), aliases resolved
    model: str
    timeout_ms: int | None
    retries: int


@dataclass(frozen=True, slots=True)
class StartNode:
    id: str
    next: str


@dataclass(frozen=True, slots=True)
class ConditionNode:
    id: str
    test: Predicate
    if_true: str
    if_false: str
    fields: tuple[str, ...]  # the request paths the condition reads (for explain)
    source: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class SplitNode:
    id: str
    branches: tuple[tuple[float, str, str], ...]  # (cumulative upper bound in [0, 100], label, target)
    sticky: Getter | None
    sticky_path: str | None
    salt: str  # route and element, so two splits keyed on the same value are independent


@dataclass(frozen=True, slots=True)
class LimitNode:
    id: str
    key: Getter | None
    key_path: str | None
    limit: float
    cost: bool  # limitType "cost" (a budget) rather than "count"
    window_s: int
    technique: str
    success: str
    fallback: str | None
    bucket_prefix: str

    def bucket(self, request: Any) -> str:
        """One bucket per key value; a request without the key shares the route's `-` bucket."""
        value = MISSING if self.key is None else self.key(request)
        return self.bucket_prefix + ("-" if value is MISSING or value is None else f"={value}")


@dataclass(frozen=True, slots=True)
class ModelNode:
    id: str
    step: ModelStep
    success: str
    fallback: str
    policy: RetryPolicy  # retries and timeout, no delay: what a request with default retry options gets


@dataclass(frozen=True, slots=True)
class EndNode:
    id: str


Node = StartNode | ConditionNode | SplitNode | LimitNode | ModelNode | EndNode


@dataclass(frozen=True, slots=True)
class CompiledRoute:
    gateway: str
    name: str
    start: str
    nodes: Mapping[str, Node]
    version_id: str | None = None


def compile_route(
    name: str, doc: Any, registry: ProviderRegistry, *, gateway: str = "default", version_id: str | None = None
) -> CompiledRoute:
    """Validate and compile `doc` (`{"elements": [...]}`, a `RouteDocument`); the argument `name` wins over
    any name inside the document. Raises `RouteInvalid` listing every problem."""
    problems: list[RouteProblem] = []
    if (bad_name := check_name(name)) is not None:
        problems.append(bad_name)
    try:
        document = parse_route(doc)
    except RouteInvalid as exc:
        raise RouteInvalid(problems + exc.problems, name) from None
    builder = _Builder(name, gateway, registry, problems)
    nodes = builder.build(document)
    if problems:
        raise RouteInvalid(problems, name)
    start = next(n.id for n in nodes.values() if isinstance(n, StartNode))
    return CompiledRoute(gateway, name, start, MappingProxyType(nodes), version_id)


@dataclass
class _Builder:
    name: str
    gateway: str
    registry: ProviderRegistry
    problems: list[RouteProblem]
    index: dict[str, int] = field(default_factory=dict)

    def fail(self, i: int | None, element: Element | None, where: tuple[str | int, ...], message: str) -> None:
        path = ("elements",) if i is None else ("elements", i, *where)
        where_text = ".".join(map(str, where)) or "elements"
        self.problems.append(RouteProblem(element.id if element else None, where_text, message, path))

    def build(self, document: RouteDocument) -> dict[str, Node]:
        elements = document.elements
        for i, element in enumerate(elements):
            if element.id in self.index:
                self.fail(i, element, ("id",), f"duplicate id (also element {self.index[element.id]})")
            else:
                self.index[element.id] = i
        nodes: dict[str, Node] = {}
        for i, element in enumerate(elements):
            node = self.node(i, element)
            if node is not None and element.id not in nodes:
                nodes[element.id] = node
        _check_graph(self, elements)
        return nodes

    def node(self, i: int, e: Element) -> Node | None:
        targets = self.outputs(i, e)
        if isinstance(e, StartElement):
            return StartNode(e.id, targets.get("next", ""))
        if isinstance(e, ConditionalElement):
            return self.conditional(i, e, targets)
        if isinstance(e, PercentageElement):
            return self.percentage(i, e, targets)
        if isinstance(e, RateElement):
            return self.rate(i, e, targets)
        if isinstance(e, ModelElement):
            return self.model(i, e, targets)
        return EndNode(e.id)

    def outputs(self, i: int, e: Element) -> dict[str, str]:
        """Check output names and targets; returns name → target id for the outputs that are usable."""
        if not isinstance(e, PercentageElement):
            for name in _REQUIRED.get(e.type, ()):
                if name not in e.outputs:
                    needed = " and ".join(_REQUIRED[e.type])
                    self.fail(i, e, ("outputs", name), f"Required: a {e.type} element needs the outputs {needed}")
            for name in e.outputs:
                if name not in _ALLOWED[e.type]:
                    allowed = ", ".join(sorted(_ALLOWED[e.type])) or "none"
                    self.fail(i, e, ("outputs", name), f"unknown output for a {e.type} element (allowed: {allowed})")
        targets: dict[str, str] = {}
        for name, out in e.outputs.items():
            target = self.index.get(out.elementId)
            where = ("outputs", name, "elementId")
            if target is None:
                self.fail(i, e, where, f"points to '{out.elementId}', which is not an element of this route")
            elif out.elementId == e.id:
                self.fail(i, e, where, "points to its own element (a cycle)")
            else:
                targets[name] = out.elementId
        return targets

    def conditional(self, i: int, e: ConditionalElement, targets: dict[str, str]) -> Node | None:
        try:
            test, fields = compile_condition(e.properties.conditions)
        except ConditionError as exc:
            self.fail(i, e, ("properties", "conditions", *exc.where), exc.message)
            return None
        source = MappingProxyType(dict(e.properties.conditions))
        return ConditionNode(e.id, test, targets.get("true", ""), targets.get("false", ""), fields, source)

    def percentage(self, i: int, e: PercentageElement, targets: dict[str, str]) -> Node | None:
        ok = len(self.problems)
        named = [(name, _share(name)) for name in e.outputs if name != "else"]
        for name, share in named:
            if share is None:
                self.fail(i, e, ("outputs", name), "percentage outputs are named like '25%' (or 'else')")
        if len(named) > MAX_PERCENTAGE_OUTPUTS:
            self.fail(i, e, ("outputs",), f"{len(named)} named percentages; at most {MAX_PERCENTAGE_OUTPUTS}")
        if not e.outputs:
            self.fail(i, e, ("outputs",), "Required (at least one percentage output)")
        total = sum(share or 0.0 for _, share in named)
        if total > 100.0 + 1e-9:
            self.fail(i, e, ("outputs",), f"percentages add up to {total:g}%, more than 100%")
        elif total < 100.0 - 1e-9 and "else" not in e.outputs:
            self.fail(i, e, ("outputs", "else"), f"Required: percentages add up to {total:g}%; 'else' takes the rest")
        sticky_path = e.properties.sticky if e.properties else None
        sticky = self.getter(i, e, ("properties", "sticky"), sticky_path)
        if len(self.problems) > ok:
            return None
        branches, bound = [], 0.0
        for name, share in named:
            bound += share or 0.0
            branches.append((bound, name, targets.get(name, "")))
        if "else" in e.outputs:
            branches.append((float("inf"), "else", targets.get("else", "")))
        elif branches:  # shares sum to 100: float error must not leave a gap at the top
            branches[-1] = (float("inf"), branches[-1][1], branches[-1][2])
        return SplitNode(e.id, tuple(branches), sticky, sticky_path, f"{self.gateway}/{self.name}/{e.id}")

    def rate(self, i: int, e: RateElement, targets: dict[str, str]) -> Node | None:
        p = e.properties
        key = self.getter(i, e, ("properties", "key"), p.key)
        if p.key is not None and key is None:
            return None
        prefix = f"route:{self.gateway}/{self.name}/{e.id}"
        cost = p.limitType == "cost"
        success, fallback = targets.get("success", ""), targets.get("fallback")
        return LimitNode(e.id, key, p.key, p.limit, cost, p.window, p.technique, success, fallback, prefix)

    def model(self, i: int, e: ModelElement, targets: dict[str, str]) -> Node | None:
        p = e.properties
        provider = self.registry.for_compat(p.provider) if p.provider != "dynamic" else None
        if provider is None:
            known = ", ".join(sorted(self.registry.by_slug))
            self.fail(i, e, ("properties", "provider"), f"unknown provider '{p.provider}' (known: {known})")
        if not _MODEL_ID.fullmatch(p.model):
            self.fail(i, e, ("properties", "model"), "malformed model id (no spaces or control characters)")
        if provider is None or not _MODEL_ID.fullmatch(p.model):
            return None
        step = ModelStep(e.id, provider.name, p.model, p.timeout, p.retries)
        policy = RetryPolicy(p.retries + 1, first_byte_timeout_ms=p.timeout)
        return ModelNode(e.id, step, targets.get("success", ""), targets.get("fallback", ""), policy)

    def getter(self, i: int, e: Element, where: tuple[str, ...], path: str | None) -> Getter | None:
        if path is None:
            return None
        try:
            return field_getter(path)
        except ConditionError as exc:
            self.fail(i, e, where, exc.message)
            return None


def _share(name: str) -> float | None:
    match = _PERCENT.fullmatch(name)
    if match is None or not 0 < float(match.group(1)) <= 100:
        return None
    return float(match.group(1))


def _check_graph(b: _Builder, elements: list[Element]) -> None:
    """One start, at least one end, everything reachable from the start, no cycles."""
    starts = [(i, e) for i, e in enumerate(elements) if isinstance(e, StartElement)]
    if not starts:
        b.fail(None, None, (), "no element has type 'start'")
    for i, extra in starts[1:]:
        b.fail(i, extra, ("type",), f"a second start element (the first is '{starts[0][1].id}')")
    if not any(isinstance(e, EndElement) for e in elements):
        b.fail(None, None, (), "no element has type 'end'")
    edges = {e.id: [(n, o.elementId) for n, o in e.outputs.items() if o.elementId in b.index] for e in elements}
    start_ids = {e.id for _, e in starts}
    for i, e in enumerate(elements):
        for name, target in edges[e.id]:
            if target in start_ids:
                b.fail(i, e, ("outputs", name, "elementId"), f"points to the start element '{target}'")
    if starts:
        seen = _reachable(starts[0][1].id, edges)
        for i, e in enumerate(elements):
            if e.id not in seen:
                b.fail(i, e, ("id",), "unreachable: no path from the start element leads here")
    _check_cycles(b, elements, edges)


def _reachable(start: str, edges: Mapping[str, list[tuple[str, str]]]) -> set[str]:
    seen, todo = {start}, [start]
    while todo:
        for _, target in edges.get(todo.pop(), ()):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def _check_cycles(b: _Builder, elements: list[Element], edges: Mapping[str, list[tuple[str, str]]]) -> None:
    """Iterative DFS; an edge back into the current path closes a cycle, reported at the element it leaves."""
    done: set[str] = set()
    for root in edges:
        if root in done:
            continue
        path: list[str] = [root]
        stack = [iter(edges[root])]
        while stack:
            step = next(stack[-1], None)
            if step is None:
                done.add(path.pop())
                stack.pop()
                continue
            name, target = step
            here = path[-1]
            if target in path and target != here:
                loop = " → ".join([*path[path.index(target) :], target])
                i = b.index[here]
                b.fail(i, elements[i], ("outputs", name, "elementId"), f"creates a cycle: {loop}")
            elif target not in done and target not in path:
                path.append(target)
                stack.append(iter(edges[target]))


# -- the live table -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RouteTable:
    """Every live route by (gateway, name), swapped whole when the store's route counter moves."""

    version: int = -1
    routes: Mapping[tuple[str, str], CompiledRoute] = field(default_factory=lambda: MappingProxyType({}))
    problems: tuple[str, ...] = ()  # routes left out because they no longer compile (log these)

    def get(self, gateway: str, name: str) -> CompiledRoute | None:
        return self.routes.get((gateway, name))


def build_route_table(
    config: Config,
    registry: ProviderRegistry,
    stored: Mapping[tuple[str, str], tuple[str, list[dict[str, Any]]]],
    version: int,
) -> RouteTable:
    """Config routes (on every gateway; they win over stored ones of the same name) plus the stored live
    versions, `(gateway, name) -> (version_id, elements)`. A route that fails to compile is left out."""
    routes: dict[tuple[str, str], CompiledRoute] = {}
    problems: list[str] = []
    for gateway in config.gateways:
        for name, doc in config.routes.items():
            raw = doc.get("elements")
            try:
                routes[(gateway, name)] = compile_route(
                    name, {"elements": raw}, registry, gateway=gateway, version_id=config_version_id(raw)
                )
            except RouteInvalid as exc:
                problems.append(f"config route '{name}' (gateway '{gateway}'): {exc.message}")
    for (gateway, name), (version_id, elements) in stored.items():
        if (gateway, name) in routes:
            problems.append(f"stored route '{name}' (gateway '{gateway}') is shadowed by the config file")
            continue
        try:
            routes[(gateway, name)] = compile_route(
                name, {"elements": elements}, registry, gateway=gateway, version_id=version_id
            )
        except RouteInvalid as exc:
            problems.append(f"stored route '{name}' (gateway '{gateway}') version {version_id}: {exc.message}")
    return RouteTable(version, MappingProxyType(routes), tuple(problems))
