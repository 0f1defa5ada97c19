"""Files and prompt answers over HTTP, beside the query API.

``POST /v1/files?name=report.csv`` stores the request body in turnlog's file store and
returns its reference; ``POST /v1/sessions/{id}/prompts/{prompt_id}`` answers a handler
waiting in ``prompt_file`` (with such a reference) or ``prompt_integration`` (declined),
through the bus like any producer. Both take an ``admin`` key or an app user's key (for
a prompt: of that session's user); ``read`` keys only read.

Litestar resolves handler annotations from this module's globals: every name in a
handler signature is imported at module level.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, Router, post
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody, PathParameter, QueryParameter

from turnlog.contracts import query as q
from turnlog.contracts.bus import PROMPT_ID
from turnlog.services.adapters.http.auth import SECURITY, caller
from turnlog.services.adapters.nats.client import Client, ClientError
from turnlog.services.adapters.nats.files import FileStore
from turnlog.services.app.access import (
    Keys,
    PayloadTooLarge,
    Principal,
    PromptRefused,
    forbidden,
    invalid,
)
from turnlog.services.app.ports import Queries
from turnlog.services.app.values import FileError

Store = NamedDependency[FileStore]
Producer = NamedDependency[Client]
Service = NamedDependency[Queries]
Who = NamedDependency[Principal]
FileName = Annotated[
    str, QueryParameter(description="The file's name", min_length=1, max_length=255)
]
SessionId = Annotated[str, PathParameter(description="The session's id")]
PromptId = Annotated[
    str, PathParameter(description="The prompt's id (from its block)", pattern=PROMPT_ID)
]


def _writer(who: Principal) -> None:
    if who.scope not in ("admin", "user"):
        raise forbidden("a read key cannot upload or answer prompts")


@post("/files", status_code=201, summary="Upload a file", description="The body is the file.")
async def upload_file(
    files: Store, who: Who, request: Request[Any, Any, Any], name: FileName
) -> q.FileRef:
    _writer(who)
    content_type = request.headers.get("content-type") or None
    try:
        size = int(request.headers.get("content-length") or 0)
    except ValueError:
        raise invalid("Content-Length is not a number") from None
    try:
        files.check_size(name, size)
        ref = await files.put_bytes(await request.body(), name, content_type)
    except FileError as e:
        raise PayloadTooLarge(str(e)) from None
    return q.FileRef(name=ref.name, content_type=ref.content_type, url=ref.url, size=ref.size)


@post(
    "/sessions/{session_id:str}/prompts/{prompt_id:str}",
    status_code=200,
    summary="Answer a waiting prompt",
)
async def answer_prompt(
    service: Service,
    producer: Producer,
    who: Who,
    session_id: SessionId,
    prompt_id: PromptId,
    data: JSONBody[q.PromptAnswerBody],
) -> q.PromptAnswered:
    _writer(who)
    session = await service.get_session(who, session_id)  # 404 unless the key sees it
    if data.declined == (data.file is not None):
        raise invalid("answer with a file, or with declined: true")
    channel = producer.session(session.app, session_id)
    try:
        if data.file is not None:
            f = data.file
            spec = {"name": f.name, "url": f.url, "size": f.size, "content_type": f.content_type}
            await channel.upload(prompt_id, spec, timeout=30)
        else:
            await channel.decline(prompt_id, timeout=30)
    except ClientError as e:
        raise PromptRefused(str(e)) from None
    finally:
        await channel.detach()
    answer = "declined" if data.declined else "file"
    return q.PromptAnswered(session_id=session_id, prompt_id=prompt_id, answer=answer)


def upload_routes(files: FileStore, producer: Client, service: Queries, keys: Keys) -> Router:
    """The routes, to serve beside the query API (``http_app(..., routes=[...])``)."""

    def provide(value: Any) -> Provide:
        return Provide(lambda: value, sync_to_thread=False)

    return Router(
        "/v1",
        route_handlers=[upload_file, answer_prompt],
        dependencies={
            "files": provide(files),
            "producer": provide(producer),
            "service": provide(service),
            "who": caller(keys),
        },
        security=[{SECURITY: []}],
        tags=["files"],
        request_max_body_size=files.max_bytes + 1024,
    )
