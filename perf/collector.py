"""Samples the stack once a second during a load test (a thread with its own event loop).

CPU and RSS per process (/proc), machine busy %, Redis INFO (ops/s, CPU, memory, clients),
every service's /metrics (events consumed per second), and consumer lag per group and topic
(end offsets minus committed offsets, read with aiokafka's admin and consumer APIs). A status
line per second shows the load driver's rate, p99 and errors beside the total lag.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

import redis as redis_sync
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from perf.machine import machine_jiffies, process_cpu_s
from perf.results import empty_collector

log = logging.getLogger(__name__)
GROUPS = ("reservation", "payment", "seat_projection", "queue")


def rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def events_consumed(url: str) -> float | None:
    try:
        with urllib.request.urlopen(url + "/metrics", timeout=0.5) as r:
            text = r.read().decode()
    except OSError:
        return None
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("events_consumed_total{")
    )


class Sampler:
    def __init__(
        self,
        t0: float,
        processes: Callable[[], Mapping[str, list[int]]],
        redis_url: str,
        brokers: str,
        services: Mapping[str, str],
        status: Callable[[], str] = lambda: "",
    ) -> None:
        self.t0 = t0
        self.processes = processes
        self.redis = redis_sync.Redis.from_url(redis_url, socket_timeout=0.5)
        self.brokers = brokers
        self.services = dict(services)
        self.status = status
        self.data = empty_collector()
        self.data["redis"] = {"ops_per_s": [], "cpu_pct": [], "used_memory_mb": [], "clients": []}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="collector", daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.redis.close()

    def _run(self) -> None:
        asyncio.run(self._loop())

    async def _loop(self) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.brokers, request_timeout_ms=3000)
        ends = AIOKafkaConsumer(bootstrap_servers=self.brokers, enable_auto_commit=False)
        try:
            await admin.start()
            await ends.start()
        except Exception as exc:  # lag is then simply absent from the report
            log.warning("collector: no consumer lag (%s)", exc)
            admin = None
        prev = self._snapshot()
        while not self._stop.is_set():
            await asyncio.sleep(1.0)
            now = self._snapshot()
            lag = await self._lag(admin, ends) if admin is not None else {}
            self._record(prev, now, lag)
            prev = now
            line = self.status()
            total_lag = sum(lag.values())
            print(f"  t={now['t']:6.0f}s {line}  lag {total_lag:.0f}", flush=True)
        with contextlib.suppress(Exception):
            await ends.stop()
            if admin is not None:
                await admin.close()

    def _snapshot(self) -> dict[str, Any]:
        info: dict[str, Any] = {}
        with contextlib.suppress(Exception):
            info = dict(self.redis.info())
        processes = self.processes()  # once: a load process may come or go between two calls
        return {
            "t": time.monotonic() - self.t0,
            "cpu": {name: sum(process_cpu_s(p) for p in pids) for name, pids in processes.items()},
            "rss": {name: sum(rss_mb(p) for p in pids) for name, pids in processes.items()},
            "machine": machine_jiffies(),
            "redis": info,
            "events": {name: events_consumed(url) for name, url in self.services.items()},
        }

    async def _lag(self, admin: Any, ends: AIOKafkaConsumer) -> dict[str, float]:
        out: dict[str, float] = {}
        for group in GROUPS:
            try:
                committed = await admin.list_consumer_group_offsets(group)
            except Exception:
                continue
            tps = [tp for tp in committed if not tp.topic.endswith("-changelog")]
            if not tps:
                continue
            try:
                end = await ends.end_offsets([TopicPartition(tp.topic, tp.partition) for tp in tps])
            except Exception:
                continue
            for tp in tps:
                key = f"{group}/{tp.topic}"
                out[key] = out.get(key, 0.0) + max(0, end[tp] - committed[tp].offset)
        return out

    def _record(self, a: dict[str, Any], b: dict[str, Any], lag: dict[str, float]) -> None:
        d = self.data
        dt = max(1e-6, b["t"] - a["t"])
        n = len(d["t"])
        d["t"].append(round(b["t"], 2))
        for name, cpu in b["cpu"].items():
            pct = max(0.0, (cpu - a["cpu"].get(name, cpu)) / dt * 100)
            d["cpu_pct"].setdefault(name, [0.0] * n).append(round(pct, 1))
            d["rss_mb"].setdefault(name, [0.0] * n).append(round(b["rss"][name], 1))
        busy = b["machine"][0] - a["machine"][0]
        total = b["machine"][1] - a["machine"][1]
        d["machine_busy_pct"].append(round(100 * busy / total, 1) if total else 0.0)
        ra, rb = a["redis"], b["redis"]
        r = d["redis"]
        r["ops_per_s"].append(float(rb.get("instantaneous_ops_per_sec", 0)))
        cpu_a = ra.get("used_cpu_sys", 0) + ra.get("used_cpu_user", 0)
        cpu_b = rb.get("used_cpu_sys", 0) + rb.get("used_cpu_user", 0)
        r["cpu_pct"].append(round(max(0.0, (cpu_b - cpu_a) / dt * 100), 1))
        r["used_memory_mb"].append(round(rb.get("used_memory", 0) / 2**20, 1))
        r["clients"].append(float(rb.get("connected_clients", 0)))
        for name, value in b["events"].items():
            before = a["events"].get(name)
            rate = (value - before) / dt if value is not None and before is not None else 0.0
            d["events_consumed_per_s"].setdefault(name, [0.0] * n).append(round(rate, 1))
        for key, value in lag.items():
            d["consumer_lag"].setdefault(key, [0.0] * n).append(value)
        for series in (*d["consumer_lag"].values(), *d["cpu_pct"].values()):
            if len(series) < n + 1:
                series.append(0.0)
        for series in d["rss_mb"].values():
            if len(series) < n + 1:
                series.append(0.0)
