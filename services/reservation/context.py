"""The seat agent's shell and what the agent, the hold sweeper and the HTTP handlers share.

The decisions are the pure `core.step`; around it, four owned parts, each with one job:

- `SeatRecords`: the table, one `SeatRecord` per seat (orjson bytes); each decision is one
  changelog record, so a crash keeps or loses the seat's and the reservation's halves together.
- `Outbox` (outbox.py): publishes a decision's outputs once its record is durable, acks the
  event after that, wakes long-polls and frees the user's hold slot. It batches what has queued.
- `HoldSweeper` (sweeper.py): an in-memory deadline heap, rebuilt from the table only after a
  recovery.
- `Waiters`: the long-poll registry.

`Reservations.handle` is the agent's one step: read the record, `step`, write, hand to the outbox.
Nothing is awaited on Redis inside it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import faust
from prometheus_client import CollectorRegistry, Gauge

from services.reservation.catalog import Catalog
from services.reservation.core import (
    HELD,
    Output,
    Reservation,
    SeatRecord,
    prune,
    record_from_bytes,
    record_to_bytes,
    step,
)
from services.reservation.ids import ReservationIds
from services.reservation.outbox import Ack, Handed, Outbox
from services.reservation.settings import ReservationSettings
from services.reservation.store import ReservationStore
from services.reservation.sweeper import HoldSweeper
from shared.events import Message, SeatHeld, SeatMessage, SeatReleased
from shared.logs import kafka_headers
from shared.stream_metrics import StreamMetrics
from shared.topics import key_of
from shared.waiting_room import WaitingRoom

log = logging.getLogger(__name__)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def split_key(key: str) -> tuple[str, str]:
    concert_id, _, seat_id = key.partition("|")
    return concert_id, seat_id


class SeatRecords:
    """The seat table (`faust.Table` of bytes), read and written as `SeatRecord`s."""

    def __init__(self, table: Any) -> None:
        self.table = table

    def get(self, key: str) -> SeatRecord:
        return record_from_bytes(self.table.get(key), *split_key(key))

    def put(self, key: str, record: SeatRecord) -> Any:
        """Write; returns the future of the broker's acknowledgement of the changelog record."""
        self.table[key] = record_to_bytes(record)
        return self.table.last_write

    def reservation(self, key: str, reservation_id: str) -> Reservation | None:
        return self.get(key).reservations.get(reservation_id)

    def holds(self) -> Iterator[tuple[int, str, str]]:
        """(deadline ms, seat key, hold id) of every held seat in the table."""
        for key in list(self.table.keys()):
            seat = self.get(key).seat
            if seat.status == HELD:
                yield seat.hold_expires_at_ms, key, seat.reservation_id


