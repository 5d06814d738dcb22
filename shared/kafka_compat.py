"""Pace aiokafka's fetch loop for noida-db, which answers an empty fetch at once.

Kafka holds a fetch until data arrives or `fetch.max.wait.ms` passes; noida-db answers at once
with nothing, so every idle consumer spins (measured: 56 % of a core for one idle aiokafka
consumer, ~18 % per idle Faust worker). `pace_fetches` makes each fetch round trip to a broker
last at least `min_interval_s`: an idle consumer then sleeps, and a busy one loses at most that
much latency per hop while each fetch still returns up to a full batch. Against real Kafka it
is not installed (`InfraSettings.fetch_pacing_ms` is 0 there): Kafka holds empty fetches itself.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiokafka.consumer.fetcher import Fetcher

_original = Fetcher._proc_fetch_request
_state = {"min_interval_s": 0.0}


async def _paced(self: Any, assignment: Any, node_id: Any, request: Any) -> Any:
    started = time.monotonic()
    result = await _original(self, assignment, node_id, request)
    left = _state["min_interval_s"] - (time.monotonic() - started)
    if left > 0:
        try:
            await asyncio.sleep(left)
        except asyncio.CancelledError:
            return False  # closing or unassigned: what the original does when cancelled
    return result


def pace_fetches(min_interval_ms: float) -> None:
    """Install the pacing for every consumer in this process; 0 (every broker but noida-db)
    leaves aiokafka untouched."""
    _state["min_interval_s"] = min_interval_ms / 1000
    if min_interval_ms > 0:
        Fetcher._proc_fetch_request = _paced


def batch_fetches(consumer: Any, *, min_bytes: int, max_wait_ms: int) -> None:
    """Set a not yet started aiokafka consumer's fetch.min.bytes and fetch.max.wait.ms, for
    consumers built by code that does not pass them (Faust's). aiokafka reads both when
    `start()` builds its fetcher."""
    if not hasattr(consumer, "_fetch_min_bytes") or not hasattr(consumer, "_fetch_max_wait_ms"):
        raise RuntimeError("aiokafka changed: shared/kafka_compat.batch_fetches needs a look")
    consumer._fetch_min_bytes = min_bytes
    consumer._fetch_max_wait_ms = max_wait_ms
