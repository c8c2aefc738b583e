"""The log spool's file format and file handling: one JSON record a line, bytes as `{"$b64": ...}`.

Appends go through O_APPEND descriptors on private (0600) files, so a line is never interleaved or lost
to a partial write; reading resumes from a byte offset, so a replay can stop and continue anywhere.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import orjson

from switchpoint.store.tables import BINARY_LOG_COLUMNS, LOG_COLUMNS

_B64 = "$b64"

Record = dict[str, Any]


def _encode_bytes(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return {_B64: base64.b64encode(value).decode()}
    raise TypeError(f"cannot store {type(value).__name__} in a log record")


def encode_record(record: Record) -> bytes:
    """One spool line: JSON with bytes as `{"$b64": ...}`, newline-terminated."""
    return orjson.dumps(record, default=_encode_bytes, option=orjson.OPT_APPEND_NEWLINE)


def decode_record(line: bytes) -> Record:
    """Invert `encode_record` exactly (only the body columns can hold bytes)."""
    record: Record = orjson.loads(line)
    for name in BINARY_LOG_COLUMNS:
        value = record.get(name)
        if isinstance(value, dict) and _B64 in value:
            record[name] = base64.b64decode(value[_B64])
    return record


def row(record: Record) -> Record:
    """Exactly the `logs` columns, so every row of an executemany has the same keys."""
    values = {name: record.get(name) for name in LOG_COLUMNS}
    if values["custom_cost"] is None:
        values["custom_cost"] = False
    return values


def read_chunk(path: Path, offset: int, limit: int) -> tuple[list[Record], list[bytes], int] | None:
    """Up to `limit` records from `offset`: (records, undecodable lines, next offset); None at the end."""
    records: list[Record] = []
    bad: list[bytes] = []
    with path.open("rb") as f:
        f.seek(offset)
        for line in f:
            try:
                records.append(row(decode_record(line)))
            except (ValueError, TypeError, AttributeError):
                bad.append(line)
            if len(records) + len(bad) >= limit:
                break
        end = f.tell()
    return None if end == offset else (records, bad, end)


def open_append(path: Path) -> int:
    """An O_APPEND descriptor on a private (0600) file, creating its directory (0700) when needed."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)


def write_all(fd: int, data: bytes) -> None:
    """Write every byte (os.write may write fewer than asked)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def file_size(path: Path) -> int:
    """Size in bytes, 0 when the file is missing."""
    try:
        return path.stat().st_size
    except OSError:  # missing, or its directory is not one: nothing spooled there
        return 0
