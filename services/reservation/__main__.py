"""Run the reservation worker: `python -m services.reservation` (settings from the environment)."""

from __future__ import annotations

import sys

from services.reservation.app import create_app
from services.reservation.settings import ReservationSettings
from shared.faust_app import faust_main

if __name__ == "__main__":
    sys.exit(faust_main("reservation", ReservationSettings.from_env, create_app))
