"""The process's metrics, in a registry of its own: counters and a histogram fed as
things happen (the Metrics port), gauges set by a sampler, and the text Prometheus
scrapes (``render``), served on the API's ``/metrics`` or a port of its own."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from threading import Thread
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)

CONTENT_TYPE = CONTENT_TYPE_LATEST
TURN_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class PrometheusMetrics:
    """Every metric a turnlog process exposes (see docs/operations.md, "Metrics")."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._counted(self.registry)
        self._sampled(self.registry)
        self._server: Any = None

    def _counted(self, registry: CollectorRegistry) -> None:
        """What is counted as it happens (the Metrics port)."""
        self.turns = Counter(
            "turnlog_turns", "Turns ended, by app and outcome.", ["app", "outcome"],
            registry=registry,
        )  # fmt: skip
        self.turn_seconds = Histogram(
            "turnlog_turn_seconds",
            "Time from a message's arrival to its turn's outcome on record.",
            ["app"],
            buckets=TURN_BUCKETS,
            registry=registry,
        )
        self.dead_letters = Counter(
            "turnlog_dead_letters", "Inbound messages dead-lettered, by app and reason.",
            ["app", "reason"], registry=registry,
        )  # fmt: skip
        self.turns_resumed = Counter(
            "turnlog_turns_resumed",
            "Turns cut off (a crash, a kill, a lost lease) taken up again and run to their end.",
            ["app"], registry=registry,
        )  # fmt: skip

    def _sampled(self, registry: CollectorRegistry) -> None:
        """What the sampler sets every few seconds."""
        self.inbound_pending = Gauge(
            "turnlog_inbound_pending", "Inbound messages waiting for the app's runtime.",
            ["app"], registry=registry,
        )  # fmt: skip
        self.inbound_redelivered = Gauge(
            "turnlog_inbound_redelivered",
            "Inbound messages delivered more than once and not yet acknowledged.",
            ["app"],
            registry=registry,
        )
        self.live_sessions = Gauge(
            "turnlog_live_sessions", "Sessions held in memory by the app's runtime.",
            ["app"], registry=registry,
        )  # fmt: skip
        self.partitions = Gauge(
            "turnlog_partitions_owned", "Partitions of the app this runtime owns.",
            ["app"], registry=registry,
        )  # fmt: skip
        self.relay_lag = Gauge(
            "turnlog_relay_lag_events",
            "Events committed to the log but not yet published on the bus by the relay.",
            registry=registry,
        )
        self.projection_lag = Gauge(
            "turnlog_projection_lag_events",
            "Events committed to the log but not yet applied by the projection.",
            ["projection"],
            registry=registry,
        )
        self.projection_failed = Gauge(
            "turnlog_projection_failed",
            "1 while the projection is stopped at an event it cannot apply, else 0.",
            ["projection"],
            registry=registry,
        )

    # -- the Metrics port ---------------------------------------------------------------

    def turn_ended(self, app: str, outcome: str, seconds: float) -> None:
        self.turns.labels(app, outcome).inc()
        self.turn_seconds.labels(app).observe(seconds)

    def dead_lettered(self, app: str, reason: str) -> None:
        self.dead_letters.labels(app, reason).inc()

    def turn_resumed(self, app: str) -> None:
        self.turns_resumed.labels(app).inc()

    def partitions_owned(self, app: str, count: int) -> None:
        self.partitions.labels(app).set(count)

    # -- the sampler's gauges -----------------------------------------------------------

    def projections(self, lags: Mapping[str, int], failed: Iterable[str]) -> None:
        broken = set(failed)
        for name, lag in lags.items():
            self.projection_lag.labels(name).set(lag)
            self.projection_failed.labels(name).set(1 if name in broken else 0)

    # -- exposition ---------------------------------------------------------------------

    def render(self) -> bytes:
        """The metrics in Prometheus's text format."""
        return generate_latest(self.registry)

    def serve(self, host: str, port: int) -> None:
        """Serve ``/metrics`` on ``host:port`` (a thread of its own) until ``close``."""
        server, thread = start_http_server(port, host, registry=self.registry)
        self._server = (server, thread)

    def close(self) -> None:
        if self._server is not None:
            server, thread = self._server
            server.shutdown()
            server.server_close()
            if isinstance(thread, Thread):
                thread.join(timeout=5)
            self._server = None
