"""aiohttp edge helpers: JSON responses, the error envelope, body parsing, error middleware."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from shared.errors import DomainError, InvalidRequest, MethodNotAllowed
from shared.ids import ID_RULE, is_valid_id
from shared.logs import REQUEST_ID

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 16 * 1024
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(body), status=status, headers=headers, content_type="application/json"
    )


def error_response(
    http_status: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
    extra: dict[str, object] | None = None,
) -> web.Response:
    rid = REQUEST_ID.get()  # quoted, so a fan's report leads to the log lines
    error = {
        **(extra or {}),
        "code": code,
        "message": message,
        **({"request_id": rid} if rid else {}),
    }
    return json_response({"error": error}, http_status, headers)


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object; anything else is a 400 (or 413 when too large)."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise web.HTTPRequestEntityTooLarge(MAX_BODY_BYTES, request.content_length)
    raw = await request.read()
    try:
        body = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        raise InvalidRequest("body is not valid JSON", field="body") from None
    if not isinstance(body, dict):
        raise InvalidRequest("body must be a JSON object", field="body")
    return body


def require_id(body: dict[str, Any], field: str) -> str:
    value = body.get(field)
    if value is None:
        raise InvalidRequest(f"{field} is required", field=field)
    if not is_valid_id(value):
        raise InvalidRequest(f"{field} must be a string of {ID_RULE}", field=field)
    return str(value)


def query_int(request: web.Request, name: str, *, default: int, low: int, high: int) -> int:
    """A query parameter of ASCII digits from `low` to `high` (str.isdigit would also take "²"
    or Arabic-Indic digits, which int() rejects or reads as numbers)."""
    raw = request.query.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 9) or not low <= int(raw) <= high:
        raise InvalidRequest(f"{name} must be an integer from {low} to {high}", field=name)
    return int(raw)


def routes_of(app: web.Application) -> set[str]:
    """`METHOD /path` for every route the app serves (HEAD, which aiohttp adds to GETs, aside)."""
    return {
        f"{route.method} {route.resource.canonical}"
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }


def documented_routes(doc: dict[str, Any]) -> set[str]:
    return {
        f"{method.upper()} {path}"
        for path, item in doc["paths"].items()
        for method in item
        if method != "parameters"
    }


def publish_openapi(app: web.Application, path: Path) -> None:
    """Serve the OpenAPI document at `path` as /openapi.json; the app refuses to start when the
    document and its routes differ, so what a client reads is what the service serves."""
    doc = orjson.loads(path.read_bytes())
    body = orjson.dumps(doc)

    async def openapi(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    async def check(app: web.Application) -> None:
        served, documented = routes_of(app), documented_routes(doc)
        if served != documented:
            raise RuntimeError(
                f"{path} does not match the routes: undocumented {sorted(served - documented)}, "
                f"not served {sorted(documented - served)}"
            )

    app.router.add_get("/openapi.json", openapi)
    app.on_startup.append(check)


# Every code an error answer can carry, with its HTTP status: the one table that maps the
# domain's errors (shared/errors.py) to answers, and the one clients read. Each service's OpenAPI
# document publishes it as `x-error-codes`; tests/unit/test_error_codes.py keeps it equal to the
# codes the code can produce.
ERROR_CODES: dict[str, tuple[int, str]] = {
    "bad_request": (400, "the request cannot be served as sent"),
    "invalid_request": (400, "a field or the body is malformed; `field` names it"),
    "malformed_request": (400, "not valid HTTP/1.1"),
    "identity_required": (401, "no identity assertion (`Authorization: Bearer <JWT>`)"),
    "invalid_identity": (401, "the identity assertion is forged, expired or for another site"),
    "invalid_token": (401, "the queue token is forged, tampered or malformed"),
    "unauthorized": (401, "a credential this call needs is missing or wrong"),
    "identity_mismatch": (403, "the identity is not the one the request names"),
    "token_mismatch": (403, "the queue token is another user's or another concert's"),
    "token_not_active": (403, "the queue token is still waiting: keep polling"),
    "forbidden": (403, "the reservation belongs to someone else"),
    "not_found": (404, "no such route, concert or reservation"),
    "method_not_allowed": (405, "the route does not take this method; `Allow` lists those it does"),
    "conflict": (409, "the resource exists with other values"),
    "token_expired": (410, "the queue token ended; `reason` says how (expired, dropped, ...)"),
    "hold_expired": (410, "the seat's hold ended before the payment"),
    "sold_out": (410, "every seat of the concert is sold; the queue is closed for good"),
    "payload_too_large": (413, "the body is larger than 16 KiB"),
    "request_too_long": (414, "the request line or headers are too long"),
    "rate_limited": (429, "too many entries from this user or address; see `Retry-After`"),
    "http_error": (400, "another client error found by the HTTP layer (4xx)"),
    "internal": (500, "a defect: logged with the request id, never expected"),
    "unavailable": (503, "Redis or Kafka is unreachable; retry after `Retry-After`"),
    "overloaded": (503, "new work refused while the service catches up; retry after `Retry-After`"),
    "store_full": (503, "Redis is at its memory limit; new entries refused (`Retry-After: 5`)"),
    "not_replicated": (503, "the entry did not reach a replica in time; entering again is safe"),
    "draining": (503, "the process is shutting down; another replica serves"),
}


def domain_error_response(exc: DomainError) -> web.Response:
    """The answer for a domain error: its status from ERROR_CODES, and the headers it implies."""
    headers: dict[str, str] = {}
    if exc.retry_after_s is not None:
        headers["Retry-After"] = str(exc.retry_after_s)
    if isinstance(exc, MethodNotAllowed):
        headers["Allow"] = exc.allow
    return error_response(ERROR_CODES[exc.code][0], exc.code, exc.message, headers, exc.extra)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure leaves as the JSON error envelope; no traceback ever reaches a client."""
    try:
        return await handler(request)
    except DomainError as exc:
        return domain_error_response(exc)
    except web.HTTPRequestEntityTooLarge:
        return error_response(
            413, "payload_too_large", f"request body exceeds {MAX_BODY_BYTES} bytes"
        )
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status, "http_error")
        headers = {k: v for k, v in exc.headers.items() if k == "Allow"}
        return error_response(exc.status, code, exc.reason, headers)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal", "internal error; it has been logged")
