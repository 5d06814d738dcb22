"""Run the reservation worker: `python -m services.reservation` (settings from the environment)."""

from __future__ import annotations

import sys

from services.reservation.app import create_app
from services.reservation.settings import ReservationSettings
from shared.faust_app import run_worker
from shared.settings import SettingsError


def main() -> int:
    try:
        settings = ReservationSettings.from_env()
    except SettingsError as exc:
        print(f"reservation: bad setting: {exc}", file=sys.stderr)
        return 2
    return run_worker(create_app(settings), settings.infra)


if __name__ == "__main__":
    sys.exit(main())
