"""The seat agent's outbox: a decision's outputs go out once its seat record is durable."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from services.reservation.core import Output, Reservation
from services.reservation.store import ReservationStore

if TYPE_CHECKING:
    from services.reservation.context import Waiters

log = logging.getLogger(__name__)
Ack = Callable[[], Any]


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
