"""Logs of every service: one line per record, JSON for machines (`LOG_FORMAT=json`, the default
with `APP_ENV=prod`) or text for people (`make run` and the tests), each carrying the id of the
HTTP request being served.

The request id is taken from `X-Request-Id` when the caller sends a well-formed one (a load
balancer or the service that forwarded the request), generated otherwise, returned on every
answer, quoted in every error envelope, and sent as the Kafka header `request-id` on the
commands the request publishes. A Faust agent takes it from each record it reads (see
`follow_record`) and puts it on what it publishes in turn, so one purchase can be followed across
the four services, from the HTTP request to `seat.confirmed`.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

HEADER = "X-Request-Id"
KAFKA_HEADER = "request-id"
REQUEST_ID: ContextVar[str] = ContextVar("request_id", default="")
# What a caller may choose: short, and nothing that could forge a log line or a header.
WELL_FORMED = re.compile(r"[A-Za-z0-9._:-]{1,128}")
FORMATS = ("json", "text")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(request_tag)s %(message)s"


def request_id_of(header: str | None) -> str:
    """The caller's id when it is well formed, else a new one."""
    if header and WELL_FORMED.fullmatch(header):
        return header
    return uuid.uuid4().hex


@web.middleware
async def request_id_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Outermost middleware: the id is set for everything the request does, and returned."""
    rid = request_id_of(request.headers.get(HEADER))
    token = REQUEST_ID.set(rid)
    try:
        response = await handler(request)
        response.headers[HEADER] = rid
        return response
    except web.HTTPException as exc:  # answered by aiohttp itself (e.g. a redirect)
        exc.headers[HEADER] = rid
        raise
    finally:
        REQUEST_ID.reset(token)


def follow_record(headers: Any) -> None:
    """Make the `request-id` header of the record being handled (a mapping or (key, value)
    pairs, as Faust gives them) the current request id, or clear it: the agent's log lines and
    what it publishes then carry the id of the request that caused them. A header that is not
    well formed is ignored."""
    pairs = headers.items() if isinstance(headers, Mapping) else (headers or ())
    raw = next((v for k, v in pairs if k == KAFKA_HEADER), b"")
    rid = raw.decode("ascii", "replace") if isinstance(raw, bytes) else str(raw or "")
    REQUEST_ID.set(rid if WELL_FORMED.fullmatch(rid) else "")


def kafka_headers() -> list[tuple[str, bytes]]:
    """The headers a record published while serving a request carries."""
    rid = REQUEST_ID.get()
    return [(KAFKA_HEADER, rid.encode())] if rid else []


class RequestIdFilter(logging.Filter):
    """Adds the current request id to every record (empty outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        rid = REQUEST_ID.get()
        record.request_id = rid
        record.request_tag = f" [{rid}]" if rid else ""
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, exception."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", "")
        if rid:
            doc["request_id"] = rid
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(doc).decode()


def dict_config(fmt: str, level: str = "INFO") -> dict[str, Any]:
    """A `logging.config.dictConfig` for `fmt` (json or text), to stderr. Faust workers hand it
    to their worker (`logging_config`), the queue applies it itself."""
    formatter: dict[str, Any] = {"()": JsonFormatter} if fmt == "json" else {"format": TEXT_FORMAT}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": RequestIdFilter}},
        "formatters": {"default": formatter},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "default",
                "filters": ["request_id"],
            }
        },
        "root": {"level": level, "handlers": ["default"]},
    }


def configure(fmt: str, level: str = "INFO") -> None:
    import logging.config

    logging.config.dictConfig(dict_config(fmt, level))
