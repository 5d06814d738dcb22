"""Prometheus metrics every Faust service exposes: events in and out per topic, handler latency."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from shared.metrics import LATENCY_BUCKETS


class StreamMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.consumed = Counter(
            "events_consumed_total", "Events consumed by topic", ["topic"], registry=registry
        )
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
        self.lag = Gauge(
            "consumer_lag",
            "Messages not yet consumed (high-water mark minus position) by topic and partition",
            ["topic", "partition"],
            registry=registry,
        )
