"""The dynamic-route document as pydantic models (both of Cloudflare's spellings in, the API spelling out), the
problems a bad document produces, and the plain records the route store hands back.

Spellings accepted: `rate`|`rate_limit`, `window`|`interval`, `conditions`|`condition` (an object, or a JSON
string as Terraform sends it); `technique` defaults to `sliding`. Unknown keys inside `properties` are errors
(a typo there changes behaviour); unknown keys on an element or the document (editor positions, the `id` of
a fetched route) are dropped.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

from switchpoint.config import Config
from switchpoint.errors import BadRequest
from switchpoint.routing.attempts import MAX_ATTEMPTS

ROUTE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
ELEMENT_TYPES = ("start", "conditional", "percentage", "rate", "model", "end")
TYPE_ALIASES = {"rate_limit": "rate"}
CONFIG_PREFIX = "config-"  # ids of routes declared in the YAML config (read-only through the API)

Path = tuple[str | int, ...]
_KEY_ORDER = ("id", "type", "properties", "outputs")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Output(_Strict):
    elementId: str = Field(min_length=1)


class ConditionalProperties(_Strict):
    conditions: dict[str, Any] = Field(validation_alias=AliasChoices("conditions", "condition"))

    @field_validator("conditions", mode="before")
    @classmethod
    def _json_text(cls, value: Any) -> Any:
        """Terraform sends the conditions object as a JSON string."""
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError as exc:
                raise ValueError(f"conditions is a string but not valid JSON: {exc}") from None
        return value


class PercentageProperties(_Strict):
    # Switchpoint extension: a request field path; the same value always takes the same branch.
    sticky: str | None = None


class RateProperties(_Strict):
    key: str | None = None  # request field path; absent (or missing from a request) = one shared bucket
    limit: float = Field(gt=0, allow_inf_nan=False)
    limitType: Literal["count", "cost"] = "count"
    window: int = Field(gt=0, validation_alias=AliasChoices("window", "interval"))
    technique: Literal["sliding", "fixed"] = "sliding"

    @field_serializer("limit")
    def _integral(self, value: float) -> int | float:
        """Emit `100`, not `100.0`."""
        return int(value) if value.is_integer() else value


class ModelProperties(_Strict):
    provider: str = Field(min_length=1)
    model: str = Field(min_length=1)
    timeout: int | None = Field(default=None, gt=0)  # ms to the first response byte
    retries: int = Field(default=0, ge=0, le=MAX_ATTEMPTS - 1)


class _Element(_Loose):
    id: str = Field(min_length=1)
    outputs: dict[str, Output] = {}


class StartElement(_Element):
    type: Literal["start"]


class ConditionalElement(_Element):
    type: Literal["conditional"]
    properties: ConditionalProperties


class PercentageElement(_Element):
    type: Literal["percentage"]
    properties: PercentageProperties | None = None


class RateElement(_Element):
    type: Literal["rate"]
    properties: RateProperties


class ModelElement(_Element):
    type: Literal["model"]
    properties: ModelProperties


class EndElement(_Element):
    type: Literal["end"]


Element = Annotated[
    StartElement | ConditionalElement | PercentageElement | RateElement | ModelElement | EndElement,
    Field(discriminator="type"),
]


class RouteDocument(_Loose):
    """`{"name"?, "elements": [...]}`; `elements_json()` is the normalized (API-spelled) element list."""

    name: str | None = None
    elements: list[Element]

    @model_validator(mode="before")
    @classmethod
    def _type_aliases(cls, data: Any) -> Any:
        if not isinstance(data, Mapping) or not isinstance(data.get("elements"), list):
            return data
        elements = [
            {**e, "type": TYPE_ALIASES[e["type"]]} if isinstance(e, Mapping) and e.get("type") in TYPE_ALIASES else e
            for e in data["elements"]
        ]
        return {**data, "elements": elements}

    def elements_json(self) -> list[dict[str, Any]]:
        dumped = [e.model_dump(mode="json", exclude_none=True) for e in self.elements]
        return [{k: d[k] for k in _KEY_ORDER if k in d} for d in dumped]


# -- problems ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RouteProblem:
    """One thing wrong with a route: the element (None for the document), the field inside it (dotted, e.g.
    `properties.provider`), a message, and the JSON path in the document (`("elements", 1, "properties", ...)`)."""

    element_id: str | None
    field: str
    message: str
    path: Path = ()

    def __str__(self) -> str:
        where = ".".join(str(p) for p in self.path) or "document"
        element = f" (element '{self.element_id}')" if self.element_id is not None else ""
        return f"{where}{element}: {self.message}"


class RouteInvalid(BadRequest):
    """A route document that cannot be deployed; `problems` lists every reason found."""

    def __init__(self, problems: Sequence[RouteProblem], name: str | None = None) -> None:
        self.problems = list(problems)
        label = f"Route '{name}'" if name else "Route"
        super().__init__(f"{label} is invalid: " + "; ".join(map(str, self.problems)))


class RouteConflict(Exception):
    """A route name already taken on the gateway, or a change to a route the config declares."""


_MESSAGES = {"missing": "Required", "extra_forbidden": "unknown field"}


def parse_route(doc: Any) -> RouteDocument:
    """Validate the document's shape (types, required fields); graph rules are `compile_route`'s job."""
    if isinstance(doc, RouteDocument):
        return doc
    try:
        return RouteDocument.model_validate(doc)
    except ValidationError as exc:
        elements = doc.get("elements") if isinstance(doc, Mapping) else None
        raise RouteInvalid([_problem(e, elements) for e in exc.errors(include_url=False)]) from None


def _problem(error: Any, elements: Any) -> RouteProblem:
    loc: list[str | int] = list(error["loc"])
    if len(loc) > 2 and loc[0] == "elements" and loc[2] in ELEMENT_TYPES:
        del loc[2]  # the discriminator tag pydantic inserts
    message = _MESSAGES.get(error["type"]) or error["msg"]
    if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
        loc.append("type")
        message = f"type must be one of: {', '.join(ELEMENT_TYPES)} (or rate_limit)"
    element_id = None
    if len(loc) >= 2 and loc[0] == "elements" and isinstance(loc[1], int) and isinstance(elements, list):
        raw = elements[loc[1]] if loc[1] < len(elements) else None
        element_id = str(raw["id"]) if isinstance(raw, Mapping) and isinstance(raw.get("id"), str) else None
    inside = loc[:1] == ["elements"] and len(loc) > 2
    field = ".".join(str(p) for p in (loc[2:] if inside else loc))
    return RouteProblem(element_id, field, message, tuple(loc))


def check_name(name: Any) -> RouteProblem | None:
    if not isinstance(name, str):
        return RouteProblem(None, "name", "Required", ("name",))
    if not ROUTE_NAME.fullmatch(name):
        return RouteProblem(None, "name", f"route name {name!r} must match ^{ROUTE_NAME.pattern}$", ("name",))
    return None


# -- stored forms -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VersionRecord:
    version_id: str
    route_id: str
    number: int  # 1, 2, ... per route
    elements: list[dict[str, Any]]
    created_at: float
    comment: str | None
    active: bool


@dataclass(frozen=True, slots=True)
class DeploymentRecord:
    deployment_id: str
    route_id: str
    version_id: str
    created_at: float
    comment: str | None


@dataclass(frozen=True, slots=True)
class RouteRecord:
    """A route with its live version and deployment (None only while a route has never been deployed)."""

    id: str
    gateway: str
    name: str
    created_at: float
    modified_at: float
    version: VersionRecord | None
    deployment: DeploymentRecord | None
    read_only: bool = False  # declared in the YAML config


def config_version_id(elements: Any) -> str:
    """A YAML route's version id: a digest of its elements, so editing the file makes a new version."""
    return CONFIG_PREFIX + hashlib.sha256(orjson.dumps(elements, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def config_route(name: str, doc: Any, gateway: str) -> RouteRecord:
    """The record of a route declared in the config, normalized when its shape is valid."""
    raw = doc.get("elements") if isinstance(doc, Mapping) else None
    try:
        elements = parse_route({"elements": raw}).elements_json()
    except RouteInvalid:
        elements = raw if isinstance(raw, list) else []
    route_id, version_id = CONFIG_PREFIX + name, config_version_id(elements)
    version = VersionRecord(version_id, route_id, 1, elements, 0.0, "declared in the config file", True)
    deployment = DeploymentRecord(version_id, route_id, version_id, 0.0, "declared in the config file")
    return RouteRecord(route_id, gateway, name, 0.0, 0.0, version, deployment, read_only=True)


def config_routes(config: Config, gateway: str) -> list[RouteRecord]:
    """Routes from the YAML config; each is available on every configured gateway."""
    return [config_route(name, doc, gateway) for name, doc in sorted(config.routes.items())]
