"""The seat agent under Faust's test_context(), no broker: pytest tests/unit/test_seat_agent.py

The app is the real one from `create_app`; Redis and Kafka addresses point at closed ports. The
outbox's only Redis call (freeing the user's hold slot) is best effort and just logs a warning.
There is no broker: the seat record's acknowledgement is not waited for, and what the agent
publishes is recorded (topic, key, message) instead of sent, where these tests read it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from services.reservation.app import create_app
from services.reservation.context import Reservations, SeatRecords
from services.reservation.core import (
    CONFIRMED,
    HELD,
    SOLD,
    Output,
    Seat,
    SeatRecord,
    record_to_bytes,
)
from services.reservation.ids import ReservationIds, payment_id_for
from services.reservation.settings import ReservationSettings
from shared.events import (
    Message,
    PaymentCompleted,
    ReservationRequested,
    SeatConfirmed,
    SeatHeld,
    decode,
    utc_iso,
)
from shared.settings import Env

SECRET = "test-secret-" + "x" * 32
HOLD_S = 120
CONCERT, SEAT_ID, USER = "c1", "A-12", "u1"
SEAT_KEY = f"{CONCERT}|{SEAT_ID}"


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    settings = ReservationSettings.from_env(
        Env(
            {
                "APP_ENV": "test",
                "ADMIN_TOKEN": "admin-token-0123456789",
                "QUEUE_TOKEN_SECRET": SECRET,
                "REDIS_URL": "redis://127.0.0.1:1/0",
                "KAFKA_BROKERS": "127.0.0.1:1",
                "RESERVATION_DATA_DIR": str(tmp_path / "reservation"),
                "SEAT_HOLD_S": str(HOLD_S),
            }
        )
    )
    app = create_app(settings)
    sent: list[tuple[str, bytes, Message]] = []

    async def record(
        self: Reservations, o: Output, headers: list[tuple[str, bytes]] | None = None
    ) -> None:
        sent.append((o.topic, o.key, decode(o.value)))

    monkeypatch.setattr(SeatRecords, "put", no_ack)
    monkeypatch.setattr(Reservations, "send", record)
    app.sent_by_test = sent
    yield app
    # Writing a table made Faust build its consumer, whose thread got an event loop of its own;
    # a started worker would close it on stop, this never-started one has to be told.
    consumer: Any = app._consumer
    if consumer is not None:
        consumer._thread.thread_loop.close()


def no_ack(self: SeatRecords, key: str, record: SeatRecord) -> None:
    """Write the record; there is no broker to acknowledge it."""
    self.table[key] = record_to_bytes(record)


def stored(app: Any) -> SeatRecord:
    return SeatRecords(app.tables["seat_records"]).get(SEAT_KEY)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def reservation_id() -> str:
    return ReservationIds(SECRET.encode()).new(CONCERT, SEAT_ID, USER)


def request(rid: str) -> ReservationRequested:
    return ReservationRequested(
        event_id=f"req:{rid}",
        occurred_at=utc_iso(now_ms()),
        reservation_id=rid,
        concert_id=CONCERT,
        seat_id=SEAT_ID,
        user_id=USER,
        queue_ticket=42,
        price=120,
    )


def completed(rid: str) -> PaymentCompleted:
    return PaymentCompleted(
        event_id=f"pay:{rid}:0",
        occurred_at=utc_iso(now_ms()),
        reservation_id=rid,
        concert_id=CONCERT,
        seat_id=SEAT_ID,
        user_id=USER,
        payment_id=payment_id_for(rid),
        amount=120,
    )


def published(app: Any) -> list[tuple[str, bytes, Message]]:
    """(topic, key, message) of every send the agent made, in order."""
    return list(app.sent_by_test)


async def until(done: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """The agent handles a message after `put` returns: poll with a deadline."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not done():
        assert asyncio.get_running_loop().time() < deadline, "the agent did not get there"
        await asyncio.sleep(0.01)


async def send_all(app: Any, *messages: Message, expect_published: int) -> None:
    async with app.agents["seat_agent"].test_context() as agent:
        for m in messages:
            await agent.put(key=SEAT_KEY.encode(), value=m.to_bytes())
        await until(lambda: len(published(app)) >= expect_published)


class TestARequestItsDuplicateAndThePayment:
    async def test_leave_the_seat_sold_to_the_reservation(self, app: Any) -> None:
        rid = reservation_id()
        await send_all(app, request(rid), request(rid), completed(rid), expect_published=2)
        # version 2: the hold and the sale; the duplicate request changed nothing
        assert stored(app).seat == Seat(SOLD, rid, 0, 2)

    async def test_leave_the_reservation_confirmed_with_its_payment(self, app: Any) -> None:
        rid = reservation_id()
        started = now_ms()
        await send_all(app, request(rid), request(rid), completed(rid), expect_published=2)
        r = stored(app).reservations[rid]
        assert (r.status, r.payment_id, r.reason) == (CONFIRMED, payment_id_for(rid), None)
        assert (r.queue_ticket, r.price, r.user_id) == (42, 120, USER)
        # the hold was taken while the test ran, for the configured hold time
        assert started + HOLD_S * 1000 <= r.hold_expires_at_ms <= now_ms() + HOLD_S * 1000

    async def test_publish_the_hold_again_for_the_duplicate_and_the_sale(self, app: Any) -> None:
        # A redelivered message publishes its decision's outputs again, the same events: after
        # a crash they may never have left. Consumers de-duplicate by event id and version.
        rid = reservation_id()
        await send_all(app, request(rid), request(rid), completed(rid), expect_published=3)
        sent = published(app)
        assert [(topic, key, type(m)) for topic, key, m in sent] == [
            ("seat.held", CONCERT.encode(), SeatHeld),
            ("seat.held", CONCERT.encode(), SeatHeld),
            ("seat.confirmed", CONCERT.encode(), SeatConfirmed),
        ]
        assert sent[0][2] == sent[1][2]
        assert [m.event_id for _, _, m in sent] == [f"req:{rid}:0"] * 2 + [f"pay:{rid}:0:0"]


class TestAMessageTheCatalogCannotRead:
    async def test_is_skipped_and_the_next_one_handled(self, app: Any) -> None:
        rid = reservation_id()
        async with app.agents["seat_agent"].test_context() as agent:
            await agent.put(key=SEAT_KEY.encode(), value=b'{"type": "SeatSold", "v": 1}')
            await agent.put(key=SEAT_KEY.encode(), value=request(rid).to_bytes())
            await until(lambda: len(published(app)) >= 1)
        record = stored(app)
        assert record.reservations[rid].status == HELD
        assert record.seat.version == 1
