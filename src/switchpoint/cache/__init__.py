"""The exact-match response cache as policy: which calls are cacheable and their keys (`policy`), the stored
answers (`answer`), the store and the coalescing of identical concurrent misses (`entries`). The cache fails open.
"""

from switchpoint.cache.answer import CachedAnswer
from switchpoint.cache.entries import DECODED_MAX_BYTES, Flight, Live, Recorder, ResponseCache
from switchpoint.cache.policy import (
    CACHEABLE_METHODS,
    CUSTOM_KEY_TTL_S,
    HIT,
    MAX_CUSTOM_KEY,
    MAX_TTL_S,
    MIN_TTL_S,
    MISS,
    STATUS_HEADER,
    STORED_HEADERS,
    VARY_HEADERS,
    CacheDirective,
    KeyMemo,
    cache_directive,
    cache_key,
    credential_identity,
)

__all__ = [
    "CACHEABLE_METHODS",
    "CUSTOM_KEY_TTL_S",
    "DECODED_MAX_BYTES",
    "HIT",
    "MAX_CUSTOM_KEY",
    "MAX_TTL_S",
    "MIN_TTL_S",
    "MISS",
    "STATUS_HEADER",
    "STORED_HEADERS",
    "VARY_HEADERS",
    "CacheDirective",
    "CachedAnswer",
    "Flight",
    "KeyMemo",
    "Live",
    "Recorder",
    "ResponseCache",
    "cache_directive",
    "cache_key",
    "credential_identity",
]
