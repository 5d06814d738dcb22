"""`make run`: start Redis, the broker and every service on loopback; Ctrl-C stops them all.

Run with `python -m infra.run`. REDIS_URL / KAFKA_BROKERS point at real infrastructure instead of
the embedded servers. RUN_DIR (default .run) holds logs and broker data.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

from infra.stack import ROOT, Stack
from shared.settings import Env

SERVICES = (
    ("reservation", "RESERVATION_PORT", 8001, ""),
    ("payment", "PAYMENT_PORT", 8002, ""),
    ("seat_projection", "SEAT_PROJECTION_PORT", 8003, ""),
    ("queue", "QUEUE_PORT", 8000, "QUEUE_WORKERS"),
)


def main() -> int:
    e = Env()
    workdir = Path(e.text("RUN_DIR", str(ROOT / ".run")))
    stack = Stack(workdir)
    done = threading.Event()
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
        print(f"{'logs':<16}{workdir / 'logs'}", flush=True)
        if stack.env.get("APP_ENV", "dev") == "dev" and not os.environ.get("ADMIN_TOKEN"):
            print(
                f"{'admin token':<16}{stack.env['ADMIN_TOKEN']}  (dev only, this run)", flush=True
            )
        print("ready - Ctrl-C stops everything", flush=True)
        while not done.wait(0.5):
            for service in stack.services:
                for proc in service.procs:
                    if proc.poll() is not None:
                        print(
                            f"{service.name} exited with {proc.returncode}; stopping",
                            file=sys.stderr,
                            flush=True,
                        )
                        return 1
        return 0
    except Exception as exc:  # start-up failure: say what, stop what started
        print(f"make run failed: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        stack.stop()
        print("stopped", flush=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
