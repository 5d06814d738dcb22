"""Serve an aiohttp app from a Faust worker, started only after table recovery.

Registered with `app.web_server(...)`, it replaces Faust's own web stack (so none of its
table-dump endpoints exist) and lets Faust services share the aiohttp shell of the queue
service: the same error envelope, middlewares and /metrics.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from mode import Service
from prometheus_client import CollectorRegistry

from shared.cors import cors_middleware
from shared.http import MAX_BODY_BYTES, error_middleware, json_response, publish_openapi
from shared.logs import request_id_middleware
from shared.metrics import HttpMetrics
from shared.serving import DRAIN, SHUTDOWN_TIMEOUT_S, Drain


class AiohttpServer(Service):
    def __init__(self, web_app: web.Application, host: str, port: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.web_app = web_app
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    def get_web_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def on_start(self) -> None:
        self._runner = web.AppRunner(
            self.web_app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S
        )
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        self.log.info("serving on %s", self.get_web_url())

    async def on_stop(self) -> None:
        """Faust calls this on SIGTERM: drain (shared/serving.py), then stop serving."""
        if self._runner is not None:
            await self.web_app[DRAIN].run_down(self._runner)
            self._runner = None


Probe = Callable[[], Awaitable[object]]


def service_app(
    registry: CollectorRegistry,
    *,
    drain_s: float,
    openapi: Path,
    ready: Probe | None = None,
    cors: tuple[str, ...] = (),
) -> web.Application:
    """An aiohttp app with the project's middlewares, /healthz, /readyz and /metrics; a Faust
    worker serves it only after recovery, so /readyz also checks `ready` (e.g. a Redis ping),
    and that it is not draining (app[DRAIN], `drain_s` long on SIGTERM)."""
    http_metrics = HttpMetrics(registry)
    app = web.Application(
        middlewares=[
            request_id_middleware,
            cors_middleware(cors),
            http_metrics.middleware,
            error_middleware,
        ],
        client_max_size=MAX_BODY_BYTES,
    )

    async def healthz(request: web.Request) -> web.Response:
        return json_response({"status": "ok"})

    app[DRAIN] = Drain(drain_s)

    async def readyz(request: web.Request) -> web.Response:
        app[DRAIN].check()
        if ready is not None:
            await ready()
        return json_response({"status": "ready"})

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", http_metrics.handler)
    publish_openapi(app, openapi)
    return app
