"""The path a request would take through a route, and why, without calling any model.

Every model is assumed to answer (so `success` is followed); rate elements ask `peek`, which consumes
nothing; a percentage split without a sticky value shows one random draw and says so.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

from switchpoint.routing.compile import (
    CompiledRoute,
    ConditionNode,
    EndNode,
    LimitNode,
    ModelNode,
    Node,
    SplitNode,
    StartNode,
)
from switchpoint.routing.conditions import MISSING, RouteRequest, field_getter
from switchpoint.routing.evaluate import COST_ESTIMATE, LimitPeek, Rng, pick_branch, split_point

_TYPES = {StartNode: "start", ConditionNode: "conditional", SplitNode: "percentage", LimitNode: "rate",
          ModelNode: "model", EndNode: "end"}  # fmt: skip


@dataclass(frozen=True, slots=True)
class ExplainStep:
    element_id: str
    type: str
    decision: str  # the output taken (`next`, `true`, `10%`, `success`, ...) or `end`
    next: str | None  # the element it leads to
    reason: str

    def as_json(self) -> dict[str, Any]:
        return {"element_id": self.element_id, "type": self.type, "decision": self.decision, "next": self.next,
                "reason": self.reason}  # fmt: skip


def _show(value: Any) -> str:
    return "missing" if value is MISSING else json.dumps(value, ensure_ascii=False, default=str)


async def explain(
    route: CompiledRoute, request: RouteRequest, peek: LimitPeek | None = None, rng: Rng = random.random
) -> list[ExplainStep]:
    """One step per element visited, from start to end."""
    steps: list[ExplainStep] = []
    node: Node = route.nodes[route.start]
    while True:
        decision, target, reason = await _step(node, request, peek, rng)
        steps.append(ExplainStep(node.id, _TYPES[type(node)], decision, target, reason))
        if target is None:
            return steps
        node = route.nodes[target]


async def _step(node: Node, request: RouteRequest, peek: LimitPeek | None, rng: Rng) -> tuple[str, str | None, str]:
    if isinstance(node, StartNode):
        return "next", node.next, "every request enters here"
    if isinstance(node, ConditionNode):
        return _condition(node, request)
    if isinstance(node, SplitNode):
        return _split(node, request, rng)
    if isinstance(node, LimitNode):
        return await _limit(node, request, peek)
    if isinstance(node, ModelNode):
        step = node.step
        timeout = f"{step.timeout_ms} ms to first byte" if step.timeout_ms else "the request's timeout"
        attempts = step.retries + 1
        reason = (
            f"calls {step.provider}/{step.model} ({attempts} attempt{'s' if attempts > 1 else ''}, {timeout}); "
            f"assumed to answer — on failure it would go to '{node.fallback}'"
        )
        return "success", node.success, reason
    return "end", None, "returns the last successful model answer"


def _condition(node: ConditionNode, request: RouteRequest) -> tuple[str, str | None, str]:
    matched = node.test(request)
    seen = ", ".join(f"{path} = {_show(field_getter(path)(request))}" for path in node.fields)
    verdict = "matches" if matched else "does not match"
    reason = f"{seen}: {verdict} {json.dumps(dict(node.source), ensure_ascii=False)}"
    return ("true", node.if_true, reason) if matched else ("false", node.if_false, reason)


def _split(node: SplitNode, request: RouteRequest, rng: Rng) -> tuple[str, str | None, str]:
    point, value = split_point(node, request, rng)
    label, target = pick_branch(node, point)
    shares = ", ".join(f"{lbl} → {tgt}" for _, lbl, tgt in node.branches)
    if value is not MISSING:
        how = f"sticky on {node.sticky_path} = {_show(value)}, which always lands at {point:.2f} of 100"
    elif node.sticky_path is not None:
        how = f"{node.sticky_path} is missing, so a random draw: {point:.2f} of 100"
    else:
        how = f"random draw: {point:.2f} of 100 (another call may differ)"
    return label, target, f"{how}; branches {shares}"


async def _limit(node: LimitNode, request: RouteRequest, peek: LimitPeek | None) -> tuple[str, str | None, str]:
    key = f"{node.key_path} = {_show(node.key(request))}" if node.key and node.key_path else "one shared bucket"
    kind = "budget" if node.cost else "count limit"
    what = f"{kind} {node.limit:g} per {node.window_s} s ({node.technique}), {key}"
    if peek is None:
        return "success", node.success, f"{what}: current usage unknown here, assumed under the limit"
    amount = COST_ESTIMATE if node.cost else 1.0
    if await peek.peek(node.bucket(request), amount, node.limit, node.window_s, node.technique):
        return "success", node.success, f"{what}: under the limit"
    if node.fallback is None:
        return "fallback", None, f"{what}: exhausted and there is no fallback, so the route ends here"
    return "fallback", node.fallback, f"{what}: exhausted"
