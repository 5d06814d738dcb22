"""Embedded Redis and brokers for `make run` and the test suite (loopback only).

The broker is a setting, `KAFKA_BROKER_IMPL`: `kafka` (Apache Kafka from Maven Central, the
default; see infra/kafka_broker.py) or `noida` (noida-db from PyPI, an opt-in fallback for a
machine without Java: single node, and its fetch pacing applies only when it is selected)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

from infra.processes import debian_tool, free_port, kill, port_open, spawn, stop, wait_until

READY_TIMEOUT_S = 30.0


@dataclass
class Server:
    """A started server process and how to reach it."""

    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    restart_argv: list[str] = field(default_factory=list)
    ready: Callable[[], bool] | None = None  # default: the port accepts connections

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        stop(self.proc)

    def kill(self) -> None:
        kill(self.proc)

    def restart(self) -> None:
        """Start the same server again on the same port and data (after stop or kill)."""
        self.stop()
        self.proc = spawn(self.restart_argv, log=self.log)
        wait_until(
            self.ready or (lambda: port_open(self.port)),
            timeout=READY_TIMEOUT_S * 2,
            what=self.name,
            proc=self.proc,
            log=self.log,
        )


def start_redis(
    workdir: Path, port: int | None = None, extra_args: Sequence[str] = (), name: str = "redis"
) -> Server:
    """Debian's redis-server on loopback, persisted with an append-only file (fsync each second);
    `extra_args` adds settings (a replica's --replicaof, a password)."""
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    argv = [
        debian_tool("redis-server", "redis-server"),
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--dir",
        str(workdir),
        "--save",
        "",
        "--appendonly",
        "yes",  # a restart keeps the line, tokens and hold limits (up to a second may be lost)
        "--appendfsync",
        "everysec",
        "--protected-mode",
        "yes",
        "--maxmemory",
        "1gb",
        "--maxmemory-policy",
        "noeviction",
        *extra_args,
    ]
    return start_server(name, port, argv, workdir / "redis.log")


def start_server(name: str, port: int, argv: list[str], log: Path) -> Server:
    """Spawn `argv` and wait until it accepts connections on `port`."""
    server = Server(name, port, spawn(argv, log=log), log, argv)
    wait_until(
        lambda: port_open(port), timeout=READY_TIMEOUT_S, what=name, proc=server.proc, log=log
    )
    return server


def noida_binary() -> str:
    path = files("noida_db").joinpath("noida-db")
    return str(path)


def noida_argv(port: int, data_dir: Path) -> list[str]:
    return [
        noida_binary(),
        "start",
        "--only",
        "kafka",
        "--kafka-port",
        str(port),
        "--host",
        "127.0.0.1",
        "--data-dir",
        str(data_dir),
    ]


def start_brokers(
    workdir: Path, impl: str = "kafka", port: int | None = None, nodes: int = 1
) -> list[Server]:
    """The brokers of `impl` on loopback, data in workdir: `nodes` Kafka nodes, or one noida-db."""
    if impl == "kafka":
        from infra.kafka_broker import start_kafka

        return start_kafka(workdir, nodes=nodes, port=port)
    if impl != "noida":
        raise ValueError(f"unknown broker implementation {impl!r}")
    if nodes != 1:
        raise ValueError(
            "noida-db runs a single node only: KAFKA_CLUSTER needs KAFKA_BROKER_IMPL=kafka"
        )
    return [start_noida(workdir, port)]


def bootstrap(servers: list[Server]) -> str:
    return ",".join(server.address for server in servers)


def start_noida(workdir: Path, port: int | None = None) -> Server:
    port = port or free_port()
    data_dir = workdir / "noida-data"
    data_dir.mkdir(parents=True, exist_ok=True)
    return start_server("broker (noida)", port, noida_argv(port, data_dir), workdir / "noida.log")
