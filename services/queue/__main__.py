"""Run the queue service: `python -m services.queue` (settings from the environment)."""

from __future__ import annotations

import asyncio
import logging
import sys

import uvloop

from services.queue.app import create_app
from services.queue.settings import QueueSettings
from shared import compat
from shared.logs import configure as configure_logging
from shared.serving import DRAIN, serve
from shared.settings import SettingsError, describe


def main() -> int:
    try:
        settings = QueueSettings.from_env()
    except SettingsError as exc:
        print(f"queue: bad setting: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.infra.log_format)
    compat.install(settings.infra)
    logging.getLogger("queue").info("starting with %s", describe(settings))
    app = create_app(settings)
    serving = serve(
        app,
        host=settings.host,
        port=settings.port,
        reuse_port=settings.reuse_port,
        drain=app[DRAIN],
    )
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serving)
    return 0


if __name__ == "__main__":
    sys.exit(main())
