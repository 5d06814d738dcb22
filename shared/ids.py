"""Identifier rules shared by every API (1-64 chars of [A-Za-z0-9_.:-], safe in keys and tokens),
and the one shape of the signed ids made from them (`seal`, `unseal`)."""

from __future__ import annotations

import base64
import binascii
import re

ID_PATTERN = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")
ID_RULE = "1-64 characters of A-Z a-z 0-9 _ . : -"


def is_valid_id(value: object) -> bool:
    return isinstance(value, str) and ID_PATTERN.fullmatch(value) is not None


def seal(prefix: str, payload: bytes, mac: bytes) -> str:
    """``<prefix>.<base64url(payload)>.<base64url(mac)>``: the shape of every signed id here
    (queue tokens, reservation ids)."""
    return f"{prefix}.{_b64(payload)}.{_b64(mac)}"


def unseal(text: object, prefix: str, max_chars: int) -> tuple[bytes, bytes] | None:
    """The payload and MAC of a text `seal` could have made; None for anything else. The
    caller still checks the MAC."""
    if not isinstance(text, str) or len(text) > max_chars:
        return None
    parts = text.split(".")
    if len(parts) != 3 or parts[0] != prefix:
        return None
    try:
        return _unb64(parts[1]), _unb64(parts[2])
    except (binascii.Error, ValueError):
        return None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
