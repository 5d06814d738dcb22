"""The concert catalog: folded from the compacted `concert.created` log, its source of truth.

Every reservation worker reads the whole topic (every partition, from the start, no consumer
group) into memory and keeps following it; Redis only holds a cache of it and the creation lock
(`ReservationStore`), so a Redis that lost its data is rebuilt from here and never changes a
concert's seats or price.

Creation is idempotent against the log: creating a concert again with the same seats and price
answers the existing concert; different ones are refused (409). The pure rule is `creation`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum

from aiokafka import AIOKafkaConsumer

from shared.concerts import CACHE_REFRESH_S
from shared.errors import Unavailable
from shared.events import ConcertCreated, UnknownMessage, decode
from shared.topics import partitions_of

log = logging.getLogger(__name__)
TOPIC = "concert.created"


@dataclass(frozen=True, slots=True)
class Concert:
    concert_id: str
    seats: int
    price: int


class Creation(Enum):
    NEW = "new"  # publish it
    SAME = "same"  # already created with these seats and price: answer it again
    CONFLICT = "conflict"  # exists with other seats or price: refuse


def creation(existing: Concert | None, wanted: Concert) -> Creation:
    if existing is None:
        return Creation.NEW
    return Creation.SAME if existing == wanted else Creation.CONFLICT


def fold(concerts: dict[str, Concert], event: ConcertCreated) -> None:
    """The first creation of a concert in the log is the concert; later records change nothing
    (creation refuses conflicts before publishing, so a later record only repeats it)."""
    concerts.setdefault(event.concert_id, Concert(event.concert_id, event.seats, event.price))


class Catalog:
    """Follows `concert.created` into memory; `caught_up` once it has read what existed at start."""

    def __init__(self, brokers: str) -> None:
        self.brokers = brokers
        self.concerts: dict[str, Concert] = {}
        self.caught_up = asyncio.Event()
        self.changed = asyncio.Event()

    def get(self, concert_id: str) -> Concert | None:
        return self.concerts.get(concert_id)

    async def run(self) -> None:
        """Read the log for as long as the worker runs, reconnecting after broker trouble."""
        while True:
            try:
                await self._follow()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # broker unreachable or restarting: start over shortly
                log.warning("concert catalog: %r; reading the log again in 1 s", exc)
                await asyncio.sleep(1)

    async def _follow(self) -> None:
        partitions = await partitions_of(self.brokers, TOPIC)
        if not partitions:
            raise RuntimeError(f"topic {TOPIC} has no partitions yet")
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.brokers, enable_auto_commit=False, auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            end = await consumer.end_offsets(partitions)
            while True:
                batches = await consumer.getmany(timeout_ms=1000)
                for records in batches.values():
                    for record in records:
                        self._apply(record.value or b"")
                if batches:
                    self.changed.set()
                    self.changed = asyncio.Event()
                if not self.caught_up.is_set() and all(
                    [await consumer.position(tp) >= end[tp] for tp in partitions]
                ):
                    self.caught_up.set()
        finally:
            with contextlib.suppress(Exception):
                await consumer.stop()

    def _apply(self, value: bytes) -> None:
        try:
            event = decode(value)
        except UnknownMessage as exc:
            log.error("concert catalog: skipping an unreadable record: %s", exc)
            return
        if isinstance(event, ConcertCreated):
            fold(self.concerts, event)

    async def mirror(self, write: Callable[[list[Concert]], Awaitable[None]]) -> None:
        """Keep Redis's catalog cache (shared.concerts) equal to the log, for as long as the
        worker runs: the waiting room admits entries only for concerts in it. Written once caught
        up, whenever the catalog changes, and every CACHE_REFRESH_S (a Redis that lost data)."""
        await self.caught_up.wait()
        while True:
            changed = self.changed
            with contextlib.suppress(Unavailable):  # Redis away: the next round writes it all
                await write(list(self.concerts.values()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), CACHE_REFRESH_S)

    async def until_known(self, concert_id: str, within_s: float) -> Concert | None:
        """The concert once the log holds it (after publishing a creation), None at the deadline."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within_s):
                while (concert := self.get(concert_id)) is None:
                    await self.changed.wait()
                return concert
        return self.get(concert_id)
