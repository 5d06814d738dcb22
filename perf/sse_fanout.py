"""Fans following their place over Server-Sent Events, on one queue process (README's page section).

    python -m perf.sse_fanout [--fans 1000,5000,10000] [--out DIR]      (make bench-sse)

For each count: an embedded Redis on loopback and one queue process (`python -m services.queue`,
gate closed so nobody is admitted), that many fans entered through the API, and one event
stream per fan from this process. It measures:
- memory per connection: the queue's RSS with every stream open, minus before, per stream;
- idle cost: the queue's CPU while every stream stays open and nothing moves;
- fan-out: the concert sells out (the seat fact the queue's consumer applies, written through
  the queue's own store); the time until each stream has its final `sold_out` (p50/p99/max),
  and the queue CPU spent telling everyone;
- Redis reads: WATCH calls per second while streams are open (one per concert per push tick,
  whatever the number of fans).
Everything is stopped at the end; the table is printed and written as DIR/report.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import orjson
from prometheus_client import CollectorRegistry

from infra.embedded import start_redis
from infra.processes import free_port, port_open, spawn, stop_all, wait_until
from infra.stack import ROOT
from services.queue.store import QueueStore
from shared.concerts import cache_concerts
from shared.identity import mint
from shared.redis_client import create_redis

CONCERT = "sse-bench"
SECRET = "sse-bench-identity-secret-0123456789abcdef"
IDLE_S = 10.0


@dataclass
class Result:
    fans: int
    rss_before_mb: float
    rss_open_mb: float
    kib_per_stream: float
    idle_cpu_pct: float
    watch_per_s: float
    fanout_p50_ms: float
    fanout_p99_ms: float
    fanout_max_ms: float
    fanout_cpu_s: float


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Stream:
    """One fan's open stream: when it opened, and when it said sold out."""

    def __init__(self) -> None:
        self.sold_out_at = 0.0
        self.first = asyncio.Event()

    async def follow(self, http: aiohttp.ClientSession, url: str) -> None:
        async with http.get(url) as response:
            assert response.status == 200, await response.text()
            async for raw in response.content:
                line = raw.decode()
                if line.startswith("data: "):
                    if orjson.loads(line[6:])["status"] == "sold_out":
                        self.sold_out_at = time.perf_counter()
                    self.first.set()


async def metric(http: aiohttp.ClientSession, base: str, op: str) -> float:
    async with http.get(f"{base}/metrics") as r:
        text = await r.text()
    found = re.search(rf'^redis_call_duration_seconds_count{{op="{op}"}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


async def measure(base: str, pid: int, fans: int, redis_url: str) -> Result:
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        tokens: list[str] = [""] * fans
        gate = asyncio.Semaphore(200)

        async def enter(i: int) -> None:
            async with gate:
                jwt = mint(SECRET, f"fan-{i:06d}")
                async with http.post(
                    f"{base}/v1/queue/tokens",
                    json={"concert_id": CONCERT},
                    headers={"Authorization": f"Bearer {jwt}"},
                ) as r:
                    assert r.status == 201, await r.text()
                    tokens[i] = (await r.json())["token"]

        await asyncio.gather(*(enter(i) for i in range(fans)))
        await asyncio.sleep(2)
        before = rss_mb(pid)
        streams = [Stream() for _ in range(fans)]
        tasks = []
        for start in range(0, fans, 500):  # connect in batches, as fans would trickle in
            for i in range(start, min(fans, start + 500)):
                url = f"{base}/v1/queue/tokens/{tokens[i]}/events"
                tasks.append(asyncio.create_task(streams[i].follow(http, url)))
            opening = (s.first.wait() for s in streams[start : start + 500])
            await asyncio.wait_for(asyncio.gather(*opening), 60)
        await asyncio.sleep(3)
        opened = rss_mb(pid)

        watch_0, cpu_0, t_0 = await metric(http, base, "watch"), cpu_s(pid), time.perf_counter()
        await asyncio.sleep(IDLE_S)
        idle_cpu = (cpu_s(pid) - cpu_0) / (time.perf_counter() - t_0) * 100
        watch_rate = (await metric(http, base, "watch") - watch_0) / (time.perf_counter() - t_0)

        cpu_1, sold_at = cpu_s(pid), time.perf_counter()
        redis = create_redis(redis_url, socket_timeout=2, max_connections=1)
        try:
            await QueueStore(redis, CollectorRegistry()).seats([(CONCERT, "1", "s", 1)], 3600)
        finally:
            await redis.aclose()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 60)
        told = [s for s in streams if s.sold_out_at]
        if len(told) < fans:
            raise RuntimeError(f"only {len(told)} of {fans} streams were told sold out")
        delays = sorted((s.sold_out_at - sold_at) * 1000 for s in told)
        fanout_cpu = cpu_s(pid) - cpu_1
    return Result(
        fans=fans,
        rss_before_mb=before,
        rss_open_mb=opened,
        kib_per_stream=(opened - before) * 1024 / fans,
        idle_cpu_pct=idle_cpu,
        watch_per_s=watch_rate,
        fanout_p50_ms=statistics.median(delays),
        fanout_p99_ms=delays[min(len(delays) - 1, int(len(delays) * 0.99))],
        fanout_max_ms=delays[-1],
        fanout_cpu_s=fanout_cpu,
    )


