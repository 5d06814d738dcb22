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

from infra.processes import free_port
from infra.stack import ROOT

START_TIMEOUT_S = 90.0


def post_json(url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return int(response.status), json.loads(response.read())


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
    def test_starts_everything_on_loopback_serves_and_stops_cleanly_on_ctrl_c(
        self, tmp_path: Path
    ) -> None:
        queue_port = free_port()
        env = {
            **{k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "KAFKA_BROKERS")},
            "RUN_DIR": str(tmp_path / "run"),
            "RUN_REDIS_PORT": str(free_port()),
            "RUN_KAFKA_PORT": str(free_port()),
            "QUEUE_PORT": str(queue_port),
            "PYTHONUNBUFFERED": "1",
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
            assert len(children) >= 3  # redis, broker, at least one service

            status, body = post_json(
                f"http://127.0.0.1:{queue_port}/v1/queue/tokens",
                {"concert_id": "e2e-run", "user_id": "fan-1"},
            )
            assert status == 201 and body["status"] in ("waiting", "active")

            proc.send_signal(signal.SIGINT)
            rest, _ = proc.communicate(timeout=60)
            assert proc.returncode == 0, output + rest
            assert "stopped" in rest
            assert not [pid for pid in children if Path(f"/proc/{pid}").exists()]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
