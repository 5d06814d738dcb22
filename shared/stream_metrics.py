"""Prometheus metrics every Faust service exposes: events in and out per topic, handler latency."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from shared.metrics import LATENCY_BUCKETS

# Why a record was not accepted: the producer never took it, the broker did not acknowledge
# it in time (it may still land), or the broker refused it.
SEND_FAILURE_REASONS = ("not_taken", "not_acknowledged", "refused")


def consumed_counter(registry: CollectorRegistry) -> Counter:
    """Events read per topic: every consumer of ours, the Faust workers' and the queue's."""
    return Counter(
        "events_consumed_total", "Events consumed by topic", ["topic"], registry=registry
    )


def lag_gauge(registry: CollectorRegistry) -> Gauge:
    """Records not yet read per partition: every consumer of ours (the lag alert's input)."""
    return Gauge(
        "consumer_lag",
        "Messages not yet consumed (high-water mark minus position) by topic and partition",
        ["topic", "partition"],
        registry=registry,
    )


class StreamMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.consumed = consumed_counter(registry)
        self.produced = Counter(
            "events_produced_total", "Events produced by topic", ["topic"], registry=registry
        )
        self.undecodable = Counter(
            "events_undecodable_total",
            "Messages skipped because they are not in the event catalog",
            ["topic"],
            registry=registry,
        )
        self.handler_latency = Histogram(
            "event_handler_duration_seconds",
            "Time to handle one event, by agent",
            ["agent"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.decisions = Counter(
            "decisions_total", "Decisions by outcome", ["outcome"], registry=registry
        )
        self.send_failures = Counter(
            "kafka_send_failures_total",
            "Records the broker did not take or acknowledge in time (answered 503)",
            ["topic", "reason"],
            registry=registry,
        )
        self.rebalances = Counter(
            "rebalances", "Consumer group rebalances this worker went through", registry=registry
        )
        self.rebalance_seconds = Histogram(
            "rebalance_duration_seconds",
            "From a rebalance's start until its partitions are served again (recovery included)",
            buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300),
            registry=registry,
        )
        self.lag = lag_gauge(registry)

    def expect_sends_to(self, *topics: str) -> None:
        """Export 0 failures for each topic and reason before the first one happens, so
        dashboards and the KafkaSendFailing alert see the series from the start."""
        for topic in topics:
            for reason in SEND_FAILURE_REASONS:
                self.send_failures.labels(topic, reason)
