"""Every Grafana panel's query returns data from a real Prometheus: Debian's `prometheus` scrapes
the four services and Debian's `prometheus-redis-exporter` while fans buy seats, with the
recording and alert rules loaded, and each panel's PromQL runs through the HTTP API. A panel
whose query returns nothing fails this test."""

from __future__ import annotations

import asyncio
import json
import shutil
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio
import yaml

from infra.embedded import Server, start_server
from infra.processes import free_port, stop_all, wait_until
from tests.support.pipeline import Pipeline, buyers, pipeline

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((ROOT / "infra" / "grafana" / "dashboards").glob("*.json"))
JOBS = {"queue": "queue", "reservation": "reservation", "payment": "payment"}
JOBS["seat-projection"] = "seat_projection"  # job name (as in infra/prometheus) -> service


def exporter_target(redis_url: str) -> str:
    """The exporter reads one node: a Cluster's first one (`make test-redis-cluster`)."""
    scheme, _, rest = redis_url.partition("://")
    if scheme == "redis+cluster":
        first = rest.split("/")[0].split("@")[-1].split(",")[0]
        return f"redis://{first}"
    return redis_url


def panels() -> list[tuple[str, str, str]]:
    """(dashboard, panel title, PromQL) for every target of every panel."""
    out = []
    for path in DASHBOARDS:
        doc = json.loads(path.read_text())
        for panel in doc["panels"]:
            for target in panel["targets"]:
                out.append((doc["title"], panel["title"], target["expr"]))
    return out


def binary(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} comes from Debian (make deps installs it)"
    return path


def ready(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/-/ready", timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def query(base: str, expr: str) -> list[Any]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as r:
        body = json.loads(r.read())
    assert body["status"] == "success", body
    result: list[Any] = body["data"]["result"]
    return result


@pytest_asyncio.fixture(loop_scope="session")
async def monitored(
    tmp_path: Path, redis_url: str, kafka_brokers: str
) -> AsyncIterator[tuple[Pipeline, str]]:
    """The pipeline, the Redis exporter and Prometheus scraping both every second."""
    servers: list[Server] = []
    # Holds short enough that the unpaid ones expire within the test (the hold-expiry series).
    async with pipeline(tmp_path, redis_url, kafka_brokers, SEAT_HOLD_S="2") as p:
        try:
            exporter_port = free_port()
            servers.append(
                await asyncio.to_thread(
                    start_server,
                    "redis exporter",
                    exporter_port,
                    [
                        binary("prometheus-redis-exporter"),
                        f"--redis.addr={exporter_target(redis_url)}",
                        f"--web.listen-address=127.0.0.1:{exporter_port}",
                    ],
                    tmp_path / "exporter.log",
                )
            )
            jobs = [
                {"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{p.ports[svc]}"]}]}
                for job, svc in JOBS.items()
            ]
            jobs.append(
                {
                    "job_name": "redis",
                    "static_configs": [{"targets": [f"127.0.0.1:{exporter_port}"]}],
                }
            )
            config = {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(ROOT / "infra" / "prometheus" / "rules.yml")],
                "scrape_configs": jobs,
            }
            (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
            port = free_port()
            servers.append(
                await asyncio.to_thread(
                    start_server,
                    "prometheus",
                    port,
                    [
                        binary("prometheus"),
                        f"--config.file={tmp_path / 'prometheus.yml'}",
                        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                        f"--web.listen-address=127.0.0.1:{port}",
                    ],
                    tmp_path / "prometheus.log",
                )
            )
            base = f"http://127.0.0.1:{port}"
            # The port opens before the storage is ready; until then queries answer 503.
            await asyncio.to_thread(wait_until, lambda: ready(base), timeout=60, what="prometheus")
            yield p, base
        finally:
            await asyncio.to_thread(stop_all, [s.proc for s in servers])


async def buy(p: Pipeline, fans: int) -> None:
    """Fans queue and reserve, two per seat (so some are rejected); the holders of every third
    seat never pay (their holds expire), the others pay."""
    concert = await p.create_concert(seats=fans // 2)
    tokens = await buyers(p, concert, fans)
    for i, (user, token) in enumerate(tokens):
        seat = i // 2 + 1
        status, body = await p.reserve(token, concert, str(seat), user)
        if status != 202 or seat % 3 == 0:
            continue
        held = await p.settled(body["reservation_id"], {"held", "rejected", "expired"})
        if held["status"] == "held":
            await p.pay(token, body["reservation_id"], user)


async def test_every_dashboard_query_returns_data(monitored: tuple[Pipeline, str]) -> None:
    p, prometheus = monitored
    assert len(panels()) >= 20
    up = await asyncio.to_thread(query, prometheus, "up")
    await asyncio.sleep(2.0)  # a few scrapes before the load, so rates have a baseline
    await buy(p, 40)
    empty: list[str] = []
    for _ in range(30):  # rates need two scrapes after the load; rules one evaluation
        await asyncio.sleep(1.0)
        empty = [
            f"{dash} / {title}: {expr}"
            for dash, title, expr in panels()
            if not await asyncio.to_thread(query, prometheus, expr)
        ]
        if not empty:
            break
    assert empty == [], f"panels without data (targets: {up})"
    targets = await asyncio.to_thread(query, prometheus, "up == 1")
    assert {t["metric"]["job"] for t in targets} == {*JOBS, "redis"}


async def test_the_recording_rules_produce_series(monitored: tuple[Pipeline, str]) -> None:
    p, prometheus = monitored
    await buy(p, 10)
    rules = yaml.safe_load((ROOT / "infra" / "prometheus" / "rules.yml").read_text())
    recorded = [r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r]
    missing: list[str] = []
    for _ in range(30):
        await asyncio.sleep(1.0)
        missing = [r for r in recorded if not await asyncio.to_thread(query, prometheus, r)]
        if not missing:
            break
    assert missing == []
