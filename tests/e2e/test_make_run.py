"""`make run`'s own start-up path (python -m infra.run): everything starts, serves, and stops."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from infra.processes import free_port
from infra.stack import ROOT
from shared.identity import mint

START_TIMEOUT_S = 90.0


def call(
    url: str, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, headers={"Content-Type": "application/json", **(headers or {})}
    )
    with urllib.request.urlopen(request, timeout=15) as response:
        assert response.status in (200, 201, 202)
        result: dict[str, Any] = json.loads(response.read())
        return result


IDENTITY_SECRET = "e2e-identity-key-" + "k" * 32


def login(user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint(IDENTITY_SECRET, user)}"}


def buy_one_seat(queue_port: int, reservation_port: int, admin: str) -> str:
    """Queue, reserve, pay: the status the purchase ends in."""
    q, r = f"http://127.0.0.1:{queue_port}", f"http://127.0.0.1:{reservation_port}"
    call(
        f"{r}/v1/concerts",
        {"concert_id": "e2e", "seats": 10, "price": 5},
        {"Authorization": f"Bearer {admin}"},
    )
    token = call(f"{q}/v1/queue/tokens", {"concert_id": "e2e"}, login("fan-1"))["token"]
    deadline = time.monotonic() + 10
    while call(f"{q}/v1/queue/tokens/{token}")["status"] != "active":
        assert time.monotonic() < deadline, "never admitted"
        time.sleep(0.1)
    auth = {"Queue-Token": token}
    body = {"concert_id": "e2e", "seat_id": "7", "user_id": "fan-1"}
    rid = call(f"{r}/v1/reservations", body, auth)["reservation_id"]
    assert call(f"{r}/v1/reservations/{rid}?wait_ms=10000", None, auth)["status"] == "held"
    call(f"{r}/v1/reservations/{rid}/payment", {"user_id": "fan-1"}, auth)
    return str(call(f"{r}/v1/reservations/{rid}?wait_ms=10000&seen=held", None, auth)["status"])


def wait_for_line(proc: subprocess.Popen[str], text: str, timeout: float) -> list[str]:
    """Read the runner's output until a line contains `text`; fail if it exits first."""
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError("make run exited early:\n" + "".join(lines))
        lines.append(line)
        if text in line:
            return lines
    raise AssertionError(f"no {text!r} within {timeout}s:\n" + "".join(lines))


