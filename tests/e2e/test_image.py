"""What the image holds runs the system: the Dockerfile's install script builds a virtualenv
from requirements-runtime.lock alone, and the services run from it, and from a copy of only
what the Dockerfile copies, in production mode. No Docker engine is needed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.processes import free_port
from infra.stack import ROOT, Stack
from tests.e2e.test_make_run import IDENTITY_SECRET, buy_one_seat

ADMIN = "image-admin-token-0123456789"


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """(python, code dir): the image's interpreter and /app, built the way the Dockerfile does."""
    root = tmp_path_factory.mktemp("image")
    subprocess.run(
        ["sh", str(ROOT / "infra/image/install-runtime.sh"), str(root / "venv")],
        cwd=ROOT,
        check=True,
        timeout=300,
    )
    for part in ("shared", "services"):  # the Dockerfile's COPY lines
        shutil.copytree(
            ROOT / part, root / "app" / part, ignore=shutil.ignore_patterns("__pycache__")
        )
    return str(root / "venv" / "bin" / "python"), root / "app"


def prod_env(**extra: str) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "APP_ENV": "prod",
        "QUEUE_TOKEN_SECRET": "image-test-queue-token-secret-0123456789",
        "IDENTITY_JWT_SECRET": IDENTITY_SECRET,
        "ADMIN_TOKEN": ADMIN,
        **extra,
    }


@pytest.mark.parametrize("service", ["queue", "reservation", "payment", "seat_projection"])
@pytest.mark.parametrize("missing", ["REDIS_URL", "KAFKA_BROKERS"])
def test_production_mode_refuses_to_start_without_its_infrastructure(
    image: tuple[str, Path], service: str, missing: str
) -> None:
    python, app = image
    given = {"REDIS_URL": "redis://127.0.0.1:1/0", "KAFKA_BROKERS": "127.0.0.1:1"}
    del given[missing]
    run = subprocess.run(
        [python, "-m", f"services.{service}"],
        cwd=app,
        env=prod_env(**given),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode != 0
    assert missing in run.stderr
    assert "Traceback" not in run.stderr


@pytest.fixture
def image_stack(image: tuple[str, Path], tmp_path: Path) -> Iterator[Stack]:
    python, app = image
    stack = Stack(tmp_path, env=prod_env(), python=python, code_dir=app)
    # Production mode on one machine: one broker, and dev's quick group timings.
    stack.env.update(
        KAFKA_REPLICATION="1",
        KAFKA_SESSION_TIMEOUT_S="6",
        KAFKA_HEARTBEAT_S="0.5",
        KAFKA_REBALANCE_TIMEOUT_S="6",
        QUEUE_ADMIT_PER_S="1000",
    )
    try:
        stack.start_infra()
        yield stack
    finally:
        stack.stop()


def test_the_runtime_only_services_sell_a_seat_in_production_mode(image_stack: Stack) -> None:
    ports = {}
    for name in ("reservation", "payment", "seat_projection", "queue"):
        ports[name] = free_port()
        image_stack.start_service(name, port=ports[name])
    assert buy_one_seat(ports["queue"], ports["reservation"], ADMIN) == "confirmed"
    for service in image_stack.services:  # production logs are JSON lines, one per record
        records = [
            json.loads(line)
            for line in service.logs[0].read_text().splitlines()
            if line.startswith("{")
        ]
        assert records, f"{service.name} wrote no JSON log line"
        assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
