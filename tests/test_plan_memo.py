"""`surfaces.planning.PlanMemo`: a remembered /compat plan is the plan `compat_target` makes afresh, for the
same registry, account, kind and client dialect only, and never one carrying a translator."""

from __future__ import annotations

from typing import Any

import orjson

from switchpoint.config import Config
from switchpoint.providers.base import Dialect
from switchpoint.providers.registry import build_registry
from switchpoint.surfaces.planning import CHAT, EMBEDDINGS, PLAN_MEMO_ENTRIES, Plan, PlanMemo, compat_target

REGISTRY = build_registry(Config())
CHAT_BODY = orjson.dumps(
    {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": True}
)
WORKERS = orjson.dumps({"model": "workers-ai/@cf/meta/llama-3.1-8b-instruct", "messages": []})


def plan(body: bytes, account: str = "acct", kind: str = CHAT, client: Dialect = Dialect.OPENAI) -> Plan:
    obj: Any = orjson.loads(body)
    stream = obj.get("stream") is True
    return Plan(compat_target(REGISTRY, account, obj, kind, client), stream)


def remembered(memo: PlanMemo, body: bytes, account: str = "acct", kind: str = CHAT) -> Plan | None:
    return memo.get(REGISTRY, account, kind, Dialect.OPENAI, body)


def same(a: Plan, b: Plan) -> bool:
    x, y = a.target, b.target
    return (x.provider, x.url, x.body, x.model, x.path, x.strip_usage, a.stream) == (
        y.provider, y.url, y.body, y.model, y.path, y.strip_usage, b.stream
    )  # fmt: skip


def test_a_remembered_plan_is_the_fresh_plan() -> None:
    memo = PlanMemo()
    for body in (CHAT_BODY, WORKERS):
        memo.put(REGISTRY, "acct", CHAT, Dialect.OPENAI, body, plan(body))
        known = remembered(memo, body)
        assert known is not None and same(known, plan(body))
    assert remembered(memo, CHAT_BODY).stream and remembered(memo, CHAT_BODY).target.strip_usage  # type: ignore[union-attr]


def test_plans_are_kept_apart_by_account_kind_dialect_and_registry() -> None:
    memo = PlanMemo()
    memo.put(REGISTRY, "acct", CHAT, Dialect.OPENAI, WORKERS, plan(WORKERS))
    assert remembered(memo, WORKERS, account="other") is None  # Workers AI URLs name the account
    assert remembered(memo, WORKERS, kind=EMBEDDINGS) is None
    assert memo.get(REGISTRY, "acct", CHAT, Dialect.ANTHROPIC, WORKERS) is None
    assert memo.get(build_registry(Config()), "acct", CHAT, Dialect.OPENAI, WORKERS) is None


def test_a_plan_with_a_translator_is_never_kept() -> None:
    memo = PlanMemo()
    body = orjson.dumps({"model": "anthropic/claude-sonnet-4-5", "messages": [{"role": "user", "content": "hi"}]})
    translated = plan(body)
    assert translated.target.translator is not None
    memo.put(REGISTRY, "acct", CHAT, Dialect.OPENAI, body, translated)
    assert remembered(memo, body) is None


def test_the_memo_is_bounded() -> None:
    memo = PlanMemo()
    first = plan(CHAT_BODY)
    for i in range(PLAN_MEMO_ENTRIES + 1):
        memo.put(REGISTRY, str(i), CHAT, Dialect.OPENAI, CHAT_BODY, first)
    assert len(memo._plans) <= PLAN_MEMO_ENTRIES
