"""Server-Sent Events for the fan's page: a status pushed as it changes, over one response.

A stream starts only after its request is checked, so a bad token is still a plain 4xx JSON
error. Each event is one JSON object; a comment line every KEEPALIVE_S keeps proxies from
closing an idle stream and tells the server when the fan has gone. `retry:` tells the browser's
EventSource when to reconnect if the stream is cut; the page falls back to polling then.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

KEEPALIVE_S = 15.0
RECONNECT_MS = 3000


class Gone(Exception):
    """The fan closed the stream."""


async def open_stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",  # a proxy in front must not buffer the stream
        }
    )
    await response.prepare(request)
    await _write(response, f"retry: {RECONNECT_MS}\n\n".encode())
    return response


def event_bytes(event: str, data: dict[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


async def send(response: web.StreamResponse, event: str, data: dict[str, Any]) -> None:
    await _write(response, event_bytes(event, data))


async def keepalive(response: web.StreamResponse) -> None:
    await _write(response, b": keepalive\n\n")


async def _write(response: web.StreamResponse, chunk: bytes) -> None:
    try:
        await response.write(chunk)
    except (ConnectionResetError, RuntimeError) as exc:  # closed by the fan, or by shutdown
        raise Gone() from exc
