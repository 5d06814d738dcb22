"""Apache Kafka for `make run` and the tests: resolved from Maven Central, run in KRaft mode.

`python -m infra.kafka_broker` resolves the pinned server (`KAFKA_VERSION`) with Maven into
`.cache/kafka/<version>/lib` (`make deps` does it; `make clean` removes it). `start_kafka` formats
storage and starts one combined broker+controller, or a cluster of several on one host, each node
with its own ports and data directory, on loopback only. A node is ready when its own metadata
names it as a live broker.

Why this version: the newest release with which the broker conformance suite
(tests/integration/test_broker_conformance.py) passes for the pinned aiokafka and faust-streaming;
see the README's "Broker" section.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from infra.embedded import READY_TIMEOUT_S, Server
from infra.processes import debian_tool, free_port, port_open, spawn, wait_until

# The pinned server; KAFKA_VERSION in the environment tries another (e.g. against the suite).
KAFKA_VERSION = os.environ.get("KAFKA_VERSION") or "4.4.0"
ROOT = Path(__file__).resolve().parent.parent
POM = ROOT / "infra" / "kafka" / "pom.xml"
LOG_CONFIG = ROOT / "infra" / "kafka" / "log4j2.properties"
CACHE = Path(os.environ.get("KAFKA_CACHE_DIR", ROOT / ".cache" / "kafka"))
# Small heap and a quick JIT: one broker in ~2.5 s on two cores (README "Broker" section).
DEFAULT_JVM_OPTS = "-Xms256m -Xmx512m -XX:+UseSerialGC -XX:TieredStopAtLevel=1"


def kafka_lib(version: str = KAFKA_VERSION) -> Path:
    """The directory of the server's jars, resolved with Maven on first use (then cached)."""
    lib = CACHE / version / "lib"
    if (lib / ".complete").exists():
        return lib
    mvn = debian_tool("mvn", "maven")
    lib.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=lib.parent) as tmp:
        staging = Path(tmp) / "lib"
        result = subprocess.run(
            [
                mvn,
                "-B",
                "-q",
                "-f",
                str(POM),
                f"-Dkafka.version={version}",
                "dependency:copy-dependencies",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={staging}",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"resolving Kafka {version} from Maven Central failed:\n"
                f"{(result.stdout + result.stderr)[-3000:]}"
            )
        (staging / ".complete").touch()
        shutil.rmtree(lib, ignore_errors=True)
        staging.rename(lib)
    return lib


def new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding (Kafka's Uuid)."""
    while True:
        text = base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("=")
        if not text.startswith("-"):  # Kafka's own generator avoids ids that look like flags
            return text


@dataclass(frozen=True)
class Node:
    node_id: int
    port: int
    controller_port: int
    data_dir: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


def node_properties(node: Node, nodes: list[Node]) -> str:
    """server.properties of one combined broker+controller of a cluster of `nodes` on loopback.

    Internal topics get the cluster's replication (3 at most) with few partitions; topic-level
    settings (retention, segment size, min.insync.replicas) belong to the topic catalog."""
    replicas = min(3, len(nodes))
    voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in nodes)
    settings = {
        "process.roles": "broker,controller",
        "node.id": node.node_id,
        "controller.quorum.voters": voters,
        "listeners": f"PLAINTEXT://127.0.0.1:{node.port},CONTROLLER://127.0.0.1:{node.controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{node.port}",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": node.data_dir,
        "auto.create.topics.enable": "false",  # topics come from the catalog, never by accident
        "default.replication.factor": replicas,
        "offsets.topic.replication.factor": replicas,
        "offsets.topic.num.partitions": 4,
        "transaction.state.log.replication.factor": replicas,
        "transaction.state.log.min.isr": min(2, replicas),
        "transaction.state.log.num.partitions": 4,
        "share.coordinator.state.topic.replication.factor": replicas,
        "share.coordinator.state.topic.min.isr": min(2, replicas),
        "group.initial.rebalance.delay.ms": 0,
        "log.cleaner.dedupe.buffer.size": 2 * 1024 * 1024,  # the default takes 128 MiB of heap
        "num.network.threads": 2,
        "num.io.threads": 2,
        "num.replica.fetchers": 1,
        "background.threads": 2,
    }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


def _java_argv(lib: Path, *args: str) -> list[str]:
    opts = os.environ.get("KAFKA_JVM_OPTS", DEFAULT_JVM_OPTS).split()
    return [
        debian_tool("java", "openjdk-17-jre-headless"),
        *opts,
        f"-Dlog4j2.configurationFile={LOG_CONFIG}",
        "-cp",
        f"{lib}/*",
        *args,
    ]


def _format(lib: Path, nodes: list[Node], configs: list[Path], cluster_id: str) -> None:
    """Format the storage of every node not formatted yet (in parallel: one JVM each)."""
    procs = [
        subprocess.Popen(
            _java_argv(lib, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(c)),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for node, c in zip(nodes, configs, strict=True)
        if not (node.data_dir / "meta.properties").exists()
    ]
    for proc in procs:
        output, _ = proc.communicate(timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"formatting Kafka storage failed:\n{output.decode()[-3000:]}")


async def _registered(address: str, node_id: int) -> bool:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=address, request_timeout_ms=2000)
    try:
        await asyncio.wait_for(admin.start(), 2)
        cluster = await asyncio.wait_for(admin.describe_cluster(), 2)
        return any(b["node_id"] == node_id for b in cluster["brokers"])
    except Exception:  # not up yet: refused, timed out, or no metadata
        return False
    finally:
        with contextlib.suppress(Exception):
            await admin.close()


def node_ready(node: Node) -> bool:
    """The node answers metadata and names itself a live broker."""
    return port_open(node.port) and asyncio.run(_registered(node.address, node.node_id))


def start_kafka(workdir: Path, *, nodes: int = 1, port: int | None = None) -> list[Server]:
    """Start a KRaft cluster of `nodes` combined broker+controllers on loopback (data in workdir).

    `port` is the first node's client port (free ports otherwise). The servers are returned in
    node order; each restarts on its own ports and data."""
    lib = kafka_lib()
    workdir.mkdir(parents=True, exist_ok=True)
    cluster = [
        Node(
            node_id=i + 1,
            port=(port if i == 0 and port else free_port()),
            controller_port=free_port(),
            data_dir=workdir / f"node-{i + 1}",
        )
        for i in range(nodes)
    ]
    configs = []
    for node in cluster:
        config = workdir / f"node-{node.node_id}.properties"
        config.write_text(node_properties(node, cluster))
        configs.append(config)
    _format(lib, cluster, configs, new_cluster_id())
    servers = []
    for node, config in zip(cluster, configs, strict=True):
        argv = _java_argv(lib, "kafka.Kafka", str(config))
        log = workdir / f"node-{node.node_id}.log"
        proc = spawn(argv, log=log)
        servers.append(
            Server(
                f"kafka node {node.node_id}", node.port, proc, log, argv, partial(node_ready, node)
            )
        )
    for server, node in zip(servers, cluster, strict=True):
        wait_until(
            partial(node_ready, node),
            timeout=READY_TIMEOUT_S * 2,
            what=server.name,
            proc=server.proc,
            log=server.log,
        )
    return servers


if __name__ == "__main__":
    print(kafka_lib(sys.argv[1] if len(sys.argv) > 1 else KAFKA_VERSION))
