"""`python -m shared.healthcheck URL`: exit 0 when the service at URL answers /readyz with 200,
1 otherwise. The container health check of infra/compose.yaml (the image has no curl); the
standard library only, so it stays cheap every few seconds."""

from __future__ import annotations

import sys
import urllib.request


def ready(base_url: str, timeout_s: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url.rstrip('/')}/readyz", timeout=timeout_s) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m shared.healthcheck http://127.0.0.1:8000", file=sys.stderr)
        return 2
    return 0 if ready(argv[0]) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
