"""What one complete flow costs, measured rather than read from the code.

- Records per flow: the brokers' own end offsets of every topic (catalog topics and Faust
  changelogs alike) before and after the flows, divided by the flows that completed.
- CPU milliseconds per flow, per process: the collector's CPU samples over a phase, divided by
  the flows that phase completed; the load driver (and k6) are reported apart from the system.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from shared.topics import partitions_of

DRIVERS = ("load-driver", "k6")  # processes that generate the load, not serve it


async def end_offsets_by_topic(brokers: str) -> dict[str, int]:
    """Records ever written to each topic (internal and benchmark topics left out)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=brokers)
    await admin.start()
    try:
        topics = [t for t in await admin.list_topics() if not t.startswith(("__", "perf-raw-"))]
    finally:
        await admin.close()
    partitions = await partitions_of(brokers, *topics)
    consumer = AIOKafkaConsumer(bootstrap_servers=brokers, enable_auto_commit=False)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
    totals: dict[str, int] = {}
    for tp, offset in ends.items():
        totals[tp.topic] = totals.get(tp.topic, 0) + offset
    return totals


def records_per_flow(
    before: Mapping[str, int], after: Mapping[str, int], flows: int
) -> dict[str, float]:
    """Records each topic gained per completed flow, busiest first, with the total."""
    if flows <= 0:
        return {}
    gained = {t: after[t] - before.get(t, 0) for t in after if after[t] > before.get(t, 0)}
    per_flow = {t: round(n / flows, 2) for t, n in sorted(gained.items(), key=lambda x: -x[1])}
    return {"total": round(sum(gained.values()) / flows, 2), **per_flow}


def cpu_ms_per_flow(
    t: Sequence[float],
    cpu_pct: Mapping[str, Sequence[float]],
    start: float,
    end: float,
    flows: int,
) -> dict[str, float]:
    """CPU milliseconds per completed flow of each process between `start` and `end`, plus
    `system` (every process that serves) and `driver` (the load generators) totals."""
    if flows <= 0 or end <= start:
        return {}
    # Sample i is the % of one core used between t[i-1] and t[i]: 1 % over 1 s = 10 ms.
    inside = [i for i in range(1, len(t)) if start < t[i] <= end]
    if not inside:
        return {}
    per_process: dict[str, float] = {}
    for name, series in cpu_pct.items():
        cpu_ms = sum(series[i] * (t[i] - t[i - 1]) * 10 for i in inside if i < len(series))
        per_process[name] = round(cpu_ms / flows, 3)
    system = sum(ms for name, ms in per_process.items() if name not in DRIVERS)
    driver = sum(ms for name, ms in per_process.items() if name in DRIVERS)
    ordered = dict(sorted(per_process.items(), key=lambda x: -x[1]))
    return {"system": round(system, 3), "driver": round(driver, 3), **ordered}
