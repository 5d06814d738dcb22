"""aiohttp edge helpers: JSON responses, the error envelope, body parsing, error middleware."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from shared.errors import InvalidRequest, ServiceError
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


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure leaves as the JSON error envelope; no traceback ever reaches a client."""
    try:
        return await handler(request)
    except ServiceError as exc:
        return error_response(exc.status, exc.code, exc.message, exc.headers, exc.extra)
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
