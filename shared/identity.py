"""The fan's proven identity: a JWT from the ticket site's login, verified before queue entry.

The queue never takes a user id on the client's word. `POST /v1/queue/tokens` needs
`Authorization: Bearer <JWT>` signed by the site (HS256 with `IDENTITY_JWT_SECRET`, or RS256/ES256
with the public key or JWKS in `IDENTITY_JWT_PUBLIC_KEY_FILE`), for audience
`IDENTITY_JWT_AUDIENCE`, from `IDENTITY_JWT_ISSUER` when set, with `exp` and `sub` required. Its
`sub` is the user id; a body `user_id`, if sent, must equal it.

`python -m shared.identity mint USER [TTL_S]` mints a dev assertion with IDENTITY_JWT_SECRET
(what `make run` prints), as a site's login would.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from shared.errors import IdentityMismatch, IdentityRequired, InvalidIdentity
from shared.ids import ID_RULE, is_valid_id
from shared.settings import Env, SettingsError

DEFAULT_AUDIENCE = "concert-queue"
ASYMMETRIC = ["RS256", "ES256"]


@dataclass(frozen=True)
class IdentitySettings:
    secret: str
    public_key_file: str
    audience: str
    issuer: str
    leeway_s: float

    @classmethod
    def from_env(cls, e: Env) -> IdentitySettings:
        s = cls(
            secret=e.text("IDENTITY_JWT_SECRET", ""),
            public_key_file=e.text("IDENTITY_JWT_PUBLIC_KEY_FILE", ""),
            audience=e.text("IDENTITY_JWT_AUDIENCE", DEFAULT_AUDIENCE),
            issuer=e.text("IDENTITY_JWT_ISSUER", ""),
            leeway_s=e.number("IDENTITY_JWT_LEEWAY_S", 30.0, minimum=0.0, maximum=300.0),
        )
        if not (s.secret or s.public_key_file):
            raise SettingsError(
                "IDENTITY_JWT_SECRET or IDENTITY_JWT_PUBLIC_KEY_FILE must be set: the queue "
                "verifies each fan's login assertion (make run generates a dev secret)"
            )
        if s.secret and len(s.secret.encode()) < 32:
            raise SettingsError("IDENTITY_JWT_SECRET must be at least 32 bytes")
        return s


class IdentityVerifier:
    """Turns an Authorization header into the fan's user id, or a 401/403 that says why."""

    def __init__(self, settings: IdentitySettings) -> None:
        self.settings = settings
        self.keys: list[tuple[Any, list[str]]] = []
        if settings.secret:
            self.keys.append((settings.secret, ["HS256"]))
        if settings.public_key_file:
            self.keys.extend((key, ASYMMETRIC) for key in _public_keys(settings.public_key_file))

    def user_id(self, authorization: str | None) -> str:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise IdentityRequired("Authorization: Bearer <identity JWT> is required")
        claims = self._verified(token.strip())
        subject = claims.get("sub")
        if not isinstance(subject, str) or not is_valid_id(subject):
            raise InvalidIdentity(f"the identity's sub must be {ID_RULE}")
        return subject

    @staticmethod
    def same_user(subject: str, claimed: str) -> None:
        """A user id the client also sent must be the one its identity names."""
        if claimed != subject:
            raise IdentityMismatch("user_id is not the user the identity names")

    def _verified(self, token: str) -> dict[str, Any]:
        s = self.settings
        reason = "no verification key"
        for key, algorithms in self.keys:
            try:
                claims: dict[str, Any] = jwt.decode(
                    token,
                    key,
                    algorithms=algorithms,
                    audience=s.audience,
                    issuer=s.issuer or None,
                    leeway=s.leeway_s,
                    options={"require": ["exp", "sub"]},
                )
                return claims
            except jwt.InvalidSignatureError:
                reason = "bad signature"  # another key may still match
            except jwt.ExpiredSignatureError:
                raise InvalidIdentity("the identity has expired") from None
            except jwt.InvalidAudienceError:
                raise InvalidIdentity("the identity is for another audience") from None
            except jwt.InvalidIssuerError:
                raise InvalidIdentity("the identity is from another issuer") from None
            except jwt.PyJWTError as exc:
                reason = type(exc).__name__
        raise InvalidIdentity(f"the identity cannot be verified ({reason})")


def _public_keys(path: str) -> list[Any]:
    """The keys of a PEM public key or a JWKS file."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise SettingsError(f"IDENTITY_JWT_PUBLIC_KEY_FILE cannot be read: {exc}") from None
    try:
        if text.lstrip().startswith("{"):
            return [k.key for k in jwt.PyJWKSet.from_dict(json.loads(text)).keys]
        return [jwt.algorithms.get_default_algorithms()["RS256"].prepare_key(text)]
    except (ValueError, jwt.PyJWTError):
        pass
    try:
        return [jwt.algorithms.get_default_algorithms()["ES256"].prepare_key(text)]
    except (ValueError, jwt.PyJWTError) as exc:
        raise SettingsError(f"IDENTITY_JWT_PUBLIC_KEY_FILE holds no usable key: {exc}") from None


def mint(
    secret: str,
    user_id: str,
    *,
    ttl_s: float = 3600,
    audience: str = DEFAULT_AUDIENCE,
    issuer: str = "",
) -> str:
    """An HS256 identity assertion, as a site's login would issue (dev, tests, load driver)."""
    now = int(time.time())
    claims: dict[str, Any] = {"sub": user_id, "aud": audience, "iat": now, "exp": now + int(ttl_s)}
    if issuer:
        claims["iss"] = issuer
    return jwt.encode(claims, secret, algorithm="HS256")


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] != "mint":
        print("usage: python -m shared.identity mint USER [TTL_S]", file=sys.stderr)
        return 2
    s = IdentitySettings.from_env(Env())
    if not s.secret:
        print("minting needs IDENTITY_JWT_SECRET", file=sys.stderr)
        return 2
    ttl = float(argv[2]) if len(argv) > 2 else 3600.0
    print(mint(s.secret, argv[1], ttl_s=ttl, audience=s.audience, issuer=s.issuer))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
