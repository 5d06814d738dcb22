"""CORS for the browser origins given by `CORS_ALLOWED_ORIGINS` (the fans' page on another
origin, e.g. https://tickets.example): exact origins only, never `*`, since requests carry
credentials (the identity JWT, the queue token). Empty: no CORS headers at all, and browsers on
other origins are refused by their own rules."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

ALLOWED_HEADERS = "Authorization, Content-Type, Queue-Token, Idempotency-Key, X-Request-Id"
EXPOSED_HEADERS = "Retry-After, X-Request-Id"
MAX_AGE_S = "600"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def cors_middleware(origins: tuple[str, ...]) -> Callable[..., Awaitable[web.StreamResponse]]:
    allowed = frozenset(origins)

    @web.middleware
    async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin", "")
        if origin not in allowed:
            return await handler(request)
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            return web.Response(
                status=204,
                headers={
                    "Access-Control-Allow-Origin": origin,
                    "Access-Control-Allow-Methods": "GET, POST",
                    "Access-Control-Allow-Headers": ALLOWED_HEADERS,
                    "Access-Control-Max-Age": MAX_AGE_S,
                    "Vary": "Origin",
                },
            )
        response = await handler(request)
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
        response.headers["Vary"] = "Origin"
        return response

    return cors
