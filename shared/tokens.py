"""Queue-token codec: HMAC-SHA256-signed claims, verified in constant time without touching Redis.

Format: ``v1.<base64url(concert|user|ticket|issued_ms)>.<base64url(hmac)>``. ``|`` cannot occur in
ids (see shared.ids), so the payload splits unambiguously. The codec is deterministic: the same
claims always give the same token, which is what makes re-entry return the same token.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from shared.ids import is_valid_id, seal, unseal

VERSION = "v1"
MAX_TOKEN_CHARS = 512


class InvalidToken(ValueError):
    """Malformed, forged or tampered token."""


# A token's state as the waiting room stores it in q:{c}:users (one letter), and the two other
# answers a check can give: superseded by a newer entry of the same user, or unknown.
TOKEN_WAITING, TOKEN_ACTIVE, TOKEN_EXPIRED = "w", "a", "e"
TOKEN_DROPPED, TOKEN_COMPLETED = "d", "c"
SUPERSEDED, UNKNOWN = "s", "u"


@dataclass(frozen=True, slots=True)
class TokenClaims:
    concert_id: str
    user_id: str
    ticket: int
    issued_ms: int


class TokenCodec:
    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("token secret must be at least 16 bytes")
        self._secret = secret

    def _sign(self, payload: bytes) -> bytes:
        return hmac.new(self._secret, VERSION.encode() + b"." + payload, hashlib.sha256).digest()

    def encode(self, claims: TokenClaims) -> str:
        payload = f"{claims.concert_id}|{claims.user_id}|{claims.ticket}|{claims.issued_ms}"
        raw = payload.encode("ascii")
        return seal(VERSION, raw, self._sign(raw))

    def decode(self, token: str) -> TokenClaims:
        """Verify the signature first, then parse; any failure is InvalidToken."""
        sealed = unseal(token, VERSION, MAX_TOKEN_CHARS)
        if sealed is None:
            raise InvalidToken("token is malformed")
        raw, signature = sealed
        if not hmac.compare_digest(signature, self._sign(raw)):
            raise InvalidToken("token signature is invalid")
        try:
            concert_id, user_id, ticket, issued = raw.decode("ascii").split("|")
            claims = TokenClaims(concert_id, user_id, int(ticket), int(issued))
        except ValueError:
            raise InvalidToken("token is malformed") from None
        if not (is_valid_id(claims.concert_id) and is_valid_id(claims.user_id)):
            raise InvalidToken("token is malformed")
        return claims
