"""Seat-projection settings, from the environment (documented in the README)."""

from __future__ import annotations

from dataclasses import dataclass

from shared.settings import Env, WorkerSettings


@dataclass(frozen=True)
class ProjectionSettings(WorkerSettings):
    NAME = "SEAT_PROJECTION"
    PORT = 8003

    @classmethod
    def from_env(cls, e: Env | None = None) -> ProjectionSettings:
        return cls(**cls.common(e or Env()))
