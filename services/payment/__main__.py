"""Run the payment worker: `python -m services.payment` (settings from the environment)."""

from __future__ import annotations

import sys

from services.payment.app import create_app
from services.payment.settings import PaymentSettings
from shared.faust_app import faust_main

if __name__ == "__main__":
    sys.exit(faust_main("payment", PaymentSettings.from_env, create_app))
