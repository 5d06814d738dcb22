"""Requests aiohttp refuses before any handler runs (a request line or header over 8190 bytes,
a malformed request) leave in the JSON error envelope like every other error.

aiohttp answers them from `RequestHandler.handle_error` in plain text that echoes the offending
line, and logs a traceback for each. `json_protocol_errors` replaces that method for 4xx answers:
the client gets `{"error": {"code", "message"}}` without its input echoed, and the log gets one
line without a traceback. 5xx answers keep aiohttp's own behaviour.
"""

from __future__ import annotations

import logging
from importlib.metadata import version
from typing import Any

from aiohttp.http_exceptions import LineTooLong
from aiohttp.web_protocol import RequestHandler

from shared.http import error_response

# The aiohttp this file was written against: handle_error's signature is checked on it.
TESTED = ("3.",)
AIOHTTP_VERSION = version("aiohttp")
if not AIOHTTP_VERSION.startswith(TESTED):  # pragma: no cover - a deliberate upgrade trips this
    raise ImportError(
        f"shared/aiohttp_compat.py replaces RequestHandler.handle_error, checked on aiohttp "
        f"{TESTED}, not on {AIOHTTP_VERSION}: re-check it before upgrading"
    )

log = logging.getLogger(__name__)
_original = RequestHandler.handle_error


def _handle_error(
    self: RequestHandler,
    request: Any,
    status: int = 500,
    exc: BaseException | None = None,
    message: str | None = None,
) -> Any:
    if status >= 500 or request.writer.output_size > 0:
        return _original(self, request, status, exc, message)
    if isinstance(exc, LineTooLong):
        status, code = 414, "request_too_long"
        text = "the request line or a header is over 8190 bytes"
    else:
        code, text = "malformed_request", "the request is not valid HTTP/1.1"
    log.info("refused a request from %s: %s (%s)", request.remote, code, type(exc).__name__)
    response = error_response(status, code, text)
    response.force_close()
    return response


def json_protocol_errors() -> None:
    """Install it for every aiohttp server in this process (idempotent)."""
    RequestHandler.handle_error = _handle_error  # type: ignore[method-assign]