class Waiters:
    """Long-polling readers of a reservation, woken when a decision about it is published."""

    def __init__(self) -> None:
        self._by_id: dict[str, set[asyncio.Future[None]]] = defaultdict(set)
        self.draining = False

    def drain(self) -> None:
        """Shutting down: wake every waiter, and wait no more from now on."""
        self.draining = True
        for reservation_id in list(self._by_id):
            self.notify(reservation_id)

    async def wait(self, reservation_id: str, timeout_s: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiting = self._by_id[reservation_id]
        waiting.add(fut)
        try:
            await asyncio.wait_for(fut, timeout_s)
        except TimeoutError:
            pass
        finally:
            waiting.discard(fut)
            if not waiting:
                self._by_id.pop(reservation_id, None)

    def notify(self, reservation_id: str) -> None:
        for fut in self._by_id.pop(reservation_id, ()):
            if not fut.done():
                fut.set_result(None)

    def __len__(self) -> int:
        return sum(len(w) for w in self._by_id.values())


class Pressure:
    """How saturated this worker is, for load shedding: how long messages wait before the seat
    agent decides them (an EWMA of the time from a record to its decision: requests, payment
    results and expiries alike, since a flow waits on each), and how many reservation requests
    the HTTP API is handling. Waiting longer in a
    backlog helps no fan: above either bound, new requests are refused at once.

    The delay is only as fresh as the last decision: once nothing has been decided for `fresh_s`
    (requests are being refused, or none come), it reads 0, so admission resumes and measures
    again instead of refusing for good. Refusal is gradual: none at half the bound, then a share
    growing to all at the bound, so the rate admitted settles near capacity instead of
    switching between everything and nothing."""

    def __init__(
        self, weight: float = 0.05, fresh_s: float = 1.0, rng: random.Random | None = None
    ) -> None:
        self.weight = weight
        self.fresh_s = fresh_s
        self.rng = rng or random.Random()
        self._delay_ms = 0.0
        self._seen_at = 0.0
        self.in_flight = 0
        self.refused = 0  # since the last health report (take_refused)

    def observe(self, produced_at_s: float | None) -> None:
        if produced_at_s:
            now = time.time()
            delay = max(0.0, now - produced_at_s) * 1000
            if now - self._seen_at >= self.fresh_s:  # the old average says nothing any more
                self._delay_ms = delay
            else:
                self._delay_ms += self.weight * (delay - self._delay_ms)
            self._seen_at = now

    @property
    def delay_ms(self) -> float:
        return self._delay_ms if time.time() - self._seen_at < self.fresh_s else 0.0

    def refusal(self, delay_bound_ms: float, max_in_flight: int) -> str | None:
        """Why a new request should be refused now (counted), or None to take it."""
        reason = self._refusal(delay_bound_ms, max_in_flight)
        if reason:
            self.refused += 1
        return reason

    def _refusal(self, delay_bound_ms: float, max_in_flight: int) -> str | None:
        if self.in_flight >= max_in_flight:
            return f"{self.in_flight} reservation requests in flight"
        delay = self.delay_ms
        if delay_bound_ms and delay > delay_bound_ms / 2:
            share = min(1.0, (delay - delay_bound_ms / 2) / (delay_bound_ms / 2))
            if self.rng.random() < share:
                return f"seat decisions lag {delay:.0f} ms behind"
        return None

    def take_refused(self) -> int:
        """Refusals since the last call (the health report's)."""
        refused, self.refused = self.refused, 0
        return refused

    @contextmanager
    def request(self) -> Iterator[None]:
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1


@dataclass
class Reservations:
    """Everything the agent, the sweeper and the HTTP handlers share, built once per worker."""

    settings: ReservationSettings
    app: faust.App
    store: ReservationStore
    catalog: Catalog
    room: WaitingRoom
    ids: ReservationIds
    metrics: StreamMetrics
    registry: CollectorRegistry
    topics: dict[str, Any]
    seats: SeatRecords
    committed: Callable[[], Mapping[str, int]]  # "topic:partition" -> committed offset
    waiters: Waiters = field(default_factory=Waiters)
    sweeper: HoldSweeper = field(default_factory=HoldSweeper)
    pressure: Pressure = field(default_factory=Pressure)
    background: set[asyncio.Future[Any]] = field(default_factory=set)  # late undos in flight
    outbox: Outbox = field(init=False)

    def __post_init__(self) -> None:
        self.outbox = Outbox(lambda o, h: self.send(o, h), self.store, self.waiters, self.app.crash)
        Gauge(
            "reservation_decision_delay_seconds",
            "Recent time from a seat message's record to its decision (EWMA)",
            registry=self.registry,
        ).set_function(lambda: self.pressure.delay_ms / 1000)
        Gauge(
            "reservation_requests_in_flight",
            "Reservation requests being checked and published (not waiting for a decision)",
            registry=self.registry,
        ).set_function(lambda: self.pressure.in_flight)

    async def publish(self, topic: str, m: Message) -> Any:
        """Send and return the future of the broker's acknowledgement; the request being served
        rides along as the Kafka header `request-id`."""
        return await self.send(Output(topic, key_of(topic, m), m.to_bytes()), kafka_headers())

    async def send(self, o: Output, headers: list[tuple[str, bytes]] | None = None) -> Any:
        fut = await self.topics[o.topic].send(key=o.key, value=o.value, headers=headers or None)
        self.metrics.produced.labels(o.topic).inc()
        return fut

    async def handle(
        self, m: Message, done: Ack = lambda: None, *, source: str = "", offset: int = -1
    ) -> None:
        """One message through `core.step`; the record is written and the outputs handed to
        the outbox, which publishes them once the record is acknowledged, then calls `done`
        (the event's ack). A crash therefore loses a decision and its outputs together, and
        never leaves outputs of a decision a restarted worker does not know. The outputs carry
        the request id of `m` (shared/logs.py)."""
        headers = tuple(kafka_headers())
        if not isinstance(m, SeatMessage):
            await self.outbox.put(Handed(None, (), None, None, done, headers))
            return
        key = m.seat_key
        record = prune(self.seats.get(key), self.committed())
        stepped = step(
            record,
            m,
            now_ms(),
            hold_ms=int(self.settings.seat_hold_s * 1000),
            source=source,
            offset=offset,
        )
        if not stepped.decided:
            self.metrics.decisions.labels(f"{type(m).__name__}:ignored").inc()
            await self.outbox.put(Handed(None, stepped.outputs, None, None, done, headers))
            return
        for e in stepped.decided:
            # A release says why (hold_expired / payment_failed): the hold-expiry alert's input.
            why = f":{e.reason}" if isinstance(e, SeatReleased) else ""
            self.metrics.decisions.labels(type(e).__name__ + why).inc()
            if isinstance(e, SeatHeld):
                self.sweeper.track(e)
        write = self.seats.put(key, stepped.record)
        await self.outbox.put(
            Handed(write, stepped.outputs, m.reservation_id, stepped.closed, done, headers)
        )
