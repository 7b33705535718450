"""What `server/http/pages.py` serves, over plain HTTP: the pages, the bundle and the schema."""

from __future__ import annotations

import tomllib

import httpx

from crdt.schema import DEFAULT_SCHEMA, parse_schema
from server.http.pages import schema_json
from tests.support.server_process import ServerProcess


async def test_pages_and_bundle_are_served_with_a_strict_policy(server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=server.http_url) as client:
        for path in ("/", "/d/some-draft_1"):
            page = await client.get(path)
            assert page.status_code == 200
            assert page.headers["content-type"].startswith("text/html")
            assert page.headers["referrer-policy"] == "no-referrer"  # the token is in the URL
            assert "script-src 'self'" in page.headers["content-security-policy"]
        assert 'src="/static/editor.js"' in (await client.get("/d/x")).text
        bundle = await client.get("/static/editor.js")
        assert bundle.status_code == 200
        assert "javascript" in bundle.headers["content-type"]
        assert (await client.get("/static/style.css")).status_code == 200
        assert (await client.get("/d/not%20an%20id")).status_code == 404
        worker = await client.get("/sw.js")  # at the root: its scope covers / and /d/...
        assert worker.status_code == 200
        assert "javascript" in worker.headers["content-type"]
        assert worker.headers["cache-control"] == "no-cache"
        assert (await client.post("/sw.js")).status_code == 405
        assert (await client.get("/static/../server/http/pages.py")).status_code == 404


async def test_the_schema_endpoint_needs_a_token_and_lists_the_fields(
    server: ServerProcess,
) -> None:
    async with httpx.AsyncClient(base_url=server.http_url) as client:
        assert (await client.get("/api/schema")).status_code == 401
        bad = await client.get("/api/schema", headers={"Authorization": "Bearer nope"})
        assert bad.status_code == 401
        headers = {"Authorization": f"Bearer {server.token('alice')}"}
        answer = await client.get("/api/schema", headers=headers)
    assert answer.status_code == 200
    assert answer.json() == {
        **schema_json(DEFAULT_SCHEMA),
        "limits": {"maxMessageBytes": 16 * 1024 * 1024},  # what the page refuses beyond
    }
    fields = {f["name"]: f for f in answer.json()["fields"]}
    assert list(fields) == list(DEFAULT_SCHEMA.fields)
    assert fields["status"]["transitions"]["DRAFT"] == ["IN_REVIEW", "ARCHIVED"]
    assert fields["goal_amount"] == {
        "name": "goal_amount",
        "kind": "value",
        "type": "number",
        "rule": "manual",
        "initial": None,
        "transitions": {},
        "precedence": [],
        "filled": "set",  # no initial value: filled once set
    }
    assert fields["status"]["filled"] == "moved"  # filled once moved from CREATING


def test_schema_json_of_a_schema_with_richtext() -> None:
    schema = parse_schema(
        tomllib.loads(
            '[fields.body]\nkind = "richtext"\n[fields.done]\nkind = "value"\ntype = "boolean"'
        )
    )
    assert schema_json(schema)["fields"] == [
        {
            "name": "body",
            "kind": "richtext",
            "type": None,
            "rule": None,
            "initial": None,
            "transitions": {},
            "precedence": [],
            "filled": None,
        },
        {
            "name": "done",
            "kind": "value",
            "type": "boolean",
            "rule": "lww",
            "initial": None,
            "transitions": {},
            "precedence": [],
            "filled": "set",
        },
    ]
