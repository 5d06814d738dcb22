"""Reading a Server-Sent Events answer in tests."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import ClientResponse


async def next_event(response: ClientResponse) -> tuple[str, Any]:
    """The next `event:`/`data:` pair of the stream (comments and `retry:` skipped)."""
    name, data = "message", None
    while True:
        line = (await asyncio.wait_for(response.content.readline(), 30.0)).decode()
        if line == "":
            return "eof", None
        line = line.rstrip("\n")
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data = orjson.loads(line[6:])
        elif line == "" and data is not None:
            return name, data
