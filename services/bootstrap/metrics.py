"""The gauges of a serving process, sampled every few seconds from what it runs: live
sessions and the inbound backlog of its app, the relay's and the projections' lag behind
the log. Counters and the turn histogram are fed as things happen (the Metrics port)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import structlog
from nats.js import JetStreamContext

from turnlog.projections.catalog import PROJECTIONS
from turnlog.services.adapters.nats.consumers import durables
from turnlog.services.adapters.nats.subjects import Subjects
from turnlog.services.adapters.postgres.eventstore import EventStore
from turnlog.services.adapters.postgres.projector import failures
from turnlog.services.adapters.prometheus.metrics import PrometheusMetrics
from turnlog.services.app.cancelling import checkpoint
from turnlog.services.app.sessions.host import SessionHost

log = structlog.get_logger("turnlog.metrics")

SAMPLE_EVERY = 5.0


@dataclass
class Sampler:
    """Sets ``metrics``' gauges from this process's parts (a supervised part)."""

    metrics: PrometheusMetrics
    store: EventStore
    host: SessionHost | None = None
    js: JetStreamContext | None = None
    subjects: Subjects | None = None
    every: float | None = None  # SAMPLE_EVERY

    async def run(self) -> None:
        while True:
            checkpoint()
            await self.sample()
            await asyncio.sleep(self.every or SAMPLE_EVERY)

    async def sample(self) -> None:
        """Every gauge, once; one that cannot be read now keeps its last value."""
        if self.host is not None:
            app = self.host.app.name
            self.metrics.live_sessions.labels(app).set(self.host.live_count())
            await self._inbound(app)
        try:
            await self._log()
        except Exception as e:  # the database away: the gauges keep their last values
            log.debug("log lag not sampled", error=str(e) or type(e).__name__)

    async def _inbound(self, app: str) -> None:
        """The app's backlog: what its consumers (the partitions' and the legacy lane's)
        have not handed out yet, and what they handed out more than once."""
        if self.js is None or self.subjects is None:
            return
        js, stream = self.js, self.subjects.stream_in
        found = await asyncio.gather(
            *(js.consumer_info(stream, d) for d in durables(self.subjects, app)),
            return_exceptions=True,
        )
        infos = [i for i in found if not isinstance(i, BaseException)]
        if not infos:
            errors = [e for e in found if isinstance(e, BaseException)]
            log.debug(
                "inbound backlog not sampled", error=str(errors[0]) or type(errors[0]).__name__
            )
            return
        self.metrics.inbound_pending.labels(app).set(sum(i.num_pending or 0 for i in infos))
        redelivered = sum(i.num_redelivered or 0 for i in infos)
        self.metrics.inbound_redelivered.labels(app).set(redelivered)

    async def _log(self) -> None:
        pool = self.store.pool
        last = await self.store.last_position()
        relayed = await pool.fetchval(
            "SELECT coalesce(max(position), 0) FROM turnlog_relay_positions"
        )
        self.metrics.relay_lag.set(max(last - int(relayed), 0))
        rows = await pool.fetch("SELECT name, position FROM turnlog_projection_positions")
        applied = {r[0]: r[1] for r in rows}
        lags = {name: max(last - applied.get(name, 0), 0) for name in PROJECTIONS}
        self.metrics.projections(lags, await failures.load(pool))