def run_env(run_dir: Path, **extra: str) -> dict[str, str]:
    """`make run`'s environment on free ports, with secrets only as `extra` gives them."""
    inherited = ("REDIS_URL", "KAFKA_BROKERS", "ADMIN_TOKEN", "IDENTITY_JWT_SECRET")
    return {
        **{k: v for k, v in os.environ.items() if k not in inherited},
        "RUN_DIR": str(run_dir),
        "RUN_REDIS_PORT": str(free_port()),
        "RUN_KAFKA_PORT": str(free_port()),
        "QUEUE_PORT": str(free_port()),
        "RESERVATION_PORT": str(free_port()),
        "PAYMENT_PORT": str(free_port()),
        "SEAT_PROJECTION_PORT": str(free_port()),
        "RUN_PAGE_PORT": str(free_port()),
        "QUEUE_ADMIT_PER_S": "1000",
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


def start_run(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "infra.run"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def stop_run(proc: subprocess.Popen[str]) -> str:
    """Ctrl-C, and what it printed while stopping."""
    proc.send_signal(signal.SIGINT)
    try:
        rest, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        rest, _ = proc.communicate()
    return rest


def urls(env: dict[str, str]) -> tuple[str, str]:
    return f"http://127.0.0.1:{env['QUEUE_PORT']}", f"http://127.0.0.1:{env['RESERVATION_PORT']}"


def children_of(pid: int) -> list[int]:
    found = []
    for status in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = status.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(status.parent.name))
    return found


class TestMakeRun:
    @pytest.mark.parametrize("kafka_nodes", [1, 3])
    def test_starts_everything_on_loopback_serves_and_stops_cleanly_on_ctrl_c(
        self, tmp_path: Path, kafka_nodes: int
    ) -> None:
        admin = "e2e-admin-token-0123456789"
        env = run_env(
            tmp_path / "run",
            ADMIN_TOKEN=admin,
            IDENTITY_JWT_SECRET=IDENTITY_SECRET,
            KAFKA_CLUSTER=str(kafka_nodes),
        )
        queue_port, reservation_port = int(env["QUEUE_PORT"]), int(env["RESERVATION_PORT"])
        proc = start_run(env)
        try:
            output = "".join(wait_for_line(proc, "ready - Ctrl-C", START_TIMEOUT_S))
            assert f"http://127.0.0.1:{queue_port}" in output
            children = children_of(proc.pid)
            assert len(children) == 1 + kafka_nodes + 4  # redis, the brokers, four services
            (brokers,) = [line.split()[1] for line in output.splitlines() if line[:6] == "kafka "]
            assert len(brokers.split(",")) == kafka_nodes

            assert f"http://127.0.0.1:{reservation_port}" in output
            assert buy_one_seat(queue_port, reservation_port, admin) == "confirmed"

            rest = stop_run(proc)
            assert proc.returncode == 0, output + rest
            assert "stopped" in rest
            assert not [pid for pid in children if Path(f"/proc/{pid}").exists()]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


# What to SIGKILL, found by its command line, and the name `make run` reports it under.
PROCESSES = (
    ("services.payment", "payment"),
    ("services.seat_projection", "seat_projection"),
    ("services.reservation", "reservation"),
    ("services.queue", "queue"),
    ("redis-server", "redis"),
    ("kafka.Kafka", "kafka node 1"),
)


def pid_running(parent: int, marker: str) -> int:
    for pid in children_of(parent):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if marker in cmdline:
            return pid
    raise AssertionError(f"no child process running {marker}")


def eventually_call(
    url: str, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """`call`, retried while a restarted process comes back (refused, 503) for up to 60 s."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return call(url, body, headers)
        except (OSError, AssertionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


class TestSupervision:
    def test_each_crashed_process_is_restarted_and_a_held_seat_can_still_be_bought(
        self, tmp_path: Path
    ) -> None:
        admin = "e2e-admin-token-0123456789"
        env = run_env(
            tmp_path / "run",
            ADMIN_TOKEN=admin,
            IDENTITY_JWT_SECRET=IDENTITY_SECRET,
            QUEUE_ACTIVE_TTL_S="600",  # the fan stays admitted while everything restarts
        )
        q, r = urls(env)
        proc = start_run(env)
        try:
            wait_for_line(proc, "ready - Ctrl-C", START_TIMEOUT_S)
            call(
                f"{r}/v1/concerts",
                {"concert_id": "sup", "seats": 10, "price": 5},
                {"Authorization": f"Bearer {admin}"},
            )
            token = call(f"{q}/v1/queue/tokens", {"concert_id": "sup"}, login("fan-1"))["token"]
            while call(f"{q}/v1/queue/tokens/{token}")["status"] != "active":
                time.sleep(0.1)
            body = {"concert_id": "sup", "seat_id": "3", "user_id": "fan-1"}
            auth = {"Queue-Token": token}
            rid = call(f"{r}/v1/reservations", body, auth)["reservation_id"]
            assert call(f"{r}/v1/reservations/{rid}?wait_ms=10000", None, auth)["status"] == "held"

            for marker, name in PROCESSES:
                os.kill(pid_running(proc.pid, marker), signal.SIGKILL)
                wait_for_line(proc, f"{name} restarted", START_TIMEOUT_S)

            # The same token and reservation id still work: secrets and the line survived.
            status = eventually_call(f"{q}/v1/queue/tokens/{token}")["status"]
            assert status == "active"
            eventually_call(f"{r}/v1/reservations/{rid}/payment", {"user_id": "fan-1"}, auth)
            outcome = eventually_call(
                f"{r}/v1/reservations/{rid}?wait_ms=10000&seen=held", None, auth
            )
            assert outcome["status"] == "confirmed"
            assert proc.poll() is None
        finally:
            stop_run(proc)

    def test_a_restarted_stack_keeps_the_line_tokens_and_reservation_ids(
        self, tmp_path: Path
    ) -> None:
        env = run_env(tmp_path / "run", QUEUE_ACTIVE_TTL_S="600")  # secrets: generated, kept
        q, r = urls(env)
        proc = start_run(env)
        try:
            wait_for_line(proc, "ready - Ctrl-C", START_TIMEOUT_S)
            secrets = tmp_path / "run" / "secrets"
            admin = (secrets / "ADMIN_TOKEN").read_text().strip()
            key = (secrets / "IDENTITY_JWT_SECRET").read_text().strip()
            assert oct((secrets / "ADMIN_TOKEN").stat().st_mode & 0o777) == "0o600"
            call(
                f"{r}/v1/concerts",
                {"concert_id": "again", "seats": 10, "price": 5},
                {"Authorization": f"Bearer {admin}"},
            )
            login = {"Authorization": f"Bearer {mint(key, 'fan-1')}"}
            token = call(f"{q}/v1/queue/tokens", {"concert_id": "again"}, login)["token"]
            while call(f"{q}/v1/queue/tokens/{token}")["status"] != "active":
                time.sleep(0.1)
            auth = {"Queue-Token": token}
            body = {"concert_id": "again", "seat_id": "2", "user_id": "fan-1"}
            rid = call(f"{r}/v1/reservations", body, auth)["reservation_id"]
            assert call(f"{r}/v1/reservations/{rid}?wait_ms=10000", None, auth)["status"] == "held"
            time.sleep(1.5)  # Redis appends to its file every second
        finally:
            stop_run(proc)

        proc = start_run(env)
        try:
            wait_for_line(proc, "ready - Ctrl-C", START_TIMEOUT_S)
            assert call(f"{q}/v1/queue/tokens/{token}")["status"] == "active"
            assert call(f"{r}/v1/reservations/{rid}", None, auth)["status"] == "held"
            call(f"{r}/v1/reservations/{rid}/payment", {"user_id": "fan-1"}, auth)
            outcome = call(f"{r}/v1/reservations/{rid}?wait_ms=10000&seen=held", None, auth)
            assert outcome["status"] == "confirmed"
        finally:
            stop_run(proc)
