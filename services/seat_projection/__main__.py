"""Run the seat projection worker: `python -m services.seat_projection`."""

from __future__ import annotations

import sys

from services.seat_projection.app import create_app
from services.seat_projection.settings import ProjectionSettings
from shared.faust_app import faust_main

if __name__ == "__main__":
    sys.exit(faust_main("seat_projection", ProjectionSettings.from_env, create_app))
