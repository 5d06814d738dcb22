"""Session-wide real servers: one Redis and one Apache Kafka broker on free loopback ports.

REDIS_URL / KAFKA_BROKERS in the environment point the suite at existing servers instead;
REDIS_TOPOLOGY=cluster starts a Redis Cluster (three primaries, three replicas) for it;
KAFKA_BROKER_IMPL=noida runs it on the noida-db fallback. Tests that stop or kill a server start
their own private one; the failure matrix (tests/chaos) starts the topologies it needs.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.embedded import Server, start_brokers, start_redis
from infra.redis_cluster import start_redis_cluster
from shared import compat

# What each service's entrypoint does first: the library patches (shared/compat.py), for the
# apps the tests build in this process.
compat.install()


@pytest.fixture(scope="session")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="ticketing-test-") as d:
        yield Path(d)


@pytest.fixture(scope="session")
def redis_url(workdir: Path) -> Iterator[str]:
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    if os.environ.get("REDIS_TOPOLOGY") == "cluster":  # make test-redis-cluster
        cluster = start_redis_cluster(workdir / "redis-cluster")
        try:
            yield cluster.url
        finally:
            cluster.stop()
        return
    server = start_redis(workdir / "redis")
    try:
        yield f"redis://{server.address}/0"
    finally:
        server.stop()


@pytest.fixture(scope="session")
def broker_impl() -> str:
    return os.environ.get("KAFKA_BROKER_IMPL", "kafka")


@pytest.fixture(scope="session")
def kafka_brokers(workdir: Path, broker_impl: str) -> Iterator[str]:
    if os.environ.get("KAFKA_BROKERS"):
        yield os.environ["KAFKA_BROKERS"]
        return
    (server,) = start_brokers(workdir / "broker", broker_impl)
    try:
        yield server.address
    finally:
        server.stop()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[Server]:
    """A Redis of this test's own, for tests that stop or restart it."""
    server = start_redis(tmp_path / "redis")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def private_broker(tmp_path: Path, broker_impl: str) -> Iterator[Server]:
    """A broker of this test's own, for tests that kill or restart it."""
    (server,) = start_brokers(tmp_path / "broker", broker_impl)
    try:
        yield server
    finally:
        server.stop()