async def one_run(workdir: Path, fans: int) -> Result:
    redis = start_redis(workdir / "redis")
    port = free_port()
    env = {
        "PATH": os.environ["PATH"],
        "APP_ENV": "dev",
        "REDIS_URL": f"redis://{redis.address}/0",
        "QUEUE_HOST": "127.0.0.1",
        "QUEUE_PORT": str(port),
        "QUEUE_TOKEN_SECRET": "sse-bench-queue-token-secret-0123456789",
        "IDENTITY_JWT_SECRET": SECRET,
        "QUEUE_ADMIT_CONTROL": "fixed",
        "QUEUE_ADMIT_PER_S": "0",  # nobody is admitted: every fan keeps a stream open
        "QUEUE_ENTRY_RATE_PER_IP": "0",
        "QUEUE_ENTRY_RATE_PER_USER": "0",
        "QUEUE_PUSH_INTERVAL_MS": "500",
    }
    queue = spawn(
        [sys.executable, "-m", "services.queue"], env=env, cwd=ROOT, log=workdir / "queue.log"
    )
    try:
        wait_until(lambda: port_open(port), timeout=30, what="the queue", proc=queue)
        client = create_redis(f"redis://{redis.address}/0", socket_timeout=2, max_connections=1)
        await cache_concerts(client, [(CONCERT, 1, 100)])  # one seat: one fact sells it out
        await client.aclose()
        return await measure(
            f"http://127.0.0.1:{port}", queue.pid, fans, f"redis://{redis.address}/0"
        )
    finally:
        stop_all([queue])
        redis.stop()


def table(results: list[Result]) -> str:
    rows = [
        "| fans (streams) | queue RSS before → open | per stream | idle CPU | WATCH/s "
        "| fan-out p50 / p99 / max | fan-out CPU |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        rows.append(
            f"| {r.fans:,} | {r.rss_before_mb:.0f} → {r.rss_open_mb:.0f} MB "
            f"| {r.kib_per_stream:.1f} KiB | {r.idle_cpu_pct:.1f} % | {r.watch_per_s:.1f} "
            f"| {r.fanout_p50_ms:.0f} / {r.fanout_p99_ms:.0f} / {r.fanout_max_ms:.0f} ms "
            f"| {r.fanout_cpu_s:.2f} s |"
        )
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fans", default="1000,5000,10000")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    counts = [int(n) for n in args.fans.split(",")]
    results = []
    for fans in counts:
        with tempfile.TemporaryDirectory() as tmp:
            results.append(asyncio.run(one_run(Path(tmp), fans)))
            print(table(results[-1:]).splitlines()[-1], flush=True)
    text = table(results)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = Path(args.out) if args.out else ROOT / "perf" / "reports" / f"{stamp}-sse"
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(
        f"# Server-Sent Events fan-out, run {stamp}\n\n"
        f"`python -m perf.sse_fanout --fans {args.fans}` on this machine: one queue process, "
        "gate closed, push tick 500 ms; fan-out: the concert sells out and every stream is "
        f"told. The client holding the streams runs on the same cores.\n\n{text}\n"
    )
    print(f"\n{text}\n\nwritten to {out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
