"""The pipeline a call runs through: options → auth → plan (by the surface) → attempts → relay → log."""

from switchpoint.exchange import governance
from switchpoint.exchange.core import Exchange, Runtime, Target, uuid7
from switchpoint.exchange.options import RequestOptions, default_options, parse_options
from switchpoint.exchange.pipeline import attempt, authenticate, upstream_headers
from switchpoint.exchange.relay import gateway_headers, relay

__all__ = [
    "Exchange",
    "RequestOptions",
    "Runtime",
    "Target",
    "attempt",
    "authenticate",
    "default_options",
    "gateway_headers",
    "governance",
    "parse_options",
    "relay",
    "upstream_headers",
    "uuid7",
]
