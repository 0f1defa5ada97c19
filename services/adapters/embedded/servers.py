"""Embedded servers shared by every turnlog process that uses one data directory.

A file lock serialises starting and stopping. Each process that needs the servers holds a
lease (a file named after its pid); ``turnlog infra up`` pins them instead. When the last
live lease is released and nothing pins them, the servers are stopped.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import structlog

from turnlog.services.adapters.embedded.nats import EmbeddedNats, NatsStatus
from turnlog.services.adapters.embedded.postgres import EmbeddedPostgres, PostgresStatus
from turnlog.services.adapters.embedded.processes import InfraError, alive

log = structlog.get_logger("turnlog.infra")


@dataclass(frozen=True)
class EmbeddedStatus:
    postgres: PostgresStatus | None
    nats: NatsStatus | None
    pinned: bool
    holders: tuple[int, ...]


class EmbeddedInfra:
    """The embedded PostgreSQL and NATS under one ``home`` directory."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.postgres = EmbeddedPostgres(home)
        self.nats = EmbeddedNats(home)
        self._ports = home / "ports.json"
        self._leases = home / "leases"
        self._pin = home / "pinned"

    def acquire(
        self, *, postgres: bool = True, nats: bool = True, pin: bool = False
    ) -> EmbeddedStatus:
        """Start what is not running yet and hold it for this process (or pin it)."""
        with self._locked():
            ports = self._read_ports()
            pg = self.postgres.status()
            if postgres and pg is None:
                log.info("starting embedded postgres", home=str(self.home))
                pg = self.postgres.start(ports.get("postgres"))
            ns = self.nats.status()
            if nats and ns is None:
                log.info("starting embedded nats", home=str(self.home))
                ns = self.nats.start(ports.get("nats"))
            self._write_ports(pg, ns)
            if pin:
                self._pin.touch()
            else:
                (self._leases / str(os.getpid())).touch()
            return self._status(pg, ns)

    def release(self) -> bool:
        """Drop this process's lease; stop the servers if it was the last. True if stopped."""
        with self._locked():
            (self._leases / str(os.getpid())).unlink(missing_ok=True)
            if self._pin.exists() or self._live_holders():
                return False
            self._stop_all()
            return True

    def down(self, *, force: bool = False) -> EmbeddedStatus:
        """Stop both servers; refuses while other live processes hold them unless forced."""
        with self._locked():
            holders = [pid for pid in self._live_holders() if pid != os.getpid()]
            if holders and not force:
                raise InfraError(
                    "embedded servers are in use by process(es) "
                    f"{', '.join(map(str, holders))}; stop them first or pass --force"
                )
            before = self._status(self.postgres.status(), self.nats.status())
            self._stop_all()
            self._pin.unlink(missing_ok=True)
            for lease in self._leases.glob("*"):
                lease.unlink(missing_ok=True)
            return before

    def status(self) -> EmbeddedStatus:
        return self._status(self.postgres.status(), self.nats.status())

    def _status(self, pg: PostgresStatus | None, ns: NatsStatus | None) -> EmbeddedStatus:
        return EmbeddedStatus(
            postgres=pg, nats=ns, pinned=self._pin.exists(), holders=tuple(self._live_holders())
        )

    def _stop_all(self) -> None:
        log.info("stopping embedded servers", home=str(self.home))
        self.nats.stop()
        self.postgres.stop()

    def _live_holders(self) -> list[int]:
        live: list[int] = []
        if not self._leases.is_dir():
            return live
        for lease in self._leases.iterdir():
            pid = int(lease.name) if lease.name.isdigit() else 0
            if alive(pid):
                live.append(pid)
            else:
                lease.unlink(missing_ok=True)
        return sorted(live)

    def _read_ports(self) -> dict[str, int]:
        try:
            data = json.loads(self._ports.read_text())
        except (OSError, ValueError):
            return {}
        return {k: int(v) for k, v in data.items() if isinstance(v, int)}

    def _write_ports(self, pg: PostgresStatus | None, ns: NatsStatus | None) -> None:
        ports = self._read_ports()
        if pg is not None:
            ports["postgres"] = pg.port
        if ns is not None:
            ports["nats"] = ns.port
        self._ports.write_text(json.dumps(ports))

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.home.mkdir(parents=True, exist_ok=True)
        self._leases.mkdir(exist_ok=True)
        with open(self.home / "infra.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
