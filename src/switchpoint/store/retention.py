"""Log retention: delete records older than an age, or beyond a count (`delete_oldest`), or stop inserting
at the count (`stop_inserting`: the writer drops new records, counted and logged, never silently).

Deletes go in batches (`logs.DELETE_BATCH`), oldest first, each its own short transaction, so retention
never holds a long lock; on PostgreSQL autovacuum reclaims the space as it goes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import Connection, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from switchpoint.store.logs import Condition, LogQuery, adelete_logs, c
from switchpoint.store.tables import logs

_log = logging.getLogger("switchpoint.logs")


@dataclass(frozen=True, slots=True)
class LogRetention:
    """How long and how many records to keep; `stop_inserting` drops new records (counted) at the cap."""

    max_age_s: float | None = None
    max_records: int | None = None
    strategy: Literal["delete_oldest", "stop_inserting"] = "delete_oldest"
    interval_s: float = 60.0


def _nth_oldest(conn: Connection, n: int, /) -> tuple[float, str] | None:
    """(created_at, id) of the `n`-th oldest record: deleting through it is exact, and idempotent when
    several workers enforce the same cap at once."""
    stmt = select(c.created_at, c.id).order_by(c.created_at, c.id).offset(n - 1).limit(1)
    row = conn.execute(stmt).first()
    return None if row is None else (row[0], row[1])


class RetentionKeeper:
    """Enforces a `LogRetention` every `interval_s` (`run`) and, as the writer's `Capacity`, caps inserts.

    Counts are exact at each pass and tracked in between from this process's writes; with several
    workers each keeps its own count, so `stop_inserting` may overshoot by what the others wrote since.
    Deletes go in batches of DELETE_BATCH, oldest first, each its own short transaction; they are exact
    and idempotent, so workers enforcing at once do not over-delete, but one deleting worker is enough
    (`deletes=False` in the others: they only count, for `stop_inserting`).
    """

    def __init__(
        self, engine: AsyncEngine, policy: LogRetention, clock: Callable[[], float] = time.time, deletes: bool = True
    ) -> None:
        self._engine = engine
        self.policy = policy
        self._clock = clock
        self._deletes = deletes
        self.count: int | None = None  # None until the first pass

    def admit(self, count: int) -> int:
        """How many of `count` new records may be stored now."""
        cap = self.policy.max_records
        if self.policy.strategy != "stop_inserting" or cap is None or self.count is None:
            return count
        return max(0, min(count, cap - self.count))

    def wrote(self, count: int) -> None:
        """Count records the writer stored since the last pass."""
        if self.count is not None:
            self.count += count

    async def enforce(self) -> int:
        """One pass: delete by age, then (delete_oldest) down to max_records; returns how many went."""
        deleted = 0
        if self._deletes and self.policy.max_age_s is not None:
            too_old = Condition("created_at", "lt", (self._clock() - self.policy.max_age_s,))
            deleted += await adelete_logs(self._engine, LogQuery(None, (too_old,), descending=False))
        async with self._engine.connect() as conn:
            self.count = int(await conn.scalar(select(func.count()).select_from(logs)) or 0)
        cap = self.policy.max_records
        if self._deletes and cap is not None and self.policy.strategy == "delete_oldest" and self.count > cap:
            async with self._engine.connect() as conn:
                last = await conn.run_sync(_nth_oldest, self.count - cap)
            if last is not None:
                trimmed = await adelete_logs(self._engine, LogQuery(None, descending=False), through=last)
                deleted, self.count = deleted + trimmed, self.count - trimmed
        return deleted

    async def run(self) -> None:
        """Enforce forever; a failed pass (store down) is logged and retried at the next interval."""
        while True:
            try:
                deleted = await self.enforce()
                if deleted:
                    _log.info("log retention deleted %d record(s); %s remain", deleted, self.count)
            except Exception:  # the store being down must not end retention for good
                _log.warning("log retention pass failed; retrying in %.0f s", self.policy.interval_s, exc_info=True)
            await asyncio.sleep(self.policy.interval_s)
