import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.tokens import InvalidToken, TokenClaims, TokenCodec

SECRET = b"k" * 32
ids = st.from_regex(r"[A-Za-z0-9_.:\-]{1,64}", fullmatch=True)


class TestTokenCodec:
    def test_round_trips_the_claims(self) -> None:
        codec = TokenCodec(SECRET)
        claims = TokenClaims("concert-1", "user:42", 17, 1_790_000_000_123)
        assert codec.decode(codec.encode(claims)) == claims

    @given(ids, ids, st.integers(1, 2**53), st.integers(0, 2**45))
    def test_round_trips_any_valid_ids(self, concert: str, user: str, ticket: int, at: int) -> None:
        codec = TokenCodec(SECRET)
        claims = TokenClaims(concert, user, ticket, at)
        assert codec.decode(codec.encode(claims)) == claims

    def test_is_deterministic_so_re_entry_gets_the_same_token(self) -> None:
        claims = TokenClaims("c", "u", 1, 2)
        assert TokenCodec(SECRET).encode(claims) == TokenCodec(SECRET).encode(claims)

    def test_is_url_safe(self) -> None:
        token = TokenCodec(SECRET).encode(TokenClaims("c" * 64, "u" * 64, 10**12, 10**13))
        assert all(ch.isalnum() or ch in "-_." for ch in token)

    def test_rejects_a_token_signed_with_another_secret(self) -> None:
        forged = TokenCodec(b"x" * 32).encode(TokenClaims("c", "u", 1, 2))
        with pytest.raises(InvalidToken, match="signature"):
            TokenCodec(SECRET).decode(forged)

    def test_rejects_a_tampered_payload(self) -> None:
        codec = TokenCodec(SECRET)
        version, payload, signature = codec.encode(TokenClaims("c", "alice", 5, 2)).split(".")
        other = codec.encode(TokenClaims("c", "alice", 1, 2)).split(".")[1]
        with pytest.raises(InvalidToken):
            codec.decode(f"{version}.{other}.{signature}")
        flipped = payload[:-1] + ("A" if payload[-1] != "A" else "B")
        with pytest.raises(InvalidToken):
            codec.decode(f"{version}.{flipped}.{signature}")

    @pytest.mark.parametrize(
        "token",
        ["", "abc", "v1.a.b.c", "v2.YQ.YQ", "v1.!!!.???", "v1..", "v1." + "a" * 600 + ".b"],
    )
    def test_rejects_malformed_tokens(self, token: str) -> None:
        with pytest.raises(InvalidToken):
            TokenCodec(SECRET).decode(token)

    def test_rejects_a_validly_signed_payload_that_is_not_claims(self) -> None:
        codec = TokenCodec(SECRET)
        raw = b"only|three|parts"
        import base64

        def b64(data: bytes) -> str:
            return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

        token = f"v1.{b64(raw)}.{b64(codec._sign(raw))}"
        with pytest.raises(InvalidToken, match="malformed"):
            codec.decode(token)

    def test_refuses_a_short_secret(self) -> None:
        with pytest.raises(ValueError):
            TokenCodec(b"short")
