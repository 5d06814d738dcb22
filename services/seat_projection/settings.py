"""Seat-projection settings, from the environment (documented in the README)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from shared.settings import Env, InfraSettings, faust_datadir, listener


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
        host, port = listener(e, infra.env, "SEAT_PROJECTION", 8003)
        return cls(
            infra=infra,
            host=host,
            port=port,
            datadir=faust_datadir(e, "SEAT_PROJECTION", "seat_projection"),
        )
