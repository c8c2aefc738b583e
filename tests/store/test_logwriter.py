"""The log writer: exact parity of what is submitted and what is stored, through outages, full queues, close."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from switchpoint.store import db
from switchpoint.store.logwriter import LogWriter, decode_record, encode_record
from switchpoint.store.tables import logs

Factory = Callable[..., dict[str, Any]]


async def stored(engine: AsyncEngine) -> dict[str, dict[str, Any]]:
    async with engine.connect() as conn:
        return {r.id: dict(r._mapping) for r in await conn.execute(select(logs))}


def by_id(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in records}


def spooled_lines(spool: Path) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    for path in (spool.with_name(spool.name + ".draining"), spool):
        if path.exists():
            lines += [decode_record(line) for line in path.read_bytes().splitlines()]
    return lines


async def wait_until(cond: Callable[[], bool], within_s: float = 10.0) -> None:
    deadline = time.monotonic() + within_s
    while not cond():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    return tmp_path / "spool" / "logs.ndjson"


@pytest.fixture
async def down_engine(tmp_path: Path) -> Any:
    """An engine on a database whose directory does not exist yet: every write fails until it is migrated."""
    eng = db.async_engine(db.StoreUrls.resolve(None, tmp_path / "later"))
    yield eng
    await eng.dispose()


def test_spool_encoding_is_exact(make_record: Factory) -> None:
    record = make_record(7, request_body=bytes(range(256)) * 3, response_body=None, metadata=None)
    line = encode_record(record)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert decode_record(line) == record
    record = make_record(8)
    assert decode_record(encode_record(record)) == record  # metadata's own "$b64" key stays a string


async def test_every_submitted_record_is_written(aengine: AsyncEngine, spool: Path, make_record: Factory) -> None:
    records = [make_record(i) for i in range(1234)]
    writer = LogWriter(aengine, spool, batch_size=100, flush_interval=0.01)
    await writer.start()
    for r in records:
        writer.submit(r)
    await writer.close()
    assert await stored(aengine) == by_id(records)
    assert writer.counters == {
        "accepted": 1234, "written": 1234, "spooled": 0, "dropped": 0, "rejected": 0,
        "queue_depth": 0, "spool_bytes": 0,
    }  # fmt: skip


async def test_records_are_written_without_close(aengine: AsyncEngine, spool: Path, make_record: Factory) -> None:
    writer = LogWriter(aengine, spool, flush_interval=0.05)
    await writer.start()
    for i in range(3):
        writer.submit(make_record(i))
    await wait_until(lambda: writer.counters["written"] == 3)
    assert len(await stored(aengine)) == 3
    await writer.close()


async def test_missing_custom_cost_defaults_to_false(aengine: AsyncEngine, spool: Path, make_record: Factory) -> None:
    record = make_record(1)
    del record["custom_cost"]
    writer = LogWriter(aengine, spool)
    await writer.start()
    writer.submit(record)
    await writer.close()
    assert (await stored(aengine))[record["id"]]["custom_cost"] is False


async def test_store_outage_spools_then_drains(
    tmp_path: Path, down_engine: AsyncEngine, spool: Path, make_record: Factory
) -> None:
    records = [make_record(i) for i in range(50)]
    writer = LogWriter(down_engine, spool, batch_size=20, flush_interval=0.01)
    await writer.start()
    for r in records:
        writer.submit(r)
    await wait_until(lambda: writer.counters["spooled"] == 50)
    assert writer.counters["written"] == 0 and writer.counters["spool_bytes"] > 0
    assert by_id(spooled_lines(spool)) == by_id(records)

    await asyncio.to_thread(db.migrate, db.StoreUrls.resolve(None, tmp_path / "later"))
    await wait_until(lambda: writer.counters["written"] == 50)
    assert await stored(down_engine) == by_id(records)
    await writer.close()
    assert writer.counters["spool_bytes"] == 0 and list(spool.parent.iterdir()) == []


async def test_full_queue_spills_to_spool(aengine: AsyncEngine, spool: Path, make_record: Factory) -> None:
    records = [make_record(i) for i in range(20)]
    writer = LogWriter(aengine, spool, queue_size=5, flush_interval=0.01)
    for r in records:
        writer.submit(r)  # not started: the queue fills after 5
    assert writer.counters["queue_depth"] == 5 and writer.counters["spooled"] == 15
    assert by_id(spooled_lines(spool)) == by_id(records[5:])
    await writer.start()
    await writer.close()
    assert await stored(aengine) == by_id(records)
    c = writer.counters
    assert (c["accepted"], c["written"], c["spooled"], c["queue_depth"], c["spool_bytes"]) == (20, 20, 15, 0, 0)


async def test_close_with_store_down_leaves_everything_in_spool(
    tmp_path: Path, down_engine: AsyncEngine, spool: Path, make_record: Factory
) -> None:
    records = [make_record(i) for i in range(30)]
    writer = LogWriter(down_engine, spool, batch_size=7, flush_interval=0.01)
    await writer.start()
    for r in records:
        writer.submit(r)
    started = time.monotonic()
    await writer.close(timeout=0.5)
    assert time.monotonic() - started < 2.0
    assert by_id(spooled_lines(spool)) == by_id(records)
    c = writer.counters
    assert c["accepted"] == 30 and c["written"] == 0 and c["dropped"] == 0 and c["spool_bytes"] > 0

    await asyncio.to_thread(db.migrate, db.StoreUrls.resolve(None, tmp_path / "later"))
    second = LogWriter(down_engine, spool)
    await second.start()
    await second.close()
    assert await stored(down_engine) == by_id(records)
    assert second.counters["written"] == 30 and second.counters["spool_bytes"] == 0


async def test_records_arriving_while_the_spool_drains_are_kept(
    tmp_path: Path, down_engine: AsyncEngine, spool: Path, make_record: Factory
) -> None:
    first = [make_record(i) for i in range(300)]
    later = [make_record(i) for i in range(300, 600)]
    writer = LogWriter(down_engine, spool, batch_size=10, flush_interval=0.005, queue_size=20)
    await writer.start()
    for r in first:
        writer.submit(r)
    await wait_until(lambda: writer.counters["spooled"] == 300)
    await asyncio.to_thread(db.migrate, db.StoreUrls.resolve(None, tmp_path / "later"))
    for i in range(0, 300, 15):  # keep submitting while the spool is replayed batch by batch
        for r in later[i : i + 15]:
            writer.submit(r)
        await asyncio.sleep(0.01)
    await writer.close()
    assert await stored(down_engine) == by_id(first + later)
    assert writer.counters["written"] == 600 and writer.counters["spool_bytes"] == 0


async def test_replay_after_a_crash_skips_stored_ids(aengine: AsyncEngine, spool: Path, make_record: Factory) -> None:
    records = [make_record(i) for i in range(20)]
    async with aengine.begin() as conn:  # a previous process stored half of them, then died
        await conn.execute(insert(logs), records[:10])
    spool.parent.mkdir()
    draining = spool.with_name(spool.name + ".draining")
    draining.write_bytes(b"".join(map(encode_record, records)) + b'{"id": "torn li')
    writer = LogWriter(aengine, spool, batch_size=6)
    await writer.start()
    await writer.close()
    assert await stored(aengine) == by_id(records)
    assert not draining.exists()
    assert writer.counters["rejected"] == 1
    assert writer.rejected_path.read_bytes() == b'{"id": "torn li\n'


async def test_fresh_records_with_stored_ids_keep_the_stored_rows(
    aengine: AsyncEngine, spool: Path, make_record: Factory
) -> None:
    first = [make_record(i) for i in range(10)]
    again = [make_record(i, cost=99.0) for i in range(5, 15)]  # 5..9 already stored
    for batch in (first, again):
        writer = LogWriter(aengine, spool, flush_interval=0.01)
        await writer.start()
        for r in batch:
            writer.submit(r)
        await writer.close()
    assert await stored(aengine) == by_id(first + again[5:])
    assert (writer.counters["written"], writer.counters["rejected"], writer.counters["spooled"]) == (10, 0, 0)


async def test_a_refused_record_is_set_aside(aengine: AsyncEngine, spool: Path, make_record: Factory) -> None:
    good = [make_record(i) for i in range(10)]
    bad = make_record(99, gateway=None)  # violates NOT NULL
    writer = LogWriter(aengine, spool, flush_interval=0.01)
    await writer.start()
    for r in [*good[:5], bad, *good[5:]]:
        writer.submit(r)
    await writer.close()
    assert await stored(aengine) == by_id(good)
    assert writer.counters["rejected"] == 1 and writer.counters["written"] == 10
    assert [decode_record(line)["id"] for line in writer.rejected_path.read_bytes().splitlines()] == [bad["id"]]


async def test_unwritable_spool_counts_drops(
    tmp_path: Path, down_engine: AsyncEngine, make_record: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "not-a-dir").write_text("")
    writer = LogWriter(down_engine, tmp_path / "not-a-dir" / "logs.ndjson", flush_interval=0.01)
    await writer.start()
    with caplog.at_level(logging.ERROR, logger="switchpoint.logs"):
        for i in range(5):
            writer.submit(make_record(i))
        await wait_until(lambda: writer.counters["dropped"] == 5)
    await writer.close(timeout=0.2)
    assert writer.counters["accepted"] == 5 and writer.counters["spooled"] == 0
    assert any("dropped" in r.getMessage() for r in caplog.records if r.name == "switchpoint.logs")


async def test_submit_never_raises(aengine: AsyncEngine, spool: Path, make_record: Factory) -> None:
    writer = LogWriter(aengine, spool, queue_size=1)
    writer.submit(make_record(1))
    writer.submit(make_record(2, metadata={"x": object()}))  # queue full and not encodable
    assert writer.counters["dropped"] == 1
    await writer.close()


async def test_submit_after_close_is_spooled(aengine: AsyncEngine, spool: Path, make_record: Factory) -> None:
    writer = LogWriter(aengine, spool)
    await writer.start()
    await writer.close()
    record = make_record(1)
    writer.submit(record)
    assert spooled_lines(spool) == [record] and writer.counters["spooled"] == 1
