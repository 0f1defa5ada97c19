"""Files and prompt answers over HTTP: upload to the file store, answer a waiting prompt."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

import turnlog
from tests.integration.test_prompts import ask, prompting_app
from turnlog.services.adapters.embedded.endpoints import Endpoints
from turnlog.services.adapters.embedded.processes import free_port
from turnlog.services.bootstrap.serve import Parts, serve
from turnlog.services.settings import Settings

ADMIN = "admin-key-0123456789"
ALICE = "alice-key-0123456789"
READER = "reader-key-0123456789"
KEYS = f"{ADMIN}:admin,{ALICE}:read:user=alice,{READER}:read"


@pytest.fixture
async def api(
    database_url: str, servers: Endpoints, prefix: str, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    (tmp_path / "inbox").mkdir()
    port = free_port()
    settings = Settings(
        home=tmp_path,
        subject_prefix=prefix,
        api_keys=KEYS,
        http_port=port,
        max_file_bytes=64 * 1024,
    )
    ready = asyncio.Event()
    parts = Parts(app=prompting_app(tmp_path / "inbox"), relay=True, projector=True, api=True)
    task = asyncio.create_task(
        serve(settings, database_url, servers.nats_url, parts, ready=ready, handle_signals=False)
    )
    waiting = asyncio.create_task(ready.wait())
    await asyncio.wait([task, waiting], timeout=30, return_when=asyncio.FIRST_COMPLETED)
    waiting.cancel()
    if task.done():
        task.result()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield client
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            async with asyncio.timeout(30):
                await task


def auth(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


async def visible(api: httpx.AsyncClient, session_id: str) -> None:
    """Wait until the sessions projection has the session (the API checks who sees it)."""
    async with asyncio.timeout(20):
        url = f"/v1/sessions/{session_id}"
        while (await api.get(url, headers=auth(ADMIN))).status_code != 200:  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def test_a_file_uploaded_over_http_answers_a_prompt(
    api: httpx.AsyncClient, servers: Endpoints, prefix: str
) -> None:
    body = b"a,b\n1,2\n3,4\n"
    up = await api.post(
        "/v1/files",
        params={"name": "export.csv"},
        content=body,
        headers={**auth(ALICE), "content-type": "text/csv"},
    )
    assert up.status_code == 201, up.text
    ref = up.json()
    assert ref["name"] == "export.csv" and ref["size"] == 12 and ref["content_type"] == "text/csv"
    assert ref["url"].startswith(f"nats-object://{prefix.upper()}_FILES/")

    client = await turnlog.Client.connect(servers.nats_url, prefix=prefix)
    try:
        session = client.session("prompts", user={"id": "alice"})
        asking, block = await ask(session, "csv 30", "file_upload")
        await visible(api, session.id)
        answered = await api.post(
            f"/v1/sessions/{session.id}/prompts/{block['prompt_id']}",
            json={"file": ref},
            headers=auth(ALICE),
        )
        assert answered.status_code == 200, answered.text
        assert answered.json() == {
            "session_id": session.id, "prompt_id": block["prompt_id"], "answer": "file"
        }  # fmt: skip
        assert (await asking).reply == "Received export.csv: 3 rows, 12 bytes"

        # The same prompt again: nobody waits for it any more.
        again = await api.post(
            f"/v1/sessions/{session.id}/prompts/{block['prompt_id']}",
            json={"file": ref},
            headers=auth(ALICE),
        )
        assert again.status_code == 409 and again.json()["code"] == "prompt_refused"

        # An integration prompt declined over HTTP.
        asking, block = await ask(session, "github 30", "integration")
        declined = await api.post(
            f"/v1/sessions/{session.id}/prompts/{block['prompt_id']}",
            json={"declined": True},
            headers=auth(ADMIN),
        )
        assert declined.status_code == 200, declined.text
        assert (await asking).reply == "fine, no GitHub then"
    finally:
        await client.close()


async def test_who_may_upload_and_answer_and_the_size_limit(
    api: httpx.AsyncClient, servers: Endpoints, prefix: str
) -> None:
    reader = await api.post(
        "/v1/files", params={"name": "x.txt"}, content=b"x", headers=auth(READER)
    )
    assert reader.status_code == 403 and reader.json()["code"] == "forbidden"
    nobody = await api.post("/v1/files", params={"name": "x.txt"}, content=b"x")
    assert nobody.status_code == 401
    big = await api.post(
        "/v1/files", params={"name": "big.bin"}, content=b"0" * (65 * 1024), headers=auth(ADMIN)
    )
    assert big.status_code == 413 and big.json()["code"] == "too_large"
    assert "files may be at most 64.0 KiB" in big.json()["message"]

    client = await turnlog.Client.connect(servers.nats_url, prefix=prefix)
    try:
        bob = client.session("prompts", user={"id": "bob"})
        assert (await bob.send_message("hello")).reply == "echo hello"
        await visible(api, bob.id)
        # Alice's key does not see Bob's session; a bad answer is a clear 400.
        other = await api.post(
            f"/v1/sessions/{bob.id}/prompts/p1", json={"declined": True}, headers=auth(ALICE)
        )
        assert other.status_code == 404
        both = await api.post(f"/v1/sessions/{bob.id}/prompts/p1", json={}, headers=auth(ADMIN))
        assert both.status_code == 400 and both.json()["code"] == "invalid_request"
    finally:
        await client.close()
