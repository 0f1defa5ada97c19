"""Small process helpers shared by the embedded servers: ports, liveness, waiting."""

from __future__ import annotations

import os
import socket
import stat
import time
from pathlib import Path

import psutil

from turnlog.domain.errors import TurnlogError


class InfraError(TurnlogError):
    """Raised when an embedded server cannot be started, found or stopped."""

    code = "infra_error"


def free_port(preferred: int | None = None) -> int:
    """``preferred`` when it is free on 127.0.0.1, else a free port the kernel picks."""
    for candidate in (preferred, 0):
        if candidate is None:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            # As the servers do: a port whose old connections linger in TIME_WAIT is free.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise InfraError("no free TCP port on 127.0.0.1")


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(host, port, timeout=0.2):
            return
        time.sleep(0.05)
    raise InfraError(
        f"{what} did not accept connections on {host}:{port} within {timeout}s; see {log}"
    )


def alive(pid: int | None, marker: str | None = None) -> bool:
    """Whether ``pid`` runs and, given a marker, mentions it on its command line.

    The marker (a data directory) guards against a recycled pid of an unrelated process.
    A negative pid (PostgreSQL writes one for a standalone backend, as during initdb) is
    no running server.
    """
    if not pid or pid < 0:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return marker is None or any(marker in part for part in proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def make_traversable(path: Path) -> None:
    """Let another system user reach ``path``: add o+x to every ancestor that lacks it."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            os.chmod(parent, mode | stat.S_IXOTH)
