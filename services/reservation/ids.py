"""Reservation ids: opaque, unguessable, signed, and carrying the seat they are for.

``r1.<base64url(concert|seat|user|nonce)>.<base64url(hmac[:12])>``. Carrying the seat lets any
worker route a lookup to the seat's partition, and lets a reservation be answered ``pending``
between its 202 and the seat agent's decision (no 404 window) without storing anything first;
the signature keeps made-up ids out.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from shared.ids import is_valid_id, seal, unseal

PREFIX = "r1"
MAX_CHARS = 400  # three 64-character ids and a nonce encode to about 300


@dataclass(frozen=True, slots=True)
class ReservationRef:
    concert_id: str
    seat_id: str
    user_id: str
    nonce: str


class ReservationIds:
    def __init__(self, secret: bytes) -> None:
        self._key = hmac.new(secret, b"reservation-id", hashlib.sha256).digest()

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:12]

    def new(
        self, concert_id: str, seat_id: str, user_id: str, idempotency_key: str | None = None
    ) -> str:
        """A fresh id, or with the client's idempotency key the same id for the same request."""
        base = f"{concert_id}|{seat_id}|{user_id}"
        if idempotency_key is None:
            nonce = secrets.token_hex(8)
        else:
            nonce = hmac.new(self._key, f"{base}|{idempotency_key}".encode(), "sha256").hexdigest()
        payload = f"{base}|{nonce[:16]}".encode("ascii")
        return seal(PREFIX, payload, self._mac(payload))

    def parse(self, reservation_id: str) -> ReservationRef | None:
        """The reference inside a genuine id; None for anything else."""
        sealed = unseal(reservation_id, PREFIX, MAX_CHARS)
        if sealed is None:
            return None
        payload, mac = sealed
        if not hmac.compare_digest(mac, self._mac(payload)):
            return None
        fields = payload.decode("ascii", "replace").split("|")
        if len(fields) != 4 or not all(is_valid_id(f) for f in fields[:3]):
            return None
        return ReservationRef(*fields)


def payment_id_for(reservation_id: str) -> str:
    """One payment per reservation: the id is derived, so a repeated request is the same one."""
    return "p1." + hashlib.sha256(reservation_id.encode()).hexdigest()[:24]
