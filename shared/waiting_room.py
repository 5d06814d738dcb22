"""The waiting room's Redis layout and token validation, shared by every service that checks tokens.

Key layout (all keys of a concert share the hash tag ``{concert_id}``, so one concert lives on one
Redis Cluster slot and every script is single-slot):

==========================  ======  ==========================================================
key                         type    content
==========================  ======  ==========================================================
``q:{c}:seq``               string  last ticket issued (INCR): FIFO order by arrival
``q:{c}:users``             hash    user -> ``ticket:issued_ms:state`` (w/a/e/d/c)
``q:{c}:wait``              zset    waiting user -> ticket (admission pops the lowest)
``q:{c}:hb``                zset    waiting user -> last heartbeat ms (finds abandoned waiters)
``q:{c}:active``            zset    active user -> deadline ms (finds expired tokens)
``q:{c}:gate``              hash    admission state: token bucket, rate EWMA, frontier, seats
                                    held and sold, sale state, the controller's rate
``q:{c}:seats``             hash    seat -> ``status:version`` (a/h/s), from the seat facts
``q:concerts``              set     concerts with a queue (not tagged: read by admission loops)
==========================  ======  ==========================================================

Validation is the signature check (no Redis) followed by one round trip: the TOUCH script reads
the user's state, renews an active token's deadline (or a waiter's heartbeat), and expires or drops
it on the spot if its time has passed, so a token is never honoured late between sweeps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.errors import TokenGone, TokenInvalid, TokenMismatch, TokenNotActive
from shared.redis_client import UNAVAILABLE_ERRORS, AnyRedis, read_lua, unavailable
from shared.tokens import (
    SUPERSEDED,
    TOKEN_ACTIVE,
    TOKEN_COMPLETED,
    TOKEN_DROPPED,
    TOKEN_EXPIRED,
    TOKEN_WAITING,
    UNKNOWN,
    InvalidToken,
    TokenClaims,
    TokenCodec,
)

CONCERTS_KEY = "q:concerts"

# How a token's states (shared/tokens.py) are told to clients.
GONE_REASONS = {
    TOKEN_EXPIRED: "active token not used for its time to live",
    TOKEN_DROPPED: "waiting token missed its heartbeat",
    TOKEN_COMPLETED: "token was completed or revoked",
    SUPERSEDED: "user re-entered the queue with a new token",
    UNKNOWN: "no such token in the queue",
}
GONE_CODES = {
    TOKEN_EXPIRED: "expired",
    TOKEN_DROPPED: "dropped",
    TOKEN_COMPLETED: "completed",
    SUPERSEDED: "superseded",
    UNKNOWN: "unknown",
}


def queue_keys(concert_id: str) -> list[str]:
    """KEYS for every waiting-room script, always in this order."""
    p = f"q:{{{concert_id}}}:"
    return [p + "seq", p + "users", p + "wait", p + "hb", p + "active", p + "gate"]


def seats_key(concert_id: str) -> str:
    """The queue's view of the concert's seats (services/queue/seat_facts.py keeps it)."""
    return f"q:{{{concert_id}}}:seats"


# The first line of the scripts that keep working at Redis's memory limit (policy noeviction):
# token checks and renewals, admission, expiry and completion only update, move or delete what
# exists (a reservation's hold slot adds a few bytes, at most MAX_HOLDS_PER_USER per fan), so fans
# already in line or admitted carry on while new entries, which grow memory, get 503 store_full.
ALLOW_OOM = "#!lua flags=allow-oom\n"

# The waiting room's Lua (shared/lua/): the prelude every script starts with, the token check
# as a function (also run by the reservation service's reserve), and TOUCH itself.
LUA_PRELUDE = read_lua(__file__, "prelude")
TOUCH_FN = read_lua(__file__, "touch_fn")
TOUCH_LUA = ALLOW_OOM + LUA_PRELUDE + TOUCH_FN + read_lua(__file__, "touch")


@dataclass(frozen=True, slots=True)
class TokenState:
    """What one TOUCH round trip found."""

    claims: TokenClaims
    state: str
    deadline_ms: int
    frontier: int
    rate_per_s: float
    now_ms: int


def raise_if_gone(state: TokenState) -> None:
    if state.state not in (TOKEN_WAITING, TOKEN_ACTIVE):
        raise TokenGone(
            f"queue token is no longer valid: {GONE_REASONS[state.state]}",
            reason=GONE_CODES[state.state],
        )


class WaitingRoom:
    """Token checks against the waiting room; one instance per process, shared by handlers."""

    def __init__(
        self, redis: AnyRedis, codec: TokenCodec, *, active_ttl_s: float, heartbeat_s: float
    ) -> None:
        self.redis = redis
        self.codec = codec
        self.active_ttl_ms = int(active_ttl_s * 1000)
        self.heartbeat_ms = int(heartbeat_s * 1000)
        self._touch: Any = redis.register_script(TOUCH_LUA)
        self.scripts = [self._touch]

    def decode(self, token: str) -> TokenClaims:
        try:
            return self.codec.decode(token)
        except InvalidToken as exc:
            raise TokenInvalid(str(exc)) from None

    def touch_args(
        self, claims: TokenClaims, *, renew: bool = True, heartbeat_ms: int | None = None
    ) -> list[Any]:
        """ARGV 1-5 of TOUCH_FN's call, for this process's time to live and heartbeat (or the
        given heartbeat: the queue widens it while it sheds load)."""
        hb = self.heartbeat_ms if heartbeat_ms is None else heartbeat_ms
        return [claims.user_id, claims.ticket, self.active_ttl_ms, hb, int(renew)]

    async def touch(
        self, claims: TokenClaims, *, renew: bool = True, heartbeat_ms: int | None = None
    ) -> TokenState:
        """One Redis round trip: state, plus renewal of the deadline or heartbeat."""
        args = self.touch_args(claims, renew=renew, heartbeat_ms=heartbeat_ms)
        try:
            r = await self._touch(keys=queue_keys(claims.concert_id), args=args)
        except UNAVAILABLE_ERRORS as exc:
            raise unavailable(exc, "the waiting room") from None
        return token_state(claims, r)

    def claims_of(self, token: str, *, concert_id: str, user_id: str) -> TokenClaims:
        """Signed, and this user's and this concert's (no Redis)."""
        claims = self.decode(token)
        if claims.concert_id != concert_id or claims.user_id != user_id:
            raise TokenMismatch("queue token belongs to another user or concert")
        return claims

    async def validate(self, token: str, *, concert_id: str, user_id: str) -> TokenState:
        """The check every protected call makes: signed, this user's, this concert's, active."""
        claims = self.claims_of(token, concert_id=concert_id, user_id=user_id)
        state = await self.touch(claims)
        require_active(state)
        return state


def token_state(claims: TokenClaims, r: list[Any]) -> TokenState:
    """TOUCH_FN's answer, read."""
    return TokenState(claims, r[0], int(r[1]), int(r[2]), float(r[3]), int(r[4]))


def require_active(state: TokenState) -> None:
    raise_if_gone(state)
    if state.state != TOKEN_ACTIVE:
        raise TokenNotActive("queue token is still waiting; poll until it is active")
