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
from infra.processes import port_open, spawn, stop_all, wait_until
from shared.settings import Env

ROOT = Path(__file__).resolve().parent.parent
# Generated for a dev stack when not in the environment, and kept in its run directory.
DEV_SECRETS = ("QUEUE_TOKEN_SECRET", "ADMIN_TOKEN", "IDENTITY_JWT_SECRET")


@dataclass
class ServiceProc:
    name: str
    url: str
    procs: list[subprocess.Popen[bytes]]
    env: dict[str, str] = field(default_factory=dict)
    logs: list[Path] = field(default_factory=list)
    python: str = sys.executable
    code_dir: Path = ROOT  # where shared/ and services/ are

    def spawn(self, i: int) -> subprocess.Popen[bytes]:
        """Start worker `i` (`python -m services.<name>`); again after it died, same log."""
        argv = [self.python, "-m", f"services.{self.name}"]
        proc = spawn(argv, env=self.env, cwd=self.code_dir, log=self.logs[i])
        if i < len(self.procs):
            self.procs[i] = proc
        else:
            self.procs.append(proc)
        return proc


@dataclass
class Stack:
    workdir: Path
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    servers: list[Server] = field(default_factory=list)
    brokers: list[Server] = field(default_factory=list)  # the embedded brokers, in node order
    services: list[ServiceProc] = field(default_factory=list)
    # The services' interpreter and code: this checkout's by default; the image test gives the
    # runtime-only virtualenv and a copy of what the Dockerfile copies.
    python: str = sys.executable
    code_dir: Path = ROOT

    def start_infra(
        self,
        *,
        redis_port: int | None = None,
        kafka_port: int | None = None,
        with_broker: bool = True,
    ) -> None:
        """Start what is not configured; export REDIS_URL/KAFKA_BROKERS for the services."""
        self.env.setdefault("APP_ENV", "dev")
        for secret in DEV_SECRETS:
            if not self.env.get(secret):
                self.env[secret] = self.dev_secret(secret)
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

    def dev_secret(self, name: str) -> str:
        """A generated secret kept in the run directory (owner-only), so tokens and reservation
        ids stay valid across restarts of a process or of the whole dev stack."""
        path = self.workdir / "secrets" / name
        if path.exists():
            return path.read_text().strip()
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        value = secrets.token_urlsafe(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(value + "\n")
        return value

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
        logs = [self.workdir / "logs" / f"{name}-{i}.log" for i in range(workers)]
        url = f"http://127.0.0.1:{port}"
        service = ServiceProc(name, url, [], env, logs, self.python, self.code_dir)
        for i in range(workers):
            service.spawn(i)
        self.services.append(service)
        for i, (proc, log) in enumerate(zip(service.procs, logs, strict=True)):
            wait_until(
                lambda: ready(url),
                timeout=90,  # Faust workers join their group and recover tables first
                what=f"{name} worker {i}",
                proc=proc,
                log=log,
            )
        return service

    def stop(self) -> None:
        """Services first, together (each drains for SHUTDOWN_DRAIN_S), then the broker and
        Redis."""
        stop_all([proc for service in self.services for proc in service.procs], timeout=20)
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
