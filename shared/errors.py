"""Every error the services raise, in one place: a stable machine-readable `code` and a message
safe to show to clients, with no HTTP in them. The HTTP edge (shared/http.py) maps each code to
its status through one table, `ERROR_CODES`, which is also the documented list of codes."""

from __future__ import annotations


class DomainError(Exception):
    """A failure a client can be told about: `code` says which, `message` says it in words,
    `extra` adds fields to the answer (e.g. `field`, `reason`, `position`)."""

    code = "bad_request"
    retry_after_s: int | None = None  # for failures that pass: when to try again

    def __init__(self, message: str, **extra: object) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra


# --- the request itself ----------------------------------------------------------------------


class InvalidRequest(DomainError):
    code = "invalid_request"


class NotFound(DomainError):
    code = "not_found"


class MethodNotAllowed(DomainError):
    code = "method_not_allowed"

    def __init__(self, message: str, *, allow: str) -> None:
        super().__init__(message)
        self.allow = allow


class Conflict(DomainError):
    code = "conflict"


class RateLimited(DomainError):
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


# --- who is asking -----------------------------------------------------------------------------


class IdentityRequired(DomainError):
    code = "identity_required"


class InvalidIdentity(DomainError):
    code = "invalid_identity"


class IdentityMismatch(DomainError):
    code = "identity_mismatch"


class Unauthorized(DomainError):
    code = "unauthorized"


class Forbidden(DomainError):
    code = "forbidden"


# --- queue tokens and holds --------------------------------------------------------------------


class TokenInvalid(DomainError):
    code = "invalid_token"


class TokenMismatch(DomainError):
    code = "token_mismatch"


class TokenNotActive(DomainError):
    code = "token_not_active"


class TokenGone(DomainError):
    code = "token_expired"


class HoldExpired(DomainError):
    code = "hold_expired"


class SoldOut(DomainError):
    """Every seat of the concert is sold: nobody enters its queue any more (final)."""

    code = "sold_out"


# --- the system cannot serve now: retried later ------------------------------------------------


class Unavailable(DomainError):
    """A dependency (Redis, Kafka) is unreachable; the client should retry later."""

    code = "unavailable"

    def __init__(self, message: str, *, retry_after_s: int = 1, **extra: object) -> None:
        super().__init__(message, **extra)
        self.retry_after_s = retry_after_s


class Overloaded(Unavailable):
    """Saturated: new work is refused at once instead of waiting in a backlog."""

    code = "overloaded"


class StoreFull(Unavailable):
    """Redis is at its memory limit (policy noeviction): new work is refused, nothing that was
    accepted is evicted. Retried later, after expiries and completions free memory."""

    code = "store_full"

    def __init__(self, message: str) -> None:
        super().__init__(message, retry_after_s=5)


class NotReplicated(Unavailable):
    """An entry did not reach the replicas QUEUE_WAIT_REPLICAS asks for in time."""

    code = "not_replicated"


class Draining(Unavailable):
    """The process is shutting down; another replica serves."""

    code = "draining"
