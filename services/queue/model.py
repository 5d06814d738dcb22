"""The waiting room's rules as a pure model: entry, touch, admission and completion of one
concert's queue, with the clock passed in. No I/O.

Redis runs the same rules as Lua scripts (shared/waiting_room.py, services/queue/store.py), one
atomic script per operation. This model is their specification in Python: its properties are
tested with hypothesis (tests/unit/test_queue_model.py), and a differential test runs random
operation sequences through it and through the scripts on a real Redis and compares every
answer and the final state (tests/integration/test_queue_model_vs_redis.py).

A token is (user, ticket). Its state is one letter: waiting, active, expired, dropped,
completed (shared/waiting_room.py's TOKEN_*). Tickets grow by one per entry, so admission in
ticket order is first come, first served.

The queue also follows the concert's seats (`seat`: the seat facts, each seat's last status by
version): while some seat is available the sale is open; when every seat is held or sold it is
paused (admission stops: held seats may still come back); when every seat is sold it is sold
out (admission stops and entries are refused: final).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from shared.tokens import (
    SUPERSEDED,
    TOKEN_ACTIVE,
    TOKEN_COMPLETED,
    TOKEN_DROPPED,
    TOKEN_EXPIRED,
    TOKEN_WAITING,
    UNKNOWN,
)

RATE_TAU_MS = 5000  # the measured admission rate is an EWMA over about this long
KEPT = "h"  # complete_if_settled: the buyer still holds a seat, the token is kept
SALE_OPEN, SALE_PAUSED, SALE_SOLD_OUT = "open", "paused", "sold_out"
SEAT_AVAILABLE, SEAT_HELD, SEAT_SOLD = "a", "h", "s"
SOLD_OUT_ENTRY = -2  # enter's `created` when the concert is sold out


def sale_state(total: int, held: int, sold: int) -> str:
    """Open while a seat is available; paused when all are held or sold; sold out when all
    are sold."""
    if total - held - sold > 0:
        return SALE_OPEN
    return SALE_PAUSED if held > 0 else SALE_SOLD_OUT


def lua_number(x: float) -> str:
    """How Lua's tostring writes a number (Redis's Lua 5.1: %.14g)."""
    return format(x, ".14g")


@dataclass(slots=True)
class Token:
    ticket: int
    issued_ms: int
    state: str


@dataclass
class Room:
    """One concert's queue: what the scripts keep in its six keys."""

    seq: int = 0  # the last ticket issued; 0: the queue does not exist yet
    users: dict[str, Token] = field(default_factory=dict)
    waiting: dict[str, int] = field(default_factory=dict)  # user -> ticket
    heartbeat: dict[str, int] = field(default_factory=dict)  # user -> last seen (ms)
    active: dict[str, int] = field(default_factory=dict)  # user -> deadline (ms)
    # k tokens, ts, r rate, f frontier; nh/ns seats held/sold, sale (sale_state)
    gate: dict[str, str] = field(default_factory=dict)
    seats: dict[str, tuple[str, int]] = field(default_factory=dict)  # seat -> (status, version)

    # --- helpers shared by the rules (the Lua prelude's) -------------------------------------

    def _set(self, user: str, token: Token, state: str) -> None:
        self.users[user] = Token(token.ticket, token.issued_ms, state)

    def _expire_active(self, user: str, token: Token) -> None:
        self.active.pop(user, None)
        self._set(user, token, TOKEN_EXPIRED)

    def _drop_waiting(self, user: str, token: Token) -> None:
        self.waiting.pop(user, None)
        self.heartbeat.pop(user, None)
        self._set(user, token, TOKEN_DROPPED)

    def _seen(self) -> tuple[int, str]:
        return int(float(self.gate.get("f", "0"))), self.gate.get("r", "0")

    @property
    def sale(self) -> str:
        return self.gate.get("sale", SALE_OPEN)

    # --- the rules ---------------------------------------------------------------------------

    def enter(
        self, user: str, now: int, *, ttl_ms: int, heartbeat_ms: int
    ) -> tuple[int, int, int, str, int, int, str, int]:
        """(created, ticket, issued_ms, state, deadline_ms, frontier, rate, now): a live token
        is answered again (and kept alive); otherwise a new ticket at the back of the line.
        Nobody enters a sold-out concert (created = SOLD_OUT_ENTRY)."""
        if self.sale == SALE_SOLD_OUT:
            return (SOLD_OUT_ENTRY, 0, 0, UNKNOWN, 0, 0, "0", now)
        token = self.users.get(user)
        if token is not None:
            if token.state == TOKEN_WAITING:
                seen = self.heartbeat.get(user)
                if seen is not None and now - seen <= heartbeat_ms:
                    self.heartbeat[user] = now
                    frontier, rate = self._seen()
                    return (0, token.ticket, token.issued_ms, TOKEN_WAITING, 0, frontier, rate, now)
                self._drop_waiting(user, token)
            elif token.state == TOKEN_ACTIVE:
                deadline = self.active.get(user)
                if deadline is not None and deadline > now:
                    self.active[user] = now + ttl_ms
                    return (
                        0,
                        token.ticket,
                        token.issued_ms,
                        TOKEN_ACTIVE,
                        now + ttl_ms,
                        0,
                        "0",
                        now,
                    )
                self._expire_active(user, token)
        self.seq += 1
        self.users[user] = Token(self.seq, now, TOKEN_WAITING)
        self.waiting[user] = self.seq
        self.heartbeat[user] = now
        self.gate.setdefault("f", "0")
        frontier, rate = self._seen()
        return (1, self.seq, now, TOKEN_WAITING, 0, frontier, rate, now)

    def touch(
        self, user: str, ticket: int, now: int, *, ttl_ms: int, heartbeat_ms: int, renew: bool
    ) -> tuple[str, int, int, str, int]:
        """(state, deadline_ms, frontier, rate, now) of the token (user, ticket), renewing a
        waiting one's heartbeat, and an active one's deadline when `renew`."""
        token = self.users.get(user)
        if token is None:
            return (UNKNOWN, 0, 0, "0", now)
        if token.ticket != ticket:
            return (SUPERSEDED, 0, 0, "0", now)
        if token.state == TOKEN_WAITING:
            seen = self.heartbeat.get(user)
            if seen is None or now - seen > heartbeat_ms:
                self._drop_waiting(user, token)
                return (TOKEN_DROPPED, 0, 0, "0", now)
            self.heartbeat[user] = now
            frontier, rate = self._seen()
            return (TOKEN_WAITING, 0, frontier, rate, now)
        if token.state == TOKEN_ACTIVE:
            deadline = self.active.get(user)
            if deadline is None or deadline <= now:
                self._expire_active(user, token)
                return (TOKEN_EXPIRED, 0, 0, "0", now)
            if renew:
                deadline = now + ttl_ms
                self.active[user] = deadline
            return (TOKEN_ACTIVE, deadline, 0, "0", now)
        return (token.state, 0, 0, "0", now)

    def promote(
        self,
        now: int,
        *,
        admit_per_s: float,
        max_active: int,
        ttl_ms: int,
        heartbeat_ms: int,
        burst: int,
        limit: int,
        first_grace_ms: int = 0,
    ) -> tuple[int, int, int, int, int, str, str]:
        """One admission tick: (admitted, expired, dropped, waiting, active, rate, sale);
        admitted -1 when the queue does not exist. Expires active tokens past their deadline and
        drops waiting ones past their heartbeat (at most `limit` each), then, while the sale is
        open, admits the front of the line, as many as a token bucket (`admit_per_s`, depth
        `burst`), the free active places (`max_active`) and `limit` allow. An admitted token's
        first deadline is `first_grace_ms` later than a renewal's: its fan may be between two
        polls."""
        if self.seq == 0:
            return (-1, 0, 0, 0, 0, "0", SALE_OPEN)
        expired = sorted((d, u) for u, d in self.active.items() if d <= now)[:limit]
        for _, user in expired:
            self.active.pop(user)
            if user in self.users:
                self._set(user, self.users[user], TOKEN_EXPIRED)
        cutoff = now - heartbeat_ms - 1
        stale = sorted((s, u) for u, s in self.heartbeat.items() if s <= cutoff)[:limit]
        for _, user in stale:
            self.waiting.pop(user, None)
            self.heartbeat.pop(user)
            if user in self.users:
                self._set(user, self.users[user], TOKEN_DROPPED)
        tokens_s, ts_s = self.gate.get("k"), self.gate.get("ts")
        ewma = float(self.gate.get("r", "0"))
        if tokens_s is None or ts_s is None:
            tokens, ts = float(burst), now
        else:
            tokens, ts = float(tokens_s), int(float(ts_s))
        elapsed = max(0, now - ts)
        tokens = min(float(burst), tokens + elapsed * admit_per_s / 1000)
        free = max_active - len(self.active)
        n = min(math.floor(tokens), free, limit) if self.sale == SALE_OPEN else 0
        admitted = 0
        if n > 0:
            for ticket, user in sorted((t, u) for u, t in self.waiting.items())[:n]:
                del self.waiting[user]
                self.heartbeat.pop(user, None)
                self.active[user] = now + ttl_ms + first_grace_ms
                token = self.users.get(user) or Token(ticket, now, TOKEN_WAITING)
                self._set(user, token, TOKEN_ACTIVE)
                admitted += 1
            tokens -= admitted
        if elapsed > 0:
            ewma += (1 - math.exp(-elapsed / RATE_TAU_MS)) * (admitted * 1000 / elapsed - ewma)
        else:
            ewma += admitted * 1000 / RATE_TAU_MS
        head = min(self.waiting.values(), default=None)
        frontier = self.seq if head is None else head - 1
        self.gate.update(k=lua_number(tokens), ts=str(now), r=lua_number(ewma), f=str(frontier))
        rate = lua_number(ewma)
        waiting, active = len(self.waiting), len(self.active)
        return (admitted, len(expired), len(stale), waiting, active, rate, self.sale)

    def seat(self, seat_id: str, status: str, version: int, total: int | None) -> str:
        """One seat fact (SEAT_HELD, SEAT_SOLD or SEAT_AVAILABLE at `version`), applied unless
        the seat already has it or a later one; the sale state after it. `total`: the concert's
        seats (None: not in the catalog, the sale state is left as it is)."""
        old, seen = self.seats.get(seat_id, (SEAT_AVAILABLE, 0))
        held, sold = int(self.gate.get("nh", "0")), int(self.gate.get("ns", "0"))
        if version > seen:
            held -= old == SEAT_HELD
            sold -= old == SEAT_SOLD
            held += status == SEAT_HELD
            sold += status == SEAT_SOLD
            self.seats[seat_id] = (status, version)
            self.gate.update(nh=str(held), ns=str(sold))
            if total is not None:
                self.gate["sale"] = sale_state(total, held, sold)
        return self.sale

    def complete(self, user: str, ticket: int) -> str:
        """The state the token was in; a waiting or active one is now completed."""
        token = self.users.get(user)
        if token is None:
            return UNKNOWN
        if token.ticket != ticket:
            return SUPERSEDED
        if token.state == TOKEN_ACTIVE:
            self.active.pop(user, None)
        elif token.state == TOKEN_WAITING:
            self.waiting.pop(user, None)
            self.heartbeat.pop(user, None)
        else:
            return token.state
        self._set(user, token, TOKEN_COMPLETED)
        return token.state

    def complete_if_settled(self, user: str, ticket: int, holds: Iterable[int], now: int) -> str:
        """A buyer's token once their seat is confirmed: completed (as `complete`) only when
        none of their holds is still open (`holds`: the deadlines of their pending and held
        reservations), so a fan buying several seats keeps it until the last one settles;
        KEPT otherwise."""
        if any(deadline >= now for deadline in holds):
            return KEPT
        return self.complete(user, ticket)

    def stats(self) -> tuple[int, int, str]:
        """(waiting, active, measured rate)."""
        return (len(self.waiting), len(self.active), self.gate.get("r", "0"))
