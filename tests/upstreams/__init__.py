"""Faithful fake LLM providers (OpenAI, Workers AI, Anthropic) that the gateway's tests use as upstreams.

Start them with ``await start_upstreams()`` or ``UpstreamsThread().start()``; failure scenarios are
selected by the request's model name (see ``scenarios``).
"""

from .scenarios import Scenario, parse_scenario
from .server import RecordedRequest, Upstreams, UpstreamsThread, start_upstreams

__all__ = ["RecordedRequest", "Scenario", "Upstreams", "UpstreamsThread", "parse_scenario", "start_upstreams"]
