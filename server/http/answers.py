"""What REST answers are made of: a pydantic base for response bodies, and the error body.

Handlers build their answers as models of `Answer` and send them with `respond`, so that the
OpenAPI description (`server.http.openapi`) is generated from the very classes that shape the
JSON: a field renamed or added in a handler changes the description with it. Field names are
snake_case in Python and camelCase on the wire (`created_at` -> `createdAt`), as the REST API
has always answered.

A field that is left out of the JSON when it has no value (the owner-only `access` of a draft,
the `errors` of a validation failure) is declared with `omitted_when_none()`: the description
then says it is optional, never that it may be null.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from pydantic.json_schema import SkipJsonSchema
from starlette.responses import JSONResponse

__all__ = ["Answer", "ErrorAnswer", "Problem", "omitted_when_none", "respond"]


class Answer(BaseModel):
    """A response body: camelCase on the wire, built by field name in Python."""

    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_name=True, serialize_by_alias=True
    )


def omitted_when_none() -> Any:
    """A field absent from the JSON (not `null`) when it is None; the schema shows no null."""
    return Field(
        default=None,
        exclude_if=lambda value: value is None,
        json_schema_extra=_no_default,
    )


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def respond(answer: Answer, status_code: int = 200) -> JSONResponse:
    return JSONResponse(answer.model_dump(), status_code=status_code)


class Problem(Answer):
    """One problem of a body or query that failed validation."""

    loc: str = Field(description="Where: a dotted path into the body (`fields.tags`) or `body`.")
    msg: str


class ErrorAnswer(Answer):
    """Every error answer of the REST API (server/http/common.py)."""

    error: str = Field(
        description="The status's name: bad_request, unauthorized, forbidden, not_found, "
        "method_not_allowed, conflict, payload_too_large, validation_failed, internal, "
        "unavailable.",
        examples=["not_found"],
    )
    detail: str = Field(description="What went wrong, for a person to read.")
    errors: list[Problem] | SkipJsonSchema[None] = omitted_when_none()
