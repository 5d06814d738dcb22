"""Run the payment worker: `python -m services.payment` (settings from the environment)."""

from __future__ import annotations

import sys

from services.payment.app import create_app
from services.payment.settings import PaymentSettings
from shared.faust_app import run_worker
from shared.settings import SettingsError


def main() -> int:
    try:
        settings = PaymentSettings.from_env()
    except SettingsError as exc:
        print(f"payment: bad setting: {exc}", file=sys.stderr)
        return 2
    return run_worker(create_app(settings), settings.infra)


if __name__ == "__main__":
    sys.exit(main())
