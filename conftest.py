"""What every test run shares: the real servers (``servers``), and the examples of
README.md and docs/*.md, which run as tests (sybil).

How the examples run
--------------------
Every ```python block of a page runs, in page order, all the blocks of one page in one
namespace, as if typed into ``python -m asyncio``:

- Top-level ``await`` works. A block that awaits runs to completion on the page's event
  loop, which lives as long as the page: a client connected in one block is used in the
  next, and what a block starts in the background (an app being served) goes on running
  whenever a later block awaits. Blocks without ``await`` are plain ``exec``.
- A page may use, without defining them: ``NATS_URL`` (a NATS server with JetStream) and
  ``DATABASE_URL`` (a PostgreSQL database of the page's own), on the servers started for
  the test run; and ``await serve(app)``, which does in the background what ``turnlog run
  app.py`` does (the app's runtime, the relay, the projector and the query API), stopping
  what the page served before; after it, ``HTTP_URL`` is that query API and ``API_KEY`` an
  ``admin`` key of it. Everything is stopped when the page ends.
- Each page runs in a temporary working directory, and under a NATS subject prefix of its
  own, so pages never see each other's streams (nor those of a deployment the servers may
  hold): while the page runs, ``turnlog.Client.connect``'s default prefix is that one, and
  so is ``TURNLOG_SUBJECT_PREFIX`` in the environment, which an example that names
  subjects itself reads.
- Blocks that only stand in for a step outside Python (``turnlog run app.py``) or check
  what an example did are kept out of sight in the page:
  ``<!-- invisible-code-block: python`` ... ``-->``.
- ``<!-- skip: next -->`` before a block leaves it out; only for fragments that cannot run,
  with the reason next to it.

Blocks in ```bash, ```console, ```text or ```sh are not run.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import structlog
from sybil import Example, Sybil
from sybil.parsers.markdown import CodeBlockParser, PythonCodeBlockParser, SkipParser

from tests.servers import create_database, delete_streams, drop_database, running_servers
from turnlog.services.adapters.embedded.endpoints import Endpoints
from turnlog.services.adapters.embedded.processes import free_port
from turnlog.services.adapters.nats.client import Client
from turnlog.services.bootstrap.serve import Parts
from turnlog.services.bootstrap.serve import serve as serve_parts
from turnlog.services.sdk.app import App
from turnlog.services.settings import Settings


def pytest_configure(config: pytest.Config) -> None:
    """Logs with plain tracebacks: structlog's default renders each logged traceback
    with every local variable, which takes minutes for a large hostile value."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="%Y-%m-%d %H:%M:%S", utc=False),
            structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback),
        ]
    )


@pytest.fixture(scope="session")
def servers() -> Iterator[Endpoints]:
    """PostgreSQL and NATS for the whole run: embedded ones on free ports in a temporary
    home (stopped and removed at the end), or the external ones of TURNLOG_DATABASE_URL and
    TURNLOG_NATS_URL."""
    with running_servers() as endpoints:
        yield endpoints


# -- the documentation's examples ------------------------------------------------------

DOC_API_KEY = "docs-admin-key-0123456789"
START_TIMEOUT = 30.0


