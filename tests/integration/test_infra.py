"""The embedded servers: up, status, down, and sharing between processes on one home.

These always use embedded servers in a temporary home of their own, whatever the
environment says, and always stop them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import new_home
from turnlog.services.adapters.embedded.processes import port_open
from turnlog.services.adapters.embedded.servers import EmbeddedInfra

HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from turnlog.services.settings import Settings
    from turnlog.services.adapters.embedded.endpoints import endpoints
    from turnlog.services.bootstrap.logs import configure
    settings = Settings.from_env()
    configure(settings)
    with endpoints(settings) as where:
        print(where.database_url, where.nats_url, flush=True)
        release = Path(sys.argv[1])
        while not release.exists():
            time.sleep(0.05)
""")


@pytest.fixture
def home() -> Iterator[Path]:
    path = new_home()
    try:
        yield path
    finally:
        EmbeddedInfra(path).down(force=True)
        shutil.rmtree(path, ignore_errors=True)


def env_for(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TURNLOG_")}
    env.update(TURNLOG_HOME=str(home), TURNLOG_LOG_LEVEL="warning")
    return env


def turnlog(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "turnlog", *args],
        env=env_for(home),
        text=True,
        capture_output=True,
        timeout=120,
        check=False,
    )


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


def test_up_status_down(home: Path) -> None:
    up = turnlog(home, "infra", "up")
    assert up.returncode == 0, up.stderr
    status = turnlog(home, "infra", "status")
    assert status.returncode == 0, status.stderr
    lines = {line.split()[0]: line.split() for line in status.stdout.splitlines()}
    assert lines["database"][1:3] == ["embedded", "running"]
    assert lines["nats"][1:3] == ["embedded", "running"]
    pg_url, nats_url = lines["database"][3], lines["nats"][3]
    assert pg_url.startswith("postgresql://postgres@127.0.0.1:")
    assert nats_url.startswith("nats://127.0.0.1:")
    assert port_open("127.0.0.1", port_of(pg_url)) and port_open("127.0.0.1", port_of(nats_url))

    again = turnlog(home, "infra", "up")  # already running: reused, same URLs
    assert pg_url in again.stdout and nats_url in again.stdout

    down = turnlog(home, "infra", "down")
    assert down.returncode == 0 and "stopped" in down.stdout
    assert not port_open("127.0.0.1", port_of(pg_url))
    assert not port_open("127.0.0.1", port_of(nats_url))
    after = turnlog(home, "infra", "status")
    assert after.returncode == 3 and "stopped" in after.stdout


def test_status_names_external_servers(home: Path) -> None:
    env = env_for(home) | {
        "TURNLOG_DATABASE_URL": "postgresql://db.invalid:5432/x",
        "TURNLOG_NATS_URL": "nats://127.0.0.1:1",
    }
    result = subprocess.run(
        [sys.executable, "-m", "turnlog", "infra", "status"],
        env=env,
        text=True,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert "database  external  unreachable postgresql://db.invalid:5432/x" in result.stdout
    assert "nats      external  unreachable nats://127.0.0.1:1" in result.stdout
    assert result.returncode == 3


def start_holder(home: Path, release: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(release)],
        env=env_for(home),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def test_processes_on_one_home_share_the_servers(home: Path) -> None:
    release_a, release_b = home / "release-a", home / "release-b"
    a, urls_a = start_holder(home, release_a)
    b, urls_b = start_holder(home, release_b)
    try:
        assert urls_a and urls_a == urls_b
        pg_port, nats_port = (port_of(u) for u in urls_a.split())
        status = EmbeddedInfra(home).status()
        assert sorted(status.holders) == sorted([a.pid, b.pid])

        refused = turnlog(home, "infra", "down")
        assert refused.returncode == 1 and "in use by process" in refused.stderr

        release_a.touch()
        a.wait(timeout=60)
        assert port_open("127.0.0.1", pg_port) and port_open("127.0.0.1", nats_port)

        release_b.touch()
        b.wait(timeout=60)
        assert not port_open("127.0.0.1", pg_port) and not port_open("127.0.0.1", nats_port)
    finally:
        release_a.touch()
        release_b.touch()
        for proc in (a, b):
            proc.wait(timeout=60)


def test_processes_starting_at_once_get_one_server(home: Path) -> None:
    release = home / "release"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(release)],
            env=env_for(home),
            text=True,
            stdout=subprocess.PIPE,
        )
        for _ in range(3)
    ]
    try:
        urls = {p.stdout.readline().strip() for p in procs if p.stdout}
        assert len(urls) == 1 and "" not in urls
        status = EmbeddedInfra(home).status()
        assert status.postgres is not None and status.nats is not None
    finally:
        release.touch()
        for proc in procs:
            proc.wait(timeout=60)
    deadline = time.monotonic() + 10
    while EmbeddedInfra(home).status().postgres is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert EmbeddedInfra(home).status().postgres is None


def test_a_killed_holder_does_not_keep_the_servers_forever(home: Path) -> None:
    release = home / "release"
    victim, urls = start_holder(home, release)
    survivor, _ = start_holder(home, release.with_name("release-2"))
    victim.kill()
    victim.wait(timeout=30)
    release.with_name("release-2").touch()
    survivor.wait(timeout=60)
    assert not port_open("127.0.0.1", port_of(urls.split()[0]))
