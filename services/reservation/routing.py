"""Send a reservation lookup or payment to the worker that owns the seat's partition.

With several reservation workers, each holds the tables of its own partitions; a request that
reaches another worker is forwarded once (marked so it is never forwarded again), the way
Faust's `table_route` does it, using Faust's own partition-to-worker map.
"""

from __future__ import annotations

from typing import Any

import aiohttp
from aiohttp import web

from shared.compat import owner_of
from shared.errors import Unavailable

ROUTED = "X-Routed-By"
FORWARDED_HEADERS = ("Queue-Token", "Content-Type", "X-Request-Id")  # the owner logs the same id


def owner_url(app: Any, seat_key: str) -> str | None:
    """Base URL of the worker owning `seat_key`'s partition; None when it is this worker (or
    the assignment is not known yet, in which case this worker answers from what it has)."""
    # The seat's partition is the one its raw key hashes to on the seat topics (the table's
    # own key serializer would hash a JSON-quoted key instead, and pick the wrong worker).
    changelog = app.tables["seat_records"].changelog_topic.get_topic_name()
    url = owner_of(app, changelog, seat_key.encode())
    if url is None:
        return None
    own = app.conf.canonical_url
    if (url.host, url.port) == (own.host, own.port):
        return None
    return f"{url.scheme}://{url.host}:{url.port}"


async def forward(
    http: aiohttp.ClientSession, request: web.Request, base_url: str, me: str
) -> web.Response:
    headers = {k: request.headers[k] for k in FORWARDED_HEADERS if k in request.headers}
    headers[ROUTED] = me
    body = await request.read() if request.can_read_body else None
    try:
        async with http.request(
            request.method, base_url + request.path_qs, headers=headers, data=body
        ) as response:
            return web.Response(
                body=await response.read(),
                status=response.status,
                content_type=response.content_type,
                headers={k: v for k, v in response.headers.items() if k == "Retry-After"},
            )
    except (aiohttp.ClientError, TimeoutError):
        raise Unavailable("the worker owning this seat is unreachable, retry shortly") from None
