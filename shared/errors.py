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
