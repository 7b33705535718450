"""Every REST operation fuzzed, from the server's own OpenAPI document, with its path pointing
at things that exist: bad input past authentication and past the draft lookup is refused with a
described 4xx (the `ErrorAnswer` body), never a 500, a hang, or an answer the document does not
give.

`test_openapi.py` fuzzes the same document with generated path parameters (which mostly name no
draft, so most handlers stop at their 404) and with stateful sequences. Here schemathesis's
coverage and fuzzing phases run against one real server and SQLite file, as the owner of a
draft that has several versions, a named version and an open manual conflict; `draft_id` and
`conflict_id` are held to those, everything else (queries, bodies, versions, methods, headers)
is generated.

Not fuzzed here: `/ws` and `/hocuspocus` (WebSockets, not in the document: their hostile input
is `test_hostile_updates.py`'s and `test_entry_points_hostile.py`'s); stateful sequences (the
path parameters are fixed, so links would lead nowhere new; `test_openapi.py` runs them).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis

# Imported at collection: see test_openapi.py (CPython 3.11.7's AST recursion-depth bug).
import schemathesis.specs.openapi.schemas
from pycrdt import Map
from schemathesis.engine import events, from_schema

from server.http.rest import openapi_json, operations
from tests.support.pycrdt_client import PycrdtClient, write_while_apart
from tests.support.rest import as_user, create_draft
from tests.support.server_process import ServerProcess

OWNER = "fuzz-owner"
CREATOR = "fuzz-creator"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server of this module's own: the fuzzing changes what its drafts hold."""
    process = ServerProcess(tmp_path_factory.mktemp("fuzz"), "--room-grace", "0.3")
    process.start()
    yield process
    process.stop()


async def _targets(server: ServerProcess) -> dict[str, str]:
    """A draft with versions, a named version and an open conflict (on `goal_amount`, a
    `manual` field); and a draft for DELETE, one for PUT access (`_OWN_DRAFT`)."""
    async with as_user(server, OWNER) as client:
        draft = (await create_draft(client, title="fuzzed", fields={"tags": ["a"]}))["id"]
        doomed = (await create_draft(client, title="to delete"))["id"]
        shared = (await create_draft(client, title="to share"))["id"]
        named = await client.post(f"/api/drafts/{draft}/versions", json={"label": "first"})
        assert named.status_code == 201, named.text
    token = server.token(OWNER)
    first = await PycrdtClient(server.ws_url, draft, token, client_id=100).connect()
    second = await PycrdtClient(server.ws_url, draft, token, client_id=200).connect()
    try:
        await write_while_apart(first, second, "goal_amount", 500, (1000, 2000))
        await first.wait_for(lambda: len(first.doc.get("conflicts", type=Map)) == 1)
        (conflict,) = first.doc.get("conflicts", type=Map).keys()
    finally:
        await first.disconnect()
        await second.disconnect()
    return {"draft": draft, "doomed": doomed, "shared": shared, "conflict": conflict}


# The operations that would change what the others need: DELETE deletes its draft, and PUT
# access may take the fuzzing user's ownership away (seen: schemathesis reuses values it reads
# in answers, the owner's name among them): each has a draft of its own.
_OWN_DRAFT = {
    ("delete", "/api/drafts/{draft_id}"): "doomed",
    ("put", "/api/drafts/{draft_id}/access"): "shared",
}


def _pinned(server: ServerProcess, targets: dict[str, str]) -> dict[str, Any]:
    """The served document with `draft_id` and `conflict_id` held to `targets` (a one-value
    `enum`); what the operations answer is the served document's, untouched. Not
    schemathesis's `parameters` overrides: its coverage phase puts the overridden (valid) value
    in place of an invalid one it generated, then reports the 200 as invalid input accepted."""
    document: dict[str, Any] = httpx.get(f"{server.http_url}/api/openapi.json").json()
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            draft = _OWN_DRAFT.get((method, path), "draft")
            pinned = {
                "draft_id": targets[draft],
                "conflict_id": targets["conflict"],
            }
            for parameter in operation.get("parameters", ()):
                if parameter["in"] == "path" and parameter["name"] in pinned:
                    parameter["schema"] = {"enum": [pinned[parameter["name"]]]}
    return document


def _fuzz(server: ServerProcess, targets: dict[str, str]) -> tuple[list[str], dict[str, set[int]]]:
    config = schemathesis.Config.from_dict(
        {
            "base-url": server.http_url,
            "headers": {"Authorization": f"Bearer {server.token(OWNER)}"},
            "operations": [
                {
                    # Drafts the fuzzing creates are another user's: a path parameter generated
                    # as invalid ("0", an integer in a path) must not reach one of them.
                    "include-name": "POST /api/drafts",  # two `include-`s would match either
                    "headers": {"Authorization": f"Bearer {server.token(CREATOR)}"},
                }
            ],
            "generation": {"max-examples": 30, "database": "none"},
            "phases": {
                "examples": {"enabled": False},  # the document gives none
                "stateful": {"enabled": False},  # see the module's docstring
            },
            "seed": 7,  # the same requests every run, so that a failure can be replayed
            "request-timeout": 10,  # a hang fails the check instead of the whole run
            "checks": {
                # The ones the goal names (no 5xx; status, content type, headers and body as
                # described) stay on, with the rest of the defaults, except:
                # Rules a JSON Schema cannot state (a field's type in the draft's schema, a
                # conflict's candidates, a version past the last) refuse valid-looking input.
                "positive_data_acceptance": {"enabled": False},
                # A 404 for a version past the last, taken for the draft gone missing.
                "ensure_resource_availability": {"enabled": False},
            },
        }
    )
    schema = schemathesis.openapi.from_dict(_pinned(server, targets), config=config)
    failures: list[str] = []
    answered: dict[str, set[int]] = {}
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            for interaction in event.recorder.interactions.values():
                if interaction.response is not None:
                    statuses = answered.setdefault(event.label, set())
                    statuses.add(interaction.response.status_code)
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
    return failures, answered


async def test_bad_input_past_auth_and_lookup_is_a_described_4xx(server: ServerProcess) -> None:
    targets = await _targets(server)
    failures, answered = await asyncio.to_thread(_fuzz, server, targets)
    assert not failures, "\n\n".join(failures)
    for op in operations:
        if op.handler is not openapi_json:  # schemathesis leaves out where it read the schema
            label = f"{op.method} {op.path}"
            assert label in answered, f"{label} was never called"
    # The fixed path parameters took the handlers past their lookup: each draft operation
    # answered something else than 404 at least once.
    for label, statuses in answered.items():
        if "{draft_id}" in label:
            assert statuses - {404}, f"{label} only ever answered 404"
