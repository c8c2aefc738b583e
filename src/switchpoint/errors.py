"""The one error tree: every failure the gateway itself reports, with its HTTP status and Cloudflare code.

Rendering lives in `formats/` (Cloudflare envelope, OpenAI and Anthropic bodies); this module only says
what went wrong. Foreign exceptions are mapped into it at one boundary each (`upstream.py` for aiohttp).

    GatewayError                      status  cf_code
    ├── ClientError                   4xx: the caller can fix it
    │   ├── BadRequest                400     -      malformed JSON, missing field, bad header value
    │   ├── UnknownGateway            400     2001
    │   ├── InvalidProvider           400     2008
    │   ├── UnsupportedRoute          400     2008   provider known but not servable on this surface
    │   ├── Unauthorized              401     2009
    │   ├── UnknownKeyAlias           400     2040
    │   ├── NotFound                  404     -      no such path
    │   ├── MethodNotAllowed          405     -
    │   ├── PayloadTooLarge           413     -
    │   ├── RateLimited               429     2003
    │   └── BudgetExceeded            429     2041
    └── UpstreamError                 the provider could not be reached or broke its answer
        ├── UpstreamUnavailable       502     2005   connect refused, DNS, TLS
        ├── UpstreamTimeout           504     2005   no first byte in time
        ├── UpstreamReset             502     2005   connection dropped before or during the answer
        └── UpstreamTruncated         502     2005   stream ended without its terminator
"""

from __future__ import annotations


class GatewayError(Exception):
    """Base of every error the gateway renders itself; `status` and `cf_code` travel with the kind."""

    status: int = 500
    cf_code: int | None = None
    openai_type: str = "api_error"
    default_message: str = "Internal gateway error"

    def __init__(self, message: str | None = None, *, retry_after: float | None = None) -> None:
        self.message = message or self.default_message
        self.retry_after = retry_after
        super().__init__(self.message)


class ClientError(GatewayError):
    status = 400
    openai_type = "invalid_request_error"
    default_message = "Bad request"


class BadRequest(ClientError):
    pass


class UnknownGateway(ClientError):
    cf_code = 2001
    default_message = "Gateway not found"


class InvalidProvider(ClientError):
    cf_code = 2008
    default_message = "Invalid provider"


class UnsupportedRoute(ClientError):
    cf_code = 2008
    default_message = "This provider cannot be served on this endpoint"


class Unauthorized(ClientError):
    status = 401
    cf_code = 2009
    openai_type = "authentication_error"
    default_message = "Unauthorized"


class UnknownKeyAlias(ClientError):
    cf_code = 2040
    default_message = "Unknown provider key alias"


class NotFound(ClientError):
    status = 404
    default_message = "Not found"


class MethodNotAllowed(ClientError):
    status = 405
    default_message = "Method not allowed"


class PayloadTooLarge(ClientError):
    status = 413
    default_message = "Request body too large"


class RateLimited(ClientError):
    status = 429
    cf_code = 2003
    openai_type = "rate_limit_error"
    default_message = "Rate limited"


class BudgetExceeded(ClientError):
    status = 429
    cf_code = 2041
    openai_type = "rate_limit_error"
    default_message = "Spend limit exceeded"


class UpstreamError(GatewayError):
    status = 502
    cf_code = 2005
    default_message = "Failed to get response from provider"


class UpstreamUnavailable(UpstreamError):
    pass


class UpstreamTimeout(UpstreamError):
    status = 504
    openai_type = "timeout_error"
    default_message = "Provider did not answer in time"

    @classmethod
    def first_byte(cls, timeout_ms: float) -> UpstreamTimeout:
        """No first byte within the call's `timeout_ms` (`cf-aig-request-timeout`, or the gateway's)."""
        return cls(f"Provider sent no response within {timeout_ms:.0f} ms")


class UpstreamReset(UpstreamError):
    default_message = "Provider connection was reset"


class UpstreamTruncated(UpstreamError):
    default_message = "Provider stream ended before it was complete"
