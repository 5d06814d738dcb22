"""`make run`'s one origin for the fan's page: the k8s Ingress's routes (infra/k8s/network.yaml)
on one local port, plus the development sign-in. Dev only: it binds loopback, and the sign-in
mints identity assertions with the dev IDENTITY_JWT_SECRET, as a ticket site's login would.

Responses are streamed through as they come, so the page's Server-Sent Events pass unbuffered.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable

import aiohttp
from aiohttp import web

from shared.http import json_response, read_json_object, require_id
from shared.identity import mint

# Hop-by-hop headers (RFC 9110 7.6.1) and those aiohttp sets itself.
HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
}
SIGN_IN_TTL_S = 3600


def route(method: str, path: str) -> str:
    """Which service answers `path`, by the Ingress's prefixes; the page and the rest: queue."""
    if path.startswith("/v1/reservations"):
        return "reservation"
    if path.startswith("/v1/concerts/") and method == "GET":
        return "seat_projection"  # the seat map; creating concerts (admin) is not routed
    return "queue"


def create_gateway(upstreams: dict[str, str], identity_secret: str) -> web.Application:
    app = web.Application()
    client: dict[str, aiohttp.ClientSession] = {}

    async def session(app: web.Application) -> AsyncIterator[None]:
        client["s"] = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, connect=5, sock_read=None),
            auto_decompress=False,
        )
        yield
        await client["s"].close()

    async def sign_in(request: web.Request) -> web.Response:
        body = await read_json_object(request)
        user = require_id(body, "user_id")
        return json_response({"id_token": mint(identity_secret, user, ttl_s=SIGN_IN_TTL_S)})

    async def proxy(request: web.Request) -> web.StreamResponse:
        target = upstreams[route(request.method, request.path)] + request.path_qs
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP}
        headers["X-Forwarded-For"] = request.remote or ""
        body = await request.read() if request.can_read_body else None
        response: web.StreamResponse | None = None
        try:
            async with client["s"].request(
                request.method, target, headers=headers, data=body, allow_redirects=False
            ) as upstream:
                response = web.StreamResponse(
                    status=upstream.status,
                    headers={k: v for k, v in upstream.headers.items() if k.lower() not in HOP},
                )
                await response.prepare(request)
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
                return response
        except (aiohttp.ClientError, ConnectionResetError):
            if response is not None and response.prepared:  # cut mid-stream, by either side
                return response
            return json_response(
                {"error": {"code": "unavailable", "message": "the service is not answering"}},
                503,
                headers={"Retry-After": "1"},
            )

    app.cleanup_ctx.append(session)
    if identity_secret:  # dev only: elsewhere the ticket site's login hands the page its JWT
        app.router.add_post("/dev/sign-in", sign_in)
    app.router.add_route("*", r"/{path:.*}", proxy)
    return app


def serve_in_thread(
    app: web.Application, port: int, on_error: Callable[[BaseException], None]
) -> Callable[[], None]:
    """Serve `app` on 127.0.0.1:`port` from a thread of its own; returns the stop function."""
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, access_log=None)
    started = threading.Event()

    def main() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(runner.setup())
            loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        except BaseException as exc:  # the port is taken: say so from the caller's thread
            on_error(exc)
            started.set()
            return
        started.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=main, name="gateway", daemon=True)
    thread.start()
    started.wait(10)

    def stop() -> None:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)

    return stop
