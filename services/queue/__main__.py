"""Run the queue service: `python -m services.queue` (settings from the environment)."""

from __future__ import annotations

import logging
import sys

import uvloop
from aiohttp import web

from services.queue.app import create_app
from services.queue.settings import QueueSettings
from shared.settings import SettingsError, describe


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        settings = QueueSettings.from_env()
    except SettingsError as exc:
        print(f"queue: bad setting: {exc}", file=sys.stderr)
        return 2
    logging.getLogger("queue").info("starting with %s", describe(settings))
    web.run_app(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        reuse_port=settings.reuse_port,
        access_log=None,
        shutdown_timeout=10,
        print=lambda _: None,
        loop=uvloop.new_event_loop(),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
