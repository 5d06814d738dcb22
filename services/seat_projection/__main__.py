"""Run the seat projection worker: `python -m services.seat_projection`."""

from __future__ import annotations

import sys

from services.seat_projection.app import create_app
from services.seat_projection.settings import ProjectionSettings
from shared.faust_app import run_worker
from shared.settings import SettingsError


def main() -> int:
    try:
        settings = ProjectionSettings.from_env()
    except SettingsError as exc:
        print(f"seat_projection: bad setting: {exc}", file=sys.stderr)
        return 2
    return run_worker(create_app(settings), settings.infra)


if __name__ == "__main__":
    sys.exit(main())
