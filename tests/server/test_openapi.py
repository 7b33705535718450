"""`GET /api/openapi.json`: a valid OpenAPI 3.1 description of every REST route, which the real
server's answers, errors included, keep to (schemathesis generates the requests from it)."""

from __future__ import annotations

from pathlib import Path

import httpx
import schemathesis

# Imported at collection, not in the middle of a test: pytest rewrites schemathesis's modules (a
# plugin's) as they are imported, and CPython 3.11.7's AST constructor can then fail with
# "SystemError: AST constructor recursion depth mismatch" (seen under two pytest workers).
import schemathesis.specs.openapi.schemas
from openapi_spec_validator import validate
from schemathesis.engine import events, from_schema
from starlette.routing import Route

from server.http.rest import openapi_json, operations, routes
from tests.support.rest import as_user, create_draft, new_id
from tests.support.server_process import ServerProcess


async def test_the_description_is_valid_openapi_3_1_and_needs_no_token(
    server: ServerProcess,
) -> None:
    async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as client:
        response = await client.get("/api/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    document = response.json()
    assert document["openapi"] == "3.1.0"
    validate(document)  # raises with the first violation
    assert document["components"]["securitySchemes"]["bearerAuth"]["bearerFormat"] == "JWT"


async def test_every_route_is_described_and_nothing_else(server: ServerProcess) -> None:
    mounted = set()
    for route in routes:
        assert isinstance(route, Route)
        methods = (route.methods or set()) - {"HEAD"}  # Starlette adds HEAD to every GET
        handlers = getattr(route.endpoint, "handlers", {m: route.endpoint for m in methods})
        assert set(handlers) == methods
        mounted |= {(method, route.path, handler) for method, handler in handlers.items()}
    described = {(op.method, op.path, op.handler) for op in operations}
    assert described == mounted
    async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as client:
        document = (await client.get("/api/openapi.json")).json()
    served = {(m.upper(), path) for path, ops in document["paths"].items() for m in ops}
    assert served == {(method, path) for method, path, _ in mounted}


async def test_inputs_fuzzing_found_are_refused_not_a_500(server: ServerProcess) -> None:
    async with as_user(server, new_id("owner")) as client:
        draft = (await create_draft(client, title="x"))["id"]
        huge_after = await client.get(f"/api/drafts/{draft}/events", params={"after": 2**64})
        assert huge_after.status_code == 400, huge_after.text  # past SQLite's INTEGER
        superscript = await client.get(f"/api/drafts/{draft}/versions/\u00b2")
        assert superscript.status_code == 400, superscript.text  # "²".isdigit() is True
        # A wrong method names every method of the path, not only its first route's.
        wrong = await client.patch("/api/drafts")
        assert wrong.status_code == 405
        assert set(wrong.headers["allow"].split(", ")) == {"GET", "HEAD", "POST"}


async def test_a_store_failure_is_a_described_503(tmp_path: Path) -> None:
    """The one error status fuzzing cannot provoke: a commit that fails (fault injection)."""
    faulty = ServerProcess(tmp_path, "--room-grace", "0.3", env={"DRAFTSYNC_FAULTS": "commit"})
    faulty.start()
    try:
        schema = schemathesis.openapi.from_url(f"{faulty.http_url}/api/openapi.json")
        restore = schema["/api/drafts/{draft_id}/restore"]["POST"]
        async with as_user(faulty, "owner") as client:
            draft = (await create_draft(client, title="x"))["id"]
            answer = await client.post(f"/api/drafts/{draft}/restore", json={"version": 0})
    finally:
        faulty.stop()
    assert answer.status_code == 503, answer.text
    assert "503" in restore.definition.raw["responses"]
    restore.validate_response(answer)  # raises naming what does not match


# -- the real answers against the description ---------------------------------------------------

# Schemathesis's engine (what its CLI runs): coverage (boundary values, every kind of wrong
# input, missing token, wrong methods), then fuzzing, then stateful sequences
# (create a draft, then read, share, restore, delete it), each answer checked against the
# description. Bounded by the number of examples (about 20 s): no `max-time`, with which the
# engine goes on fuzzing until the time is up. Its pytest plugin is not used: its
# fixture-loaded schemas fail under pytest 9.
_EXPECTED = {"201", "200", "204", "400", "401", "404", "405", "409", "422"}


def test_real_answers_keep_to_the_description(server: ServerProcess) -> None:
    """Every answer, errors included, has a status, content type, headers and body that the
    description gives for it, and none is a 500."""
    config = schemathesis.Config.from_dict(
        {
            "headers": {"Authorization": f"Bearer {server.token(new_id('fuzz'))}"},
            "generation": {"max-examples": 25, "database": "none"},
            "phases": {"examples": {"enabled": False}},  # the description gives none
            "seed": 26,  # the same requests every run, so that a failure can be replayed
            "request-timeout": 10,
            "checks": {
                # Rules a JSON Schema cannot state (the draft schema's fields, a conflict's
                # candidates, an id already taken) refuse valid-looking bodies with 404, 409
                # or 422; those answers are still checked against the description.
                "positive_data_acceptance": {"enabled": False},
                # A restore of a version past the draft's last is 404, as reading it is
                # (design.md), which this check takes for the created draft gone missing.
                "ensure_resource_availability": {"enabled": False},
            },
        }
    )
    schema = schemathesis.openapi.from_url(f"{server.http_url}/api/openapi.json", config=config)
    failures: list[str] = []
    answered: dict[str, set[str]] = {}
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            for interaction in event.recorder.interactions.values():
                if interaction.response is not None:
                    label = f"{interaction.request.method} {event.label}"
                    answered.setdefault(label, set()).add(str(interaction.response.status_code))
            failures += [
                f"{event.label} ({event.phase.value}) {check.name}: "
                f"{check.failure_info.failure}\n{check.failure_info.code_sample}"
                for checks in event.recorder.checks.values()
                for check in checks
                if check.failure_info is not None
            ]
        elif isinstance(event, events.NonFatalError):
            failures.append(f"{event.label}: schemathesis could not test it: {event.info}")
        elif isinstance(event, events.FatalError):
            failures.append(f"schemathesis failed: {event.exception!r}")
    assert not failures, "\n\n".join(failures)
    seen = set().union(*answered.values())
    assert seen >= _EXPECTED, f"never answered {_EXPECTED - seen}: {answered}"
    for op in operations:
        if op.handler is not openapi_json:  # schemathesis leaves out where it read the schema
            label = f"{op.method} {op.method} {op.path}"
            assert label in answered, f"{op.method} {op.path} was never called"
