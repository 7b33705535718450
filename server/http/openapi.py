"""The OpenAPI 3.1 description of the REST API, built from pydantic models and a route table.

Nothing in it is written by hand: every schema is pydantic's JSON Schema (2020-12, the dialect
OpenAPI 3.1 uses as it is) of the models the handlers validate with (bodies, queries) and answer
with (`server.http.answers`), all generated in one pass so that their `$defs` become
`components/schemas`. What a model cannot say (method, path, which statuses a handler can
answer) is one `Operation` a route, in the table beside the routes (`server.http.rest`).

Starlette's `SchemaGenerator` is not used: it reads YAML out of docstrings, i.e. schemas written
by hand beside the models, free to drift from them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from pydantic import BaseModel, ConfigDict, TypeAdapter
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from server.http.answers import ErrorAnswer

__all__ = ["ERRORS", "Description", "Operation", "describe"]

_REF = "#/components/schemas/{model}"
_JSON = "application/json"

ERRORS: Mapping[int, tuple[str, str]] = {
    400: ("BadRequest", "The request cannot be read: a body that is not JSON or is nested too "
          "deeply, a bad cursor or query, an invalid draft id or version."),
    401: ("Unauthorized", "The token is missing, invalid or expired."),
    403: ("Forbidden", "The caller reaches the draft, but its role does not allow this; or "
          "the caller owns as many drafts as its quota allows; or, embedded, a write named "
          "by the host's session comes from another site's page (Origin, Sec-Fetch-Site)."),
    404: ("NotFound", "No such draft, version or conflict. A draft the caller cannot reach is "
          "answered as one that is not there."),
    409: ("Conflict", "The draft's state forbids it: an id already taken, no owner left."),
    413: ("PayloadTooLarge", "The body is over 1 MiB."),
    415: ("UnsupportedMediaType", "The body is not declared JSON: send it with "
          "`Content-Type: application/json` (or `application/*+json`), in UTF-8: a charset "
          "other than `utf-8` is refused too. An empty body needs no type."),
    422: ("ValidationFailed", "The body or query has the wrong shape or values; `errors` "
          "lists each problem with its place."),
    429: ("RateLimited", "The caller sent more requests a second than its rate allows; "
          "retry after `Retry-After` seconds."),
    503: ("Unavailable", "The store could not read or commit in time, or the server has as "
          "many requests under way as it takes (then with `Retry-After`): retry."),
}  # fmt: skip
"""Each error status an operation may list: its name in `components/responses`, and what it
means. Every error answer has the body `ErrorAnswer`."""


class Description(BaseModel):
    """An OpenAPI 3.1 document (https://spec.openapis.org/oas/v3.1.0)."""

    model_config = ConfigDict(extra="allow")

    openapi: str
    info: dict[str, Any]
    paths: dict[str, Any]
    components: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Operation:
    """One method on one path: what the models do not say about it."""

    method: str
    path: str
    handler: Callable[..., Any]
    summary: str
    answers: Mapping[int, type[BaseModel] | None]  # success status -> body (None: no body)
    errors: Sequence[int] = ()  # statuses from ERRORS
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    public: bool = False  # no token needed
    tag: str | None = None  # default: the handler's module (drafts, history, ...)


def describe(
    operations: Sequence[Operation],
    *,
    path_parameters: Mapping[str, Any],
    title: str,
    version: str,
    description: str,
) -> dict[str, Any]:
    """The OpenAPI document of `operations`; `path_parameters` maps each `{name}` in their paths
    to the type it has (a pydantic-understood type, e.g. an `Annotated` str with a pattern)."""
    wanted: list[tuple[type[BaseModel], JsonSchemaMode]] = [(ErrorAnswer, "serialization")]
    for op in operations:
        if op.body is not None:
            wanted.append((op.body, "validation"))
        wanted += [(model, "serialization") for model in op.answers.values() if model]
    refs, defs = models_json_schema(list(dict.fromkeys(wanted)), ref_template=_REF)
    error_ref = refs[(ErrorAnswer, "serialization")]
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, refs, path_parameters)
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version, "description": description},
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "responses": {
                name: _error_response(status, meaning, error_ref)
                for status, (name, meaning) in ERRORS.items()
            },
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
        "security": [{"bearerAuth": []}],
    }


def _operation(
    op: Operation,
    refs: Mapping[tuple[type[BaseModel], JsonSchemaMode], Any],
    path_parameters: Mapping[str, Any],
) -> dict[str, Any]:
    parameters = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": TypeAdapter(path_parameters[name]).json_schema(ref_template=_REF),
        }
        for name in _path_names(op.path)
    ]
    if op.query is not None:
        parameters += _query_parameters(op.query)
    described: dict[str, Any] = {
        "operationId": op.handler.__name__,
        "summary": op.summary,
        "tags": [op.tag or op.handler.__module__.rsplit(".", 1)[-1]],
    }
    if parameters:
        described["parameters"] = parameters
    if op.body is not None:
        described["requestBody"] = {
            # read_json takes an empty body as {}: required when {} would not do
            "required": any(field.is_required() for field in op.body.model_fields.values()),
            "content": {_JSON: {"schema": refs[(op.body, "validation")]}},
        }
    responses: dict[str, Any] = {}
    for status, model in op.answers.items():
        if model is None:
            responses[str(status)] = {"description": f"{HTTPStatus(status).phrase}; no body."}
        else:
            responses[str(status)] = {
                "description": HTTPStatus(status).phrase,
                "content": {_JSON: {"schema": refs[(model, "serialization")]}},
            }
    # Every call with a token is admitted first (server/admission): 429 and 503 may come
    # before the handler runs, whatever it answers itself.
    for status in sorted({*op.errors, *(() if op.public else (401, 429, 503))}):
        responses[str(status)] = {"$ref": f"#/components/responses/{ERRORS[status][0]}"}
    described["responses"] = responses
    if op.public:
        described["security"] = []
    return described


def _path_names(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(ref_template=_REF, mode="validation")
    required = set(schema.get("required", ()))
    parameters = []
    for name, prop in schema["properties"].items():
        if prop.get("default", 0) is None:  # absent from the query, not "null"
            del prop["default"]
        parameter = {"name": name, "in": "query", "required": name in required, "schema": prop}
        if "description" in prop:
            parameter["description"] = prop["description"]
        parameters.append(parameter)
    return parameters


def _error_response(status: int, meaning: str, error_ref: Any) -> dict[str, Any]:
    response: dict[str, Any] = {"description": meaning, "content": {_JSON: {"schema": error_ref}}}
    if status == 401:
        response["headers"] = {
            "WWW-Authenticate": {"description": "`Bearer`", "schema": {"type": "string"}}
        }
    if status == 415:
        response["headers"] = {
            name: {
                "description": f"`application/json`: the type a {method} body may have.",
                "schema": {"type": "string"},
            }
            for method, name in (("POST", "Accept-Post"), ("PATCH", "Accept-Patch"))
        }
    if status in (429, 503):
        response["headers"] = {
            "Retry-After": {
                "description": "Seconds to wait before trying again (over a cap or a rate).",
                "schema": {"type": "integer", "minimum": 0},
            }
        }
    return response
