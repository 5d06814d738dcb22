"""Fixtures of the integration tests (the servers themselves are session fixtures of
tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from tests.support.pipeline import Pipeline, pipeline


@pytest_asyncio.fixture(loop_scope="session")
async def default_pipeline(
    tmp_path: Path, redis_url: str, kafka_brokers: str
) -> AsyncIterator[Pipeline]:
    """Every service of the pipeline, one process each, with the default settings."""
    async with pipeline(tmp_path, redis_url, kafka_brokers) as p:
        yield p
