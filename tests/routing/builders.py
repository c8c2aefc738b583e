"""Route documents and a scripted upstream for the dynamic-routing tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from switchpoint.config import Config
from switchpoint.providers.registry import Registry, build_registry
from switchpoint.routing.attempts import RetryPolicy
from switchpoint.routing.compile import CompiledRoute, ModelStep, compile_route

REGISTRY: Registry = build_registry(Config(custom_providers={"acme": {"base_url": "https://llm.acme.example"}}))


def out(**targets: str) -> dict[str, Any]:
    return {name: {"elementId": target} for name, target in targets.items()}


def start(next_: str, id_: str = "start") -> dict[str, Any]:
    return {"id": id_, "type": "start", "outputs": out(next=next_)}


def end(id_: str = "end") -> dict[str, Any]:
    return {"id": id_, "type": "end", "outputs": {}}


def cond(id_: str, conditions: Any, true: str, false: str) -> dict[str, Any]:
    return {
        "id": id_,
        "type": "conditional",
        "properties": {"conditions": conditions},
        "outputs": out(true=true, false=false),
    }


def split(id_: str, outputs: dict[str, str], sticky: str | None = None) -> dict[str, Any]:
    element: dict[str, Any] = {"id": id_, "type": "percentage", "outputs": out(**outputs)}
    if sticky is not None:
        element["properties"] = {"sticky": sticky}
    return element


def rate(id_: str, success: str, fallback: str | None, **properties: Any) -> dict[str, Any]:
    outputs = out(success=success) if fallback is None else out(success=success, fallback=fallback)
    props = {"limitType": "count", "limit": 2, "window": 60, **properties}
    return {"id": id_, "type": "rate", "properties": props, "outputs": outputs}


def model(id_: str, success: str = "end", fallback: str = "end", **properties: Any) -> dict[str, Any]:
    props = {"provider": "openai", "model": f"gpt-{id_}", "timeout": 1000, "retries": 0, **properties}
    return {"id": id_, "type": "model", "properties": props, "outputs": out(success=success, fallback=fallback)}


def route(*elements: dict[str, Any], name: str = "r") -> CompiledRoute:
    return compile_route(name, {"elements": list(elements)}, REGISTRY)


@dataclass(eq=False)
class FakeAnswer:
    status: int
    retry_after: float | None = None
    releases: int = 0

    def release(self) -> None:
        self.releases += 1


@dataclass
class Upstream:
    """`send` plays each model element's script in order (a status, or an exception to raise); an element
    without a script answers 200. `sleep` records delays without sleeping."""

    scripts: dict[str, list[int | BaseException]] = field(default_factory=dict)
    sent: list[str] = field(default_factory=list)
    policies: list[RetryPolicy] = field(default_factory=list)
    answers: list[FakeAnswer] = field(default_factory=list)
    delays: list[float] = field(default_factory=list)

    async def send(self, step: ModelStep, policy: RetryPolicy) -> FakeAnswer:
        self.sent.append(step.element_id)
        self.policies.append(policy)
        script = self.scripts.get(step.element_id)
        item = script.pop(0) if script else 200
        if isinstance(item, BaseException):
            raise item
        answer = FakeAnswer(item)
        self.answers.append(answer)
        return answer

    async def sleep(self, delay: float) -> None:
        self.delays.append(delay)


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
