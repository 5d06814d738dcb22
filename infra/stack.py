"""The local stack: embedded Redis and broker (unless REDIS_URL / KAFKA_BROKERS are set) plus the
services, each its own process. Used by `make run`, the e2e tests and the benchmarks."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from infra.embedded import Server, bootstrap, start_brokers, start_redis
from infra.processes import port_open, spawn, stop, stop_all, wait_until
from shared.settings import Env

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class ServiceProc:
    name: str
    url: str
    procs: list[subprocess.Popen[bytes]]


@dataclass
class Stack:
    workdir: Path
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    servers: list[Server] = field(default_factory=list)
    brokers: list[Server] = field(default_factory=list)  # the embedded brokers, in node order
    services: list[ServiceProc] = field(default_factory=list)

    def start_infra(
        self,
        *,
        redis_port: int | None = None,
        kafka_port: int | None = None,
        with_broker: bool = True,
    ) -> None:
        """Start what is not configured; export REDIS_URL/KAFKA_BROKERS for the services."""
        self.env.setdefault("APP_ENV", "dev")
        for secret in ("QUEUE_TOKEN_SECRET", "ADMIN_TOKEN"):
            if not self.env.get(secret):
                self.env[secret] = secrets.token_urlsafe(32)  # per run, never stored
        if not self.env.get("REDIS_URL"):
            redis = start_redis(self.workdir / "redis", redis_port)
            self.servers.append(redis)
            self.env["REDIS_URL"] = f"redis://{redis.address}/0"
        if with_broker and not self.env.get("KAFKA_BROKERS"):
            impl = self.env.get("KAFKA_BROKER_IMPL", "kafka")
            nodes = Env(self.env).integer("KAFKA_CLUSTER", 1, minimum=1, maximum=9)
            self.brokers = start_brokers(self.workdir / "broker", impl, kafka_port, nodes)
            self.servers.extend(self.brokers)
            self.env["KAFKA_BROKERS"] = bootstrap(self.brokers)
            # A cluster's topics are replicated (3 at most) unless the environment says otherwise.
            self.env.setdefault("KAFKA_REPLICATION", str(min(3, nodes)))

    def start_service(
        self, name: str, *, port: int, workers: int = 1, extra_env: dict[str, str] | None = None
    ) -> ServiceProc:
        """`python -m services.<name>` (workers > 1 share the port with SO_REUSEPORT)."""
        prefix = name.upper()
        env = {
            **self.env,
            f"{prefix}_PORT": str(port),
            f"{prefix}_DATA_DIR": str(self.workdir / "faust" / name),
            "PYTHONUNBUFFERED": "1",  # a killed service's last log lines are not lost
            **(extra_env or {}),
        }
        if workers > 1:
            env[f"{prefix}_REUSE_PORT"] = "true"
        procs = [
            spawn(
                [sys.executable, "-m", f"services.{name}"],
                env=env,
                cwd=ROOT,
                log=self.workdir / "logs" / f"{name}-{i}.log",
            )
            for i in range(workers)
        ]
        url = f"http://127.0.0.1:{port}"
        service = ServiceProc(name, url, procs)
        self.services.append(service)
        for i, proc in enumerate(procs):
            wait_until(
                lambda: ready(url),
                timeout=90,  # Faust workers join their group and recover tables first
                what=f"{name} worker {i}",
                proc=proc,
                log=self.workdir / "logs" / f"{name}-{i}.log",
            )
        return service

    def stop(self) -> None:
        """Services first (they drain), then the broker and Redis."""
        for service in reversed(self.services):
            for proc in service.procs:
                stop(proc)
        self.services.clear()
        # Together: a cluster node stopped alone waits for a quorum its peers may have left.
        stop_all([server.proc for server in self.servers])
        self.servers.clear()
        self.brokers.clear()


def ready(url: str) -> bool:
    port = int(url.rsplit(":", 1)[1])
    if not port_open(port):
        return False
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False
