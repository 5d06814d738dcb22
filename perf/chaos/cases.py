"""The failure cases: a topology, one fault injected under steady load (perf/chaos/faults.py),
and, for the cases that may, why queue tokens can be lost. perf/chaos/runner.py runs one."""

from __future__ import annotations

from dataclasses import dataclass, field

from perf.chaos.faults import (
    Fault,
    cluster_primary_down,
    compacted_rebuild,
    kafka_leader_down,
    kafka_two_down,
    kill_service,
    redis_restart,
    scale_reservation,
    sentinel_failover,
    terminate_service,
)


@dataclass(frozen=True)
class Size:
    fans_per_s: float
    seconds: float
    fault_at_s: float


FULL = Size(fans_per_s=40, seconds=40, fault_at_s=10)
SMOKE = Size(fans_per_s=15, seconds=12, fault_at_s=4)


@dataclass(frozen=True)
class Case:
    name: str
    topology: str
    what: str
    fault: Fault
    env: dict[str, str] = field(default_factory=dict)
    # Why this fault can lose queue tokens the fans were told about: then the tokens lost are a
    # measured figure (which and how many) rather than a broken invariant.
    may_lose_tokens: str = ""


ASYNC_REPLICATION = (
    "Redis replicates asynchronously: a failover can discard entries the promoted replica had "
    "not received (see the README's Failures section for what was measured)"
)
AOF_EVERY_SECOND = (
    "the append-only file is synced once a second: up to a second of entries answered before "
    "a SIGKILL of Redis is not on disk"
)


CASES: tuple[Case, ...] = (
    *(
        Case(f"kill-{name}", "single", f"SIGKILL of the {name} service", kill_service(name))
        for name in ("queue", "reservation", "payment", "seat_projection")
    ),
    *(
        Case(
            f"terminate-{name}", "single", f"SIGTERM of the {name} service", terminate_service(name)
        )
        for name in ("queue", "reservation", "payment", "seat_projection")
    ),
    Case(
        "redis-restart",
        "single",
        "SIGKILL of Redis, restarted on its data",
        redis_restart,
        may_lose_tokens=AOF_EVERY_SECOND,
    ),
    Case(
        "sentinel-failover",
        "sentinel",
        "SIGKILL of the Redis primary under Sentinel",
        sentinel_failover,
        may_lose_tokens=ASYNC_REPLICATION,
    ),
    Case(
        "sentinel-failover-wait",
        "sentinel",
        "the same, with token writes waiting for a replica (QUEUE_WAIT_REPLICAS=1)",
        sentinel_failover,
        {"QUEUE_WAIT_REPLICAS": "1"},
    ),
    Case(
        "cluster-primary-down",
        "cluster",
        "SIGKILL of the Redis Cluster primary serving the concert",
        cluster_primary_down,
        may_lose_tokens=ASYNC_REPLICATION,
    ),
    Case(
        "scale-reservation",
        "single",
        "reservation workers scaled 1 -> 2 -> 1",
        scale_reservation,
    ),
    Case(
        "compacted-rebuild",
        "single",
        "the seat agent's changelog compacted, then its worker SIGKILLed",
        compacted_rebuild,
    ),
    Case("kafka-leader-down", "kafka3", "SIGKILL of a partition leader", kafka_leader_down),
    Case("kafka-two-down", "kafka3", "two of three Kafka nodes SIGKILLed", kafka_two_down),
)
BY_NAME = {case.name: case for case in CASES}
