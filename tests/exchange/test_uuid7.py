"""`exchange.core.uuid7`: RFC 9562 version-7 ids, time-ordered and unique, as `cf-aig-log-id` carries them."""

from __future__ import annotations

import time
import uuid

from switchpoint.exchange.core import uuid7


def test_ids_are_rfc_9562_version_7_with_the_time_in_their_first_48_bits() -> None:
    before = time.time_ns() // 1_000_000
    ids = [uuid7() for _ in range(2000)]
    after = time.time_ns() // 1_000_000
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant, str(parsed)) == (7, uuid.RFC_4122, text)
        assert before <= parsed.int >> 80 <= after
    assert [i[:13] for i in ids] == sorted(i[:13] for i in ids)
