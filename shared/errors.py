"""Errors every service translates to HTTP once, at the edge (see shared.http)."""

from __future__ import annotations


class ServiceError(Exception):
    """A failure with a stable machine-readable code, safe to show to clients."""

    status = 400
    code = "bad_request"

    def __init__(
        self, message: str, *, headers: dict[str, str] | None = None, **extra: object
    ) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}
        self.extra = extra


class InvalidRequest(ServiceError):
    status = 400
    code = "invalid_request"


class NotFound(ServiceError):
    status = 404
    code = "not_found"


class MethodNotAllowed(ServiceError):
    status = 405
    code = "method_not_allowed"

    def __init__(self, message: str, *, allow: str) -> None:
        super().__init__(message, headers={"Allow": allow})


class RateLimited(ServiceError):
    status = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_s)})


class Unavailable(ServiceError):
    """A dependency (Redis, Kafka) is unreachable; the client should retry later."""

    status = 503
    code = "unavailable"

    def __init__(self, message: str, *, retry_after_s: int = 1) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_s)})


class Overloaded(Unavailable):
    """Saturated: new work is refused at once instead of waiting in a backlog."""

    code = "overloaded"


class StoreFull(Unavailable):
    """Redis is at its memory limit (policy noeviction): new work is refused, nothing that was
    accepted is evicted. Retried later, after expiries and completions free memory."""

    code = "store_full"

    def __init__(self, message: str) -> None:
        super().__init__(message, retry_after_s=5)


# Every code an error answer can carry, with its status: the one table clients read. Each
# service's OpenAPI document publishes it as `x-error-codes`, and tests/unit/test_error_codes.py
# keeps it equal to the codes the code can produce.
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
