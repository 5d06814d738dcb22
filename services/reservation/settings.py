"""Reservation-service settings, from the environment (documented in the README)."""

from __future__ import annotations

from dataclasses import dataclass

from shared.settings import Env, SettingsError, TokenTimes, WorkerSettings, token_secret


@dataclass(frozen=True)
class ReservationSettings(WorkerSettings):
    NAME = "RESERVATION"
    PORT = 8001

    token_secret: bytes
    admin_token: str
    seat_hold_s: float
    max_holds_per_user: int
    hold_sweep_s: float
    tokens: TokenTimes  # the queue's, to check the tokens it issued
    shed_delay_ms: float  # refuse new reservations while decisions lag more than this (0: never)
    max_in_flight: int  # reservation requests this process handles at once; more are refused

    @classmethod
    def from_env(cls, e: Env | None = None) -> ReservationSettings:
        e = e or Env()
        common = cls.common(e)
        admin = e.text("ADMIN_TOKEN", "")
        if len(admin) < 16:
            raise SettingsError("ADMIN_TOKEN must be set to a random string of 16+ characters")
        return cls(
            **common,
            token_secret=token_secret(e, common["infra"].env),
            admin_token=admin,
            seat_hold_s=e.number("SEAT_HOLD_S", 300.0, minimum=0.1),
            max_holds_per_user=e.integer("MAX_HOLDS_PER_USER", 4, minimum=1),
            hold_sweep_s=e.number("HOLD_SWEEP_S", 0.5, minimum=0.05, maximum=60.0),
            tokens=TokenTimes.from_env(e),
            shed_delay_ms=e.number("RESERVATION_SHED_DELAY_MS", 500.0, minimum=0.0),
            max_in_flight=e.integer("RESERVATION_MAX_IN_FLIGHT", 1000, minimum=1),
        )
