"""Benchmark reserve -> hold -> pay -> confirm end to end: `python -m perf.bench_reservation`.

`make bench-reservation` runs it. Starts the whole embedded stack (or uses REDIS_URL and
KAFKA_BROKERS), then in one run: the raw aiokafka produce -> consume rate on the same broker (the
ceiling), a saturation run (BENCH_FLOWS_CONCURRENCY flows in flight) for flows/s, and a
fixed-rate run (BENCH_FLOW_RATE flows/s offered, open loop) for end-to-end latency. A flow is
one user: POST reservation, long-poll until held, POST payment, long-poll until confirmed;
latency runs from the reservation POST to the confirmation being seen. Afterwards it checks the
rules (every flow confirmed, no seat confirmed twice, seat map agrees) and prints events/s per
agent from the services' own /metrics.

Environment (defaults): BENCH_SECONDS (10) per run, BENCH_FLOW_RATE (500),
BENCH_FLOWS_CONCURRENCY (128), PAYMENT_LATENCY_MS (50, the simulator's), BENCH_RAW_MESSAGES
(50000). Loopback only; everything started is stopped on exit, Ctrl-C or failure.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import uvloop
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from infra.processes import free_port
from infra.stack import ROOT, Stack
from perf.machine import cores, cpu_model, package_version, python_version
from perf.stats import percentile
from shared.settings import Env, SettingsError

RESULTS = ROOT / "perf" / "results"
SERVICES = ("reservation", "payment", "seat_projection", "queue")
# reservation.requested, seat.held, payment.requested, payment.completed, seat.confirmed
RECORDS_PER_FLOW = 5


@dataclass(frozen=True)
class Config:
    seconds: int
    rate: int
    concurrency: int
    payment_latency_ms: int
    raw_messages: int

    @classmethod
    def from_env(cls, e: Env | None = None) -> Config:
        e = e or Env()
        return cls(
            seconds=e.integer("BENCH_SECONDS", 10, minimum=1, maximum=3600),
            rate=e.integer("BENCH_FLOW_RATE", 500, minimum=1, maximum=100_000),
            concurrency=e.integer("BENCH_FLOWS_CONCURRENCY", 128, minimum=1, maximum=10_000),
            payment_latency_ms=e.integer("PAYMENT_LATENCY_MS", 50, minimum=0),
            raw_messages=e.integer("BENCH_RAW_MESSAGES", 50_000, minimum=1000),
        )


@dataclass
class FlowStats:
    name: str
    started: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0
    confirmed: list[tuple[str, str]] = field(default_factory=list)  # (seat, reservation)

    def fail(self, why: str) -> None:
        self.failures[why] = self.failures.get(why, 0) + 1

    def summary(self) -> dict[str, Any]:
        done = len(self.latencies_ms)
        return {
            "run": self.name,
            "flows_started": self.started,
            "flows_confirmed": done,
            "flows_failed": sum(self.failures.values()),
            "failures": self.failures,
            "elapsed_s": round(self.elapsed_s, 2),
            "flows_per_s": round(done / self.elapsed_s, 1) if self.elapsed_s else math.nan,
            "latency_ms": {
                "p50": percentile(self.latencies_ms, 50),
                "p95": percentile(self.latencies_ms, 95),
                "p99": percentile(self.latencies_ms, 99),
                "max": max(self.latencies_ms, default=math.nan),
            },
        }


class Driver:
    def __init__(self, http: aiohttp.ClientSession, urls: dict[str, str], concert: str) -> None:
        self.http = http
        self.urls = urls
        self.concert = concert

    async def _json(self, method: str, url: str, **kw: Any) -> tuple[int, Any]:
        async with self.http.request(method, url, **kw) as r:
            return r.status, await r.json()

    async def token(self, user: str) -> str:
        status, body = await self._json(
            "POST",
            self.urls["queue"] + "/v1/queue/tokens",
            json={"concert_id": self.concert, "user_id": user},
        )
        if status not in (200, 201):
            raise RuntimeError(f"queue entry failed: {status} {body}")
        token = str(body["token"])
        while body.get("status") != "active":
            await asyncio.sleep(0.1)
            _, body = await self._json("GET", self.urls["queue"] + f"/v1/queue/tokens/{token}")
        return token

    async def wait(self, rid: str, seen: str) -> str:
        url = self.urls["reservation"] + f"/v1/reservations/{rid}?wait_ms=10000&seen={seen}"
        for _ in range(6):
            _, body = await self._json("GET", url)
            if body["status"] != seen:
                return str(body["status"])
        return seen

    async def flow(self, user: str, token: str, seat: str, stats: FlowStats) -> None:
        stats.started += 1
        t0 = time.perf_counter()
        try:
            status, body = await self._json(
                "POST",
                self.urls["reservation"] + "/v1/reservations",
                json={"concert_id": self.concert, "seat_id": seat, "user_id": user},
                headers={"Queue-Token": token},
            )
            if status != 202:
                return stats.fail(f"reserve {status}")
            rid = body["reservation_id"]
            if (held := await self.wait(rid, "pending")) != "held":
                return stats.fail(f"not held: {held}")
            status, body = await self._json(
                "POST",
                self.urls["reservation"] + f"/v1/reservations/{rid}/payment",
                json={"user_id": user},
                headers={"Queue-Token": token},
            )
            if status != 202:
                return stats.fail(f"pay {status}")
            if (final := await self.wait(rid, "held")) != "confirmed":
                return stats.fail(f"not confirmed: {final}")
            stats.latencies_ms.append((time.perf_counter() - t0) * 1000)
            stats.confirmed.append((seat, rid))
        except (aiohttp.ClientError, TimeoutError, KeyError) as exc:
            stats.fail(type(exc).__name__)


async def raw_ceiling(brokers: str, n: int) -> float:
    """aiokafka alone: produce n ~300-byte records and consume them back, records/s."""
    topic = f"bench-raw-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=brokers)
    await admin.start()
    await admin.create_topics([NewTopic(topic, 4, 1)])
    await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=brokers, linger_ms=2, acks="all")
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=brokers, auto_offset_reset="earliest")
    await producer.start()
    await consumer.start()
    value = b"x" * 300
    try:
        t0 = time.perf_counter()

        async def produce() -> None:
            futs = [await producer.send(topic, value, key=str(i).encode()) for i in range(n)]
            await asyncio.gather(*futs)

        async def consume() -> None:
            seen = 0
            while seen < n:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    seen += len(records)

        await asyncio.gather(produce(), consume())
        return n / (time.perf_counter() - t0)
    finally:
        await producer.stop()
        await consumer.stop()


async def scrape(http: aiohttp.ClientSession, urls: dict[str, str]) -> dict[str, float]:
    """events_consumed_total summed per service."""
    out: dict[str, float] = {}
    for name in ("reservation", "payment", "seat_projection"):
        async with http.get(urls[name] + "/metrics") as r:
            text = await r.text()
        out[name] = sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("events_consumed_total{")
        )
    return out


async def run_saturation(d: Driver, users: list[tuple[str, str]], cfg: Config) -> FlowStats:
    stats = FlowStats("saturation")
    queue = iter(enumerate(users))
    deadline = time.perf_counter() + cfg.seconds

    async def worker() -> None:
        for i, (user, token) in queue:
            if time.perf_counter() > deadline:
                return
            await d.flow(user, token, str(i + 1), stats)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(cfg.concurrency)))
    stats.elapsed_s = time.perf_counter() - t0
    return stats


async def run_fixed(d: Driver, users: list[tuple[str, str]], cfg: Config, offset: int) -> FlowStats:
    """Open loop: start a flow every 1/rate s whatever the system does; latency per flow."""
    stats = FlowStats(f"fixed {cfg.rate}/s")
    tasks = []
    t0 = time.perf_counter()
    for i, (user, token) in enumerate(users):
        due = t0 + i / cfg.rate
        if (delay := due - time.perf_counter()) > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(d.flow(user, token, str(offset + i + 1), stats)))
    await asyncio.gather(*tasks)
    stats.elapsed_s = time.perf_counter() - t0
    return stats


async def tokens(d: Driver, prefix: str, n: int) -> list[tuple[str, str]]:
    gate = asyncio.Semaphore(200)

    async def one(i: int) -> tuple[str, str]:
        async with gate:
            user = f"{prefix}{i}"
            return user, await d.token(user)

    return list(await asyncio.gather(*(one(i) for i in range(n))))


async def bench(cfg: Config, urls: dict[str, str], admin: str, brokers: str) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=2000)
    async with aiohttp.ClientSession(connector=connector) as http:
        ceiling = await raw_ceiling(brokers, cfg.raw_messages)
        print(f"raw aiokafka produce->consume  {ceiling:,.0f} records/s", flush=True)
        n_sat = max(cfg.concurrency * 40, 2000)
        n_fixed = cfg.rate * cfg.seconds
        concert = f"bench-{uuid.uuid4().hex[:8]}"
        async with http.post(
            urls["reservation"] + "/v1/concerts",
            json={"concert_id": concert, "seats": min(100_000, n_sat + n_fixed), "price": 100},
            headers={"Authorization": f"Bearer {admin}"},
        ) as r:
            if r.status != 201:
                raise RuntimeError(f"create concert: {r.status} {await r.text()}")
        d = Driver(http, urls, concert)
        print(f"admitting {n_sat + n_fixed} users ...", flush=True)
        users = await tokens(d, "u", n_sat + n_fixed)
        before = await scrape(http, urls)
        sat = await run_saturation(d, users[:n_sat], cfg)
        after = await scrape(http, urls)
        per_agent = {k: round((after[k] - before[k]) / sat.elapsed_s, 1) for k in after}
        print_run(sat.summary())
        fixed = await run_fixed(d, users[n_sat:], cfg, n_sat)
        print_run(fixed.summary())
        confirmed = sat.confirmed + fixed.confirmed
        seats = [s for s, _ in confirmed]
        async with http.get(urls["seat_projection"] + f"/v1/concerts/{concert}/seats?limit=0") as r:
            counts = (await r.json())["counts"]
        violations = {
            "seat_confirmed_twice": len(seats) - len(set(seats)),
            "seat_map_sold_mismatch": abs(counts["sold"] - len(confirmed)),
        }
        return {
            "raw_records_per_s": round(ceiling, 1),
            "events_per_s_per_agent_during_saturation": per_agent,
            "runs": [sat.summary(), fixed.summary()],
            "rule_violations": violations,
            "seat_map_counts": counts,
        }


async def projected_counts(
    http: aiohttp.ClientSession, urls: dict[str, str], concert: str, sold: int
) -> dict[str, int]:
    """The seat map's counts once it shows `sold` seats sold, or whatever it shows after 10 s
    (the read model is eventually consistent: a mismatch is reported only if it persists)."""
    url = urls["seat_projection"] + f"/v1/concerts/{concert}/seats?limit=0"
    deadline = time.monotonic() + 10
    while True:
        async with http.get(url) as r:
            counts: dict[str, int] = (await r.json())["counts"]
        if counts["sold"] == sold or time.monotonic() > deadline:
            return counts
        await asyncio.sleep(0.2)


def print_run(s: dict[str, Any]) -> None:
    lat = s["latency_ms"]
    print(
        f"{s['run']:<14} {s['flows_per_s']:>8} flows/s  confirmed {s['flows_confirmed']:>6}  "
        f"failed {s['flows_failed']:>4}  p50 {lat['p50']:.1f}  p95 {lat['p95']:.1f}  "
        f"p99 {lat['p99']:.1f}  max {lat['max']:.1f} ms  {s['failures'] or ''}",
        flush=True,
    )


def main() -> int:
    try:
        cfg = Config.from_env()
    except SettingsError as exc:
        print(f"bench-reservation: bad setting: {exc}", file=sys.stderr)
        return 2
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    workdir = ROOT / ".run" / f"bench-reservation-{run_id}"
    stack = Stack(workdir)
    stack.env.update(
        {
            "APP_ENV": "dev",
            "QUEUE_ENTRY_RATE_PER_IP": "0",
            "QUEUE_ENTRY_RATE_PER_USER": "0",
            "QUEUE_ADMIT_PER_S": "100000",
            "QUEUE_MAX_ACTIVE": "10000000",
            "QUEUE_ACTIVE_TTL_S": "3600",
            "PAYMENT_LATENCY_MS": str(cfg.payment_latency_ms),
            "PAYMENT_CONCURRENCY": "512",
        }
    )
    print(f"machine  {cpu_model()}, {cores()}; {python_version()}; logs {workdir}", flush=True)
    try:
        stack.start_infra()
        for name in SERVICES:
            stack.start_service(name, port=free_port())
        urls = {s.name: s.url for s in stack.services}
        result = uvloop.run(bench(cfg, urls, stack.env["ADMIN_TOKEN"], stack.env["KAFKA_BROKERS"]))
    except KeyboardInterrupt:
        print("\ninterrupted; everything started was stopped", file=sys.stderr)
        return 130
    finally:
        stack.stop()
    sat = result["runs"][0]
    print(
        f"ratio    saturation records/s ({RECORDS_PER_FLOW} per flow) over the raw ceiling: "
        f"{sat['flows_per_s'] * RECORDS_PER_FLOW / result['raw_records_per_s']:.3f}"
    )
    print(f"events/s per agent (saturation): {result['events_per_s_per_agent_during_saturation']}")
    print(f"rule violations: {result['rule_violations']}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"bench-reservation-{run_id}.json"
    doc = {
        "date_utc": run_id,
        "machine": {"cpu": cpu_model(), "cores": cores(), "python": python_version()},
        "versions": {p: package_version(p) for p in ("faust-streaming", "aiokafka", "noida-db")},
        "config": cfg.__dict__,
        **result,
    }
    out.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    print(f"results  {Path(out).relative_to(ROOT)}")
    return 0 if not any(result["rule_violations"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
