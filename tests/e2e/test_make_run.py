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


def buy_one_seat(queue_port: int, reservation_port: int, admin: str) -> str:
    """Queue, reserve, pay: the status the purchase ends in."""
    q, r = f"http://127.0.0.1:{queue_port}", f"http://127.0.0.1:{reservation_port}"
    call(
        f"{r}/v1/concerts",
        {"concert_id": "e2e", "seats": 10, "price": 5},
        {"Authorization": f"Bearer {admin}"},
    )
    token = call(f"{q}/v1/queue/tokens", {"concert_id": "e2e", "user_id": "fan-1"})["token"]
    deadline = time.monotonic() + 10
    while call(f"{q}/v1/queue/tokens/{token}")["status"] != "active":
        assert time.monotonic() < deadline, "never admitted"
        time.sleep(0.1)
    auth = {"Queue-Token": token}
    body = {"concert_id": "e2e", "seat_id": "7", "user_id": "fan-1"}
    rid = call(f"{r}/v1/reservations", body, auth)["reservation_id"]
    assert call(f"{r}/v1/reservations/{rid}?wait_ms=10000")["status"] == "held"
    call(f"{r}/v1/reservations/{rid}/payment", {"user_id": "fan-1"}, auth)
    return str(call(f"{r}/v1/reservations/{rid}?wait_ms=10000&seen=held")["status"])


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
        queue_port, reservation_port = free_port(), free_port()
        admin = "e2e-admin-token-0123456789"
        env = {
            **{k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "KAFKA_BROKERS")},
            "RUN_DIR": str(tmp_path / "run"),
            "RUN_REDIS_PORT": str(free_port()),
            "RUN_KAFKA_PORT": str(free_port()),
            "QUEUE_PORT": str(queue_port),
            "RESERVATION_PORT": str(reservation_port),
            "PAYMENT_PORT": str(free_port()),
            "SEAT_PROJECTION_PORT": str(free_port()),
            "ADMIN_TOKEN": admin,
            "QUEUE_ADMIT_PER_S": "1000",
            "PYTHONUNBUFFERED": "1",
            "KAFKA_CLUSTER": str(kafka_nodes),
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "infra.run"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            output = "".join(wait_for_line(proc, "ready - Ctrl-C", START_TIMEOUT_S))
            assert f"http://127.0.0.1:{queue_port}" in output
            children = children_of(proc.pid)
            assert len(children) == 1 + kafka_nodes + 4  # redis, the brokers, four services
            (brokers,) = [line.split()[1] for line in output.splitlines() if line[:6] == "kafka "]
            assert len(brokers.split(",")) == kafka_nodes

            assert f"http://127.0.0.1:{reservation_port}" in output
            assert buy_one_seat(queue_port, reservation_port, admin) == "confirmed"

            proc.send_signal(signal.SIGINT)
            rest, _ = proc.communicate(timeout=60)
            assert proc.returncode == 0, output + rest
            assert "stopped" in rest
            assert not [pid for pid in children if Path(f"/proc/{pid}").exists()]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
