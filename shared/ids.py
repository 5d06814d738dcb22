"""Identifier rules shared by every API: 1-64 chars of [A-Za-z0-9_.:-] (safe in keys and tokens)."""

from __future__ import annotations

import re

ID_PATTERN = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")
ID_RULE = "1-64 characters of A-Z a-z 0-9 _ . : -"


def is_valid_id(value: object) -> bool:
    return isinstance(value, str) and ID_PATTERN.fullmatch(value) is not None
