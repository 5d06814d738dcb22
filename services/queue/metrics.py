"""The queue service's domain metrics (HTTP and Redis latency metrics live beside them)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from shared.stream_metrics import consumed_counter, lag_gauge


class QueueMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.issued = Counter(
            "queue_tokens_issued_total", "New queue tokens issued", registry=registry
        )
        self.reentered = Counter(
            "queue_tokens_reentered_total",
            "Entries answered with the user's existing token",
            registry=registry,
        )
        self.validated = Counter(
            "queue_tokens_validated_total",
            "Token validations by result",
            ["result"],
            registry=registry,
        )
        self.validated.labels("valid")  # shown as 0 until the first validation
        self.admitted = Counter(
            "queue_tokens_admitted_total", "Tokens admitted waiting -> active", registry=registry
        )
        self.expired = Counter(
            "queue_tokens_expired_total", "Active tokens expired (unused TTL)", registry=registry
        )
        self.dropped = Counter(
            "queue_tokens_dropped_total",
            "Waiting tokens dropped (missed heartbeat)",
            registry=registry,
        )
        self.completed = Counter(
            "queue_tokens_completed_total", "Tokens completed or revoked", registry=registry
        )
        self.rate_limited = Counter(
            "queue_entries_rate_limited_total",
            "Entries refused by rate limit",
            ["scope"],
            registry=registry,
        )
        self.waiting = Gauge(
            "queue_waiting", "Waiting tokens per concert", ["concert_id"], registry=registry
        )
        self.active = Gauge(
            "queue_active", "Active tokens per concert", ["concert_id"], registry=registry
        )
        self.max_active = Gauge(
            "queue_max_active",
            "QUEUE_MAX_ACTIVE: active tokens a concert may hold at once",
            registry=registry,
        )
        # The queue's own consumer of seat.confirmed, named like the Faust workers' series.
        self.consumed = consumed_counter(registry)
        self.lag = lag_gauge(registry)
        self.admission_rate = Gauge(
            "queue_admission_rate",
            "Measured admissions per second",
            ["concert_id"],
            registry=registry,
        )
        self.admit_target = Gauge(
            "queue_admit_rate_target",
            "Admissions per second the controller chose (QUEUE_ADMIT_CONTROL=pipeline)",
            ["concert_id"],
            registry=registry,
        )
        self.admit_reason = Gauge(
            "queue_admit_control_reason",
            "1 for the reason of the controller's last decision: healthy, holding, behind, "
            "refusing or silent",
            ["concert_id", "reason"],
            registry=registry,
        )
        self.pipeline_delay = Gauge(
            "queue_pipeline_delay_ms",
            "The pipeline's worst reported event delay, as the admission controller read it "
            "(-1: no fresh report)",
            registry=registry,
        )
        self.sale = Gauge(
            "queue_sale_state",
            "1 for the concert's sale state: open, paused (every seat held or sold) or sold_out",
            ["concert_id", "state"],
            registry=registry,
        )
