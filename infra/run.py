"""`make run`: start Redis, the broker and every service on loopback; Ctrl-C stops them all.

A process that crashes is restarted with backoff (infra/supervisor.py), and dev secrets are kept
in the run directory, so tokens and reservation ids stay valid across restarts.

Run with `python -m infra.run`. REDIS_URL / KAFKA_BROKERS point at real infrastructure instead of
the embedded servers. RUN_DIR (default .run) holds logs and broker data.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import urllib.request
from pathlib import Path

from infra.gateway import create_gateway, serve_in_thread
from infra.stack import ROOT, Stack
from infra.supervisor import Supervisor
from shared.settings import Env

SERVICES = (
    ("reservation", "RESERVATION_PORT", 8001, ""),
    ("payment", "PAYMENT_PORT", 8002, ""),
    ("seat_projection", "SEAT_PROJECTION_PORT", 8003, ""),
    ("queue", "QUEUE_PORT", 8000, "QUEUE_WORKERS"),
)


def print_dev_secrets(stack: Stack, workdir: Path) -> None:
    """What a developer needs to call the APIs: the generated admin token and the dev identity
    issuer's key, with the command that logs a fan in. Secrets set in the environment are the
    operator's own and are not printed."""
    where = f"(dev only, kept in {workdir / 'secrets'})"
    if not os.environ.get("ADMIN_TOKEN"):
        print(f"{'admin token':<16}{stack.env['ADMIN_TOKEN']}  {where}", flush=True)
    if not os.environ.get("IDENTITY_JWT_SECRET"):
        print(f"{'identity key':<16}{stack.env['IDENTITY_JWT_SECRET']}  {where}", flush=True)
        print(
            f"{'log a fan in':<16}IDENTITY_JWT_SECRET=$(cat {workdir / 'secrets'}/"
            "IDENTITY_JWT_SECRET) .venv/bin/python -m shared.identity mint fan-1",
            flush=True,
        )


def open_demo_concert(stack: Stack, reservation_url: str, concert: str, seats: int) -> None:
    """A concert on sale for the page to show (dev); creating it again with the same values is
    accepted, so a restarted `make run` keeps it."""
    body = json.dumps({"concert_id": concert, "seats": seats, "price": 50_000}).encode()
    request = urllib.request.Request(
        f"{reservation_url}/v1/concerts",
        data=body,
        headers={
            "Content-Type": "application/json",
            "Authorization": f"Bearer {stack.env['ADMIN_TOKEN']}",
        },
    )
    with urllib.request.urlopen(request, timeout=15):
        pass


def main() -> int:
    e = Env()
    workdir = Path(e.text("RUN_DIR", str(ROOT / ".run")))
    stack = Stack(workdir)
    done = threading.Event()
    urls: dict[str, str] = {}
    stop_gateway = None
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    try:
        stack.start_infra(
            redis_port=e.integer("RUN_REDIS_PORT", 6390),
            kafka_port=e.integer("RUN_KAFKA_PORT", 9092),
        )
        print(f"{'redis':<16}{stack.env['REDIS_URL']}", flush=True)
        print(f"{'kafka':<16}{stack.env['KAFKA_BROKERS']}", flush=True)
        for name, port_var, default_port, workers_var in SERVICES:
            service = stack.start_service(
                name,
                port=e.integer(port_var, default_port),
                workers=e.integer(workers_var, 1, minimum=1) if workers_var else 1,
            )
            print(f"{name:<16}{service.url}  (metrics {service.url}/metrics)", flush=True)
            urls[name] = service.url
        print(f"{'logs':<16}{workdir / 'logs'}", flush=True)
        dev = stack.env.get("APP_ENV", "dev") == "dev"
        if dev:
            print_dev_secrets(stack, workdir)
        # The fan's page, and the API behind it, on one origin (as the Ingress does).
        gateway = create_gateway(urls, stack.env["IDENTITY_JWT_SECRET"] if dev else "")
        port = e.integer("RUN_PAGE_PORT", 8080)
        failed: list[BaseException] = []
        stop_gateway = serve_in_thread(gateway, port, failed.append)
        if failed:
            raise RuntimeError(f"the page's port {port} is taken: set RUN_PAGE_PORT") from failed[0]
        page = f"http://127.0.0.1:{port}/"
        if dev:
            concert = e.text("RUN_DEMO_CONCERT", "demo")
            open_demo_concert(stack, urls["reservation"], concert, e.integer("RUN_DEMO_SEATS", 40))
            page += f"?concert={concert}"
        print(f"{'page':<16}{page}  (the fan's page: sign in, queue, seat, pay)", flush=True)
        print("ready - Ctrl-C stops everything", flush=True)
        supervisor = Supervisor(stack, lambda line: print(line, file=sys.stderr, flush=True))
        while not done.wait(0.5):
            supervisor.check(time.monotonic())
        return 0
    except Exception as exc:  # start-up failure: say what, stop what started
        print(f"make run failed: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        if stop_gateway is not None:
            stop_gateway()
        stack.stop()
        print("stopped", flush=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
