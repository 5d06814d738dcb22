"""A token's JSON answer, as the API and the page's event stream give it."""

from __future__ import annotations

from typing import Any

from services.queue.core import Observed, eta_seconds, iso_ms, poll_after_ms, position
from services.queue.model import SALE_OPEN, SALE_PAUSED, SALE_SOLD_OUT
from shared.tokens import TOKEN_WAITING, TokenClaims

SALE_MESSAGES = {
    SALE_PAUSED: "Every seat is held by fans paying right now. Seats whose payment fails or "
    "whose hold lapses come back, and the line moves on then: keep your place.",
    SALE_SOLD_OUT: "Sold out: every seat of this concert has been bought. The line is closed.",
}


def token_view(
    token: str,
    claims: TokenClaims,
    seen: Observed,
    *,
    configured_rate: float,
    heartbeat_ms: int,
    active_ttl_ms: int,
    sale: str = SALE_OPEN,
) -> dict[str, Any]:
    """A token's JSON answer: what the core computes, in the API's shape. A waiting token of a
    sold-out concert gets the final status `sold_out` (no position, no more polling); while the
    sale is paused it keeps its place with no ETA."""
    if seen.state == TOKEN_WAITING and sale == SALE_SOLD_OUT:
        return {
            "token": token,
            "concert_id": claims.concert_id,
            "user_id": claims.user_id,
            "status": "sold_out",
            "ticket": claims.ticket,
            "position": None,
            "eta_seconds": None,
            "poll_after_ms": None,
            "expires_at": None,
            "sale": sale,
            "message": SALE_MESSAGES[sale],
        }
    if seen.state == TOKEN_WAITING:
        pos: int | None = position(claims.ticket, seen.frontier)
        eta = eta_seconds(pos or 0, seen.measured_rate, configured_rate)
        expires = seen.now_ms + heartbeat_ms
        rate = seen.measured_rate if seen.measured_rate > 0.01 else configured_rate
        if sale == SALE_PAUSED:
            eta, rate = None, 0.0
    else:
        pos, eta, expires, rate = None, None, seen.deadline_ms, configured_rate
    view: dict[str, Any] = {
        "token": token,
        "concert_id": claims.concert_id,
        "user_id": claims.user_id,
        "status": "waiting" if seen.state == TOKEN_WAITING else "active",
        "ticket": claims.ticket,
        "position": pos,
        "eta_seconds": eta,
        "poll_after_ms": poll_after_ms(
            seen.state,
            pos,
            rate,
            heartbeat_ms=heartbeat_ms,
            active_ttl_ms=active_ttl_ms,
            ticket=claims.ticket,
        ),
        "expires_at": iso_ms(expires),
        "sale": sale,
    }
    if sale in SALE_MESSAGES:
        view["message"] = SALE_MESSAGES[sale]
    return view