@dataclass
class Page:
    """One page's servers, event loop, working directory and served app."""

    servers: Endpoints
    database_url: str
    prefix: str
    workdir: Path
    runner: asyncio.Runner
    namespace: dict[str, Any] = field(default_factory=dict)
    serving: asyncio.Task[None] | None = None

    def enter(self, namespace: dict[str, Any]) -> None:
        """Give the page's namespace its names (once)."""
        if self.namespace is namespace:
            return
        self.namespace = namespace
        namespace.update(NATS_URL=self.servers.nats_url, DATABASE_URL=self.database_url)
        namespace["serve"] = self.serve

    async def serve(self, app: App) -> None:
        """What ``turnlog run app.py`` does, in the background, until the page ends."""
        await self.stop_serving()
        port = free_port()
        settings = Settings(
            home=self.workdir / ".turnlog",
            subject_prefix=self.prefix,
            ack_wait=2.0,
            api_keys=f"{DOC_API_KEY}:admin",
            http_port=port,
        )
        ready = asyncio.Event()
        parts = Parts(app=app, relay=True, projector=True, api=True)
        task = asyncio.create_task(
            serve_parts(
                settings,
                self.database_url,
                self.servers.nats_url,
                parts,
                ready=ready,
                handle_signals=False,
            )
        )
        self.serving = task
        waiting = asyncio.create_task(ready.wait())
        await asyncio.wait([task, waiting], timeout=START_TIMEOUT, return_when="FIRST_COMPLETED")
        waiting.cancel()
        if task.done():
            task.result()
        if not ready.is_set():
            raise AssertionError(f"{app!r} was not served within {START_TIMEOUT:g} s")
        await _listening(port)
        self.namespace.update(HTTP_URL=f"http://127.0.0.1:{port}", API_KEY=DOC_API_KEY)

    async def stop_serving(self) -> None:
        task, self.serving = self.serving, None
        if task is None:
            return
        task.cancel()
        _, running = await asyncio.wait([task], timeout=START_TIMEOUT)
        if running:
            raise AssertionError("turnlog did not stop within 30 s of being cancelled")
        error = None if task.cancelled() else task.exception()
        if error is not None:
            raise error


async def _listening(port: int) -> None:
    """Wait until the query API accepts connections (its part starts after ``ready``)."""
    for _ in range(int(START_TIMEOUT / 0.05)):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        return
    raise AssertionError(f"the query API did not listen on port {port}")


@pytest.fixture(scope="module")
def _page(servers: Endpoints, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Page]:
    """The page being run (sybil makes each page a pytest module)."""
    workdir = tmp_path_factory.mktemp("page")
    name = f"turnlog_doc_{uuid.uuid4().hex[:12]}"
    prefix = f"d{uuid.uuid4().hex[:10]}"
    runner = asyncio.Runner()
    database_url = runner.run(create_database(servers.database_url, name))
    page = Page(servers, database_url, prefix, workdir, runner)
    defaults = Client.connect.__kwdefaults__
    assert defaults is not None
    was_prefix, defaults["prefix"] = defaults["prefix"], prefix
    was_env = os.environ.get("TURNLOG_SUBJECT_PREFIX")
    os.environ["TURNLOG_SUBJECT_PREFIX"] = prefix
    cwd = Path.cwd()
    os.chdir(workdir)
    try:
        yield page
    finally:
        os.chdir(cwd)
        defaults["prefix"] = was_prefix
        if was_env is None:
            del os.environ["TURNLOG_SUBJECT_PREFIX"]
        else:
            os.environ["TURNLOG_SUBJECT_PREFIX"] = was_env
        try:
            runner.run(page.stop_serving())
        finally:
            runner.close()  # cancels whatever the page left running
            asyncio.run(_clean_up(servers, name, prefix))


async def _clean_up(servers: Endpoints, database: str, prefix: str) -> None:
    await drop_database(servers.database_url, database)
    await delete_streams(servers.nats_url, prefix)


def evaluate(example: Example) -> None:
    """Run a block: exec, or with top-level await on the page's event loop."""
    __tracebackhide__ = True
    namespace = example.namespace
    page: Page = namespace["_page"]
    page.enter(namespace)
    source = "\n" * (example.line + example.parsed.line_offset) + example.parsed
    flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    code = compile(source, str(example.path), "exec", flags=flags, dont_inherit=True)
    if code.co_flags & inspect.CO_COROUTINE:
        page.runner.run(eval(code, namespace))
    else:
        exec(code, namespace)
    namespace.pop("__builtins__", None)


class PythonBlocks(PythonCodeBlockParser):
    """```python blocks (and invisible ones), run by ``evaluate``."""

    def __init__(self) -> None:
        super().__init__()
        self.codeblock_parser = CodeBlockParser("python", evaluate)


pytest_collect_file = Sybil(
    parsers=[PythonBlocks(), SkipParser()],
    patterns=["README.md", "docs/*.md"],
    excludes=["*/README.md", "*/docs/*.md"],  # the top-level ones only
    fixtures=["_page"],
).pytest()
