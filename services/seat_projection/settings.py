"""Seat-projection settings, from the environment (documented in the README)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from shared.settings import Env, InfraSettings, require_loopback_in_dev


@dataclass(frozen=True)
class ProjectionSettings:
    infra: InfraSettings
    host: str
    port: int
    datadir: Path

    @classmethod
    def from_env(cls, e: Env | None = None) -> ProjectionSettings:
        e = e or Env()
        infra = InfraSettings.from_env(e)
        host = e.text("SEAT_PROJECTION_HOST", "127.0.0.1")
        require_loopback_in_dev(infra.env, host, "SEAT_PROJECTION_HOST")
        return cls(
            infra=infra,
            host=host,
            port=e.integer("SEAT_PROJECTION_PORT", 8003, minimum=0, maximum=65535),
            datadir=Path(e.text("SEAT_PROJECTION_DATA_DIR", ".run/faust/seat_projection")),
        )
