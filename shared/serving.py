"""Serving HTTP until SIGTERM, then draining: what an orchestrator's rolling restart needs.

On SIGTERM (or SIGINT) a service:
1. turns readiness off at once: /readyz answers 503 `draining`, so the load balancer stops
   sending it new requests, while everything else is still served;
2. answers every long-poll now, with the state as it is (`Drain.on_begin` callbacks);
3. keeps serving for `SHUTDOWN_DRAIN_S`, then closes its listener, lets the requests in flight
   finish (aiohttp's shutdown timeout) and stops.

The queue service runs `serve` itself; a Faust worker's `AiohttpServer` (shared/faust_web.py)
does steps 1-3 in its `on_stop`, which Faust calls on SIGTERM.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

from aiohttp import web

from shared.errors import Draining

log = logging.getLogger(__name__)
SHUTDOWN_TIMEOUT_S = 10.0  # requests still in flight after the drain get this long to finish


class Drain:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.draining = False
        self._callbacks: list[Callable[[], None]] = []

    def on_begin(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)

    def begin(self) -> None:
        if self.draining:
            return
        self.draining = True
        log.info("draining: readiness off, long-polls answered; closing in %.1f s", self.seconds)
        for callback in self._callbacks:
            callback()

    def check(self) -> None:
        """For /readyz: a draining process is alive but not ready."""
        if self.draining:
            raise Draining("shutting down: send new requests to another instance")

    async def run_down(self, runner: web.AppRunner) -> None:
        self.begin()
        await asyncio.sleep(self.seconds)
        await runner.cleanup()


DRAIN = web.AppKey("drain", Drain)


async def serve(
    app: web.Application, *, host: str, port: int, reuse_port: bool, drain: Drain
) -> None:
    """Serve `app` until SIGTERM/SIGINT, then drain and stop."""
    runner = web.AppRunner(
        app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S, handle_signals=False
    )
    await runner.setup()
    await web.TCPSite(runner, host, port, reuse_port=reuse_port).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await drain.run_down(runner)
