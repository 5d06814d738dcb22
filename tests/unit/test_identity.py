import json
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from shared.identity import (
    IdentityMismatch,
    IdentityRequired,
    IdentitySettings,
    IdentityVerifier,
    InvalidIdentity,
    mint,
)
from shared.settings import Env, SettingsError

SECRET = "site-login-secret-" + "s" * 32


def verifier(**env: str) -> IdentityVerifier:
    return IdentityVerifier(IdentitySettings.from_env(Env({"IDENTITY_JWT_SECRET": SECRET, **env})))


def bearer(token: str) -> str:
    return f"Bearer {token}"


def signed(key: object, algorithm: str, **claims: object) -> str:
    now = int(time.time())
    base: dict[str, object] = {"sub": "fan-1", "aud": "concert-queue", "exp": now + 60}
    return jwt.encode({**base, **claims}, key, algorithm=algorithm)  # type: ignore[arg-type]


class TestSettings:
    def test_a_verifier_must_be_configured(self) -> None:
        with pytest.raises(SettingsError, match="IDENTITY_JWT_SECRET"):
            IdentitySettings.from_env(Env({}))

    def test_a_short_shared_secret_is_refused(self) -> None:
        with pytest.raises(SettingsError, match="32 bytes"):
            IdentitySettings.from_env(Env({"IDENTITY_JWT_SECRET": "short"}))


class TestSharedSecret:
    def test_the_subject_of_a_valid_assertion_is_the_user(self) -> None:
        assert verifier().user_id(bearer(mint(SECRET, "fan-1"))) == "fan-1"

    @pytest.mark.parametrize("header", [None, "", "Bearer ", "Token abc", "bearer"])
    def test_no_bearer_assertion_means_identity_required(self, header: str | None) -> None:
        with pytest.raises(IdentityRequired):
            verifier().user_id(header)

    @pytest.mark.parametrize(
        "token",
        [
            mint("forged-" + "f" * 40, "fan-1"),
            mint(SECRET, "fan-1", ttl_s=-60),
            mint(SECRET, "fan-1", audience="another-service"),
            jwt.encode({"sub": "fan-1", "aud": "concert-queue"}, SECRET, algorithm="HS256"),
            mint(SECRET, "not a valid id!"),
            "a.b.c",
        ],
        ids=["forged", "expired", "audience", "no-exp", "bad-sub", "garbage"],
    )
    def test_a_bad_assertion_is_invalid(self, token: str) -> None:
        with pytest.raises(InvalidIdentity):
            verifier().user_id(bearer(token))

    def test_leeway_accepts_an_assertion_that_just_expired(self) -> None:
        token = mint(SECRET, "fan-1", ttl_s=-10)
        assert verifier(IDENTITY_JWT_LEEWAY_S="30").user_id(bearer(token)) == "fan-1"
        with pytest.raises(InvalidIdentity):
            verifier(IDENTITY_JWT_LEEWAY_S="0").user_id(bearer(token))

    def test_the_issuer_is_checked_when_configured(self) -> None:
        v = verifier(IDENTITY_JWT_ISSUER="https://tickets.example")
        assert v.user_id(bearer(mint(SECRET, "a", issuer="https://tickets.example"))) == "a"
        with pytest.raises(InvalidIdentity):
            v.user_id(bearer(mint(SECRET, "a", issuer="https://elsewhere")))

    def test_a_claimed_user_id_must_be_the_subject(self) -> None:
        IdentityVerifier.same_user("fan-1", "fan-1")
        with pytest.raises(IdentityMismatch):
            IdentityVerifier.same_user("attacker", "victim")


class TestPublicKeys:
    def test_an_rs256_assertion_verifies_with_the_sites_pem_public_key(
        self, tmp_path: Path
    ) -> None:
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        (tmp_path / "site.pem").write_bytes(pem)
        v = IdentityVerifier(
            IdentitySettings.from_env(
                Env({"IDENTITY_JWT_PUBLIC_KEY_FILE": str(tmp_path / "site.pem")})
            )
        )
        assert v.user_id(bearer(signed(private, "RS256"))) == "fan-1"
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        with pytest.raises(InvalidIdentity):
            v.user_id(bearer(signed(other, "RS256")))
        with pytest.raises(InvalidIdentity):  # no shared secret configured: HS256 is refused
            v.user_id(bearer(mint(SECRET, "fan-1")))

    def test_an_es256_assertion_verifies_with_a_jwks_file(self, tmp_path: Path) -> None:
        private = ec.generate_private_key(ec.SECP256R1())
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private.public_key()))
        (tmp_path / "jwks.json").write_text(json.dumps({"keys": [{**jwk, "alg": "ES256"}]}))
        v = IdentityVerifier(
            IdentitySettings.from_env(
                Env({"IDENTITY_JWT_PUBLIC_KEY_FILE": str(tmp_path / "jwks.json")})
            )
        )
        assert v.user_id(bearer(signed(private, "ES256"))) == "fan-1"
