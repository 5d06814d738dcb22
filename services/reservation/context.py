"""The seat agent's shell and what the agent, the hold sweeper and the HTTP handlers share.

The decisions are the pure `core.step`; around it, four owned parts, each with one job:

- `SeatRecords`: the table, one `SeatRecord` per seat (orjson bytes); each decision is one
  changelog record, so a crash keeps or loses the seat's and the reservation's halves together.
- `Outbox`: publishes a decision's outputs once its record is durable, acks the event after
  that, wakes long-polls and frees the user's hold slot. It batches what has queued up.
- `HoldSweeper`: an in-memory deadline heap, rebuilt from the table only after a recovery.
- `Waiters`: the long-poll registry.

`Reservations.handle` is the agent's one step: read the record, `step`, write, hand to the outbox.
Nothing is awaited on Redis inside it.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import random
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator, Mapping
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
from services.reservation.settings import ReservationSettings
from services.reservation.store import ReservationStore
from shared.events import ExpireHold, Message, SeatHeld, SeatMessage, SeatReleased, utc_iso
from shared.logs import kafka_headers
from shared.stream_metrics import StreamMetrics
from shared.topics import key_of
from shared.waiting_room import WaitingRoom

log = logging.getLogger(__name__)
Ack = Callable[[], Any]


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


@dataclass
class HoldSweeper:
    """Sends `ExpireHold` for holds past their deadline. The heap learns each hold as it is
    decided; after a recovery (the table changed under it) it is rebuilt from the table once."""

    deadlines: list[tuple[int, str, str]] = field(default_factory=list)  # (ms, seat, hold id)
    stale: bool = True

    def track(self, e: SeatHeld) -> None:
        heapq.heappush(self.deadlines, (e.hold_expires_at_ms, e.seat_key, e.reservation_id))

    def rebuild(self, seats: SeatRecords) -> None:
        self.deadlines = list(seats.holds())
        heapq.heapify(self.deadlines)
        self.stale = False

    def due(self, now: int) -> list[tuple[str, str]]:
        """(seat key, hold id) of holds past their deadline, removed from the heap."""
        due = []
        while self.deadlines and self.deadlines[0][0] <= now:
            _, key, hold_id = heapq.heappop(self.deadlines)
            due.append((key, hold_id))
        return due

    async def sweep(
        self, seats: SeatRecords, publish: Callable[[str, Message], Awaitable[Any]]
    ) -> int:
        if self.stale:
            self.rebuild(seats)
        sent = 0
        now = now_ms()
        for key, hold_id in self.due(now):
            record = seats.get(key)
            r = record.reservations.get(hold_id)
            if not record.seat.held_by(hold_id) or r is None:
                continue
            await publish(
                "seat.hold_expiry",
                ExpireHold(
                    event_id=f"expire:{hold_id}",
                    occurred_at=utc_iso(now),
                    reservation_id=hold_id,
                    concert_id=r.concert_id,
                    seat_id=r.seat_id,
                    user_id=r.user_id,
                ),
            )
            sent += 1
        return sent


@dataclass(frozen=True, slots=True)
class Handed:
    """One decision handed to the outbox."""

    write: Any  # the record's acknowledgement (a future), None when nothing was written
    outputs: tuple[Output, ...]
    reservation_id: str | None
    closed: Reservation | None
    done: Ack
    headers: tuple[tuple[str, bytes], ...] = ()  # the cause's request id, on every output


class Outbox:
    """Publishes each decision's outputs once its seat record is durable, in decision order.

    The seat agent hands a decision over and goes on at once; one task takes everything queued,
    waits for those writes' acknowledgements, frees the closed reservations' hold slots in Redis
    (best effort, one round trip: the slots also lapse by themselves), publishes the outputs,
    wakes long-polls and acks the events (so their offsets may be committed). The queue is
    bounded: a slow broker slows the agent down instead of growing memory."""

    def __init__(
        self,
        send: Callable[[Output, list[tuple[str, bytes]]], Awaitable[Any]],
        store: ReservationStore,
        waiters: Waiters,
        crash: Callable[[BaseException], Awaitable[Any]],
        size: int = 10_000,
        batch: int = 500,
    ) -> None:
        self.send = send
        self.store = store
        self.waiters = waiters
        self.crash = crash
        self.batch = batch
        self.queue: asyncio.Queue[Handed] = asyncio.Queue(size)
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self.run(), name="seat outbox")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
            self.task = None

    async def put(self, handed: Handed) -> None:
        await self.queue.put(handed)

    def _take(self) -> list[Handed]:
        taken: list[Handed] = []
        while len(taken) < self.batch and not self.queue.empty():
            taken.append(self.queue.get_nowait())
        return taken

    async def run(self) -> None:
        try:
            while True:
                batch = [await self.queue.get(), *self._take()]
                for h in batch:
                    if h.write is not None:
                        await h.write
                # Slots first: a buyer's token is completed on `seat.confirmed` only once no
                # hold of theirs is open, so the slot must be free before that is published.
                await self._release([h.closed for h in batch if h.closed is not None])
                for h in batch:
                    for o in h.outputs:
                        await self.send(o, list(h.headers))
                for h in batch:
                    if h.reservation_id is not None:
                        self.waiters.notify(h.reservation_id)
                    h.done()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a decision that cannot be made durable: stop the worker
            log.critical("seat records or outputs cannot be sent (%r); stopping", exc)
            await self.crash(exc)

    async def _release(self, closed: list[Reservation]) -> None:
        """Best effort, one round trip: a slot left behind lapses at its deadline by itself."""
        if not closed:
            return
        try:
            await self.store.release_holds(
                [(r.concert_id, r.user_id, r.reservation_id) for r in closed]
            )
        except Exception:  # Redis down must not stop the outbox
            log.warning(
                "could not free %d hold slots in Redis; they lapse by themselves", len(closed)
            )


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
        """Why a new request should be refused now, or None to take it."""
        if self.in_flight >= max_in_flight:
            return f"{self.in_flight} reservation requests in flight"
        delay = self.delay_ms
        if delay_bound_ms and delay > delay_bound_ms / 2:
            share = min(1.0, (delay - delay_bound_ms / 2) / (delay_bound_ms / 2))
            if self.rng.random() < share:
                return f"seat decisions lag {delay:.0f} ms behind"
        return None

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
