"""The seat agent's owned parts around `core.step`, without a broker or Redis:
pytest tests/unit/test_seat_shell.py

The outbox gets a recording store and sender in place of Redis and Kafka (pure unit tests);
what the agent does with real servers is covered by tests/integration/test_pipeline.py.
"""

from __future__ import annotations

import asyncio
import heapq
import random
import time
from typing import Any

import pytest

from services.reservation.context import Pressure, Waiters
from services.reservation.core import HELD, Output, Reservation
from services.reservation.outbox import Handed, Outbox
from services.reservation.sweeper import HoldSweeper


class Recording:
    """Stands in for the store and the producer: it records calls in order."""

    def __init__(self, fail_release: bool = False) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.headers: list[list[tuple[str, bytes]]] = []
        self.fail_release = fail_release

    async def release_holds(self, holds: list[tuple[str, str, str]]) -> None:
        self.calls.append(("release", holds))
        if self.fail_release:
            raise ConnectionError("redis down")

    async def send(self, o: Output, headers: list[tuple[str, bytes]]) -> None:
        self.calls.append(("send", o.value))
        self.headers.append(headers)


def held(rid: str) -> Reservation:
    return Reservation(rid, "c1", "7", "u1", HELD)


async def crash(exc: BaseException) -> None:
    raise AssertionError(f"the outbox crashed: {exc!r}")


async def drained(outbox: Outbox, recording: Recording, acks: list[str], n: int) -> None:
    outbox.start()
    for _ in range(200):
        if len(acks) >= n:
            break
        await asyncio.sleep(0.005)
    await outbox.stop()


class TestTheOutbox:
    async def test_publishes_and_acks_only_once_the_record_is_acknowledged(self) -> None:
        rec = Recording()
        outbox = Outbox(rec.send, rec, Waiters(), crash)  # type: ignore[arg-type]
        write: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        acks: list[str] = []
        await outbox.put(
            Handed(write, (Output("t", b"k", b"v1"),), "r1", None, lambda: acks.append("r1"))
        )
        outbox.start()
        await asyncio.sleep(0.05)
        assert rec.calls == [] and acks == []  # the write is not durable yet
        write.set_result(None)
        await drained(outbox, rec, acks, 1)
        assert rec.calls == [("send", b"v1")] and acks == ["r1"]

    async def test_frees_hold_slots_before_publishing_the_outcome(self) -> None:
        rec = Recording()
        outbox = Outbox(rec.send, rec, Waiters(), crash)  # type: ignore[arg-type]
        acks: list[str] = []
        for rid in ("r1", "r2"):
            outputs = (Output("t", b"k", rid.encode()),)
            await outbox.put(
                Handed(None, outputs, rid, held(rid), lambda rid=rid: acks.append(rid))
            )
        await drained(outbox, rec, acks, 2)
        assert rec.calls == [
            ("release", [("c1", "u1", "r1"), ("c1", "u1", "r2")]),  # one round trip for both
            ("send", b"r1"),
            ("send", b"r2"),
        ]
        assert acks == ["r1", "r2"]

    async def test_every_output_carries_the_request_id_of_its_cause(self) -> None:
        rec = Recording()
        outbox = Outbox(rec.send, rec, Waiters(), crash)  # type: ignore[arg-type]
        acks: list[str] = []
        outputs = (Output("t", b"k", b"held"), Output("t", b"k", b"pay"))
        cause = (("request-id", b"rid-1"),)
        await outbox.put(Handed(None, outputs, "r1", None, lambda: acks.append("r1"), cause))
        await outbox.put(
            Handed(None, (Output("t", b"k", b"expired"),), "r2", None, lambda: acks.append("r2"))
        )
        await drained(outbox, rec, acks, 2)
        assert rec.headers == [[("request-id", b"rid-1")]] * 2 + [[]]

    async def test_goes_on_when_redis_cannot_free_the_slots(self) -> None:
        rec = Recording(fail_release=True)
        outbox = Outbox(rec.send, rec, Waiters(), crash)  # type: ignore[arg-type]
        acks: list[str] = []
        await outbox.put(
            Handed(None, (Output("t", b"k", b"v"),), "r1", held("r1"), lambda: acks.append("r1"))
        )
        await drained(outbox, rec, acks, 1)
        assert acks == ["r1"] and ("send", b"v") in rec.calls


class TestTheWaiters:
    async def test_a_waiter_is_woken_by_its_reservation(self) -> None:
        waiters = Waiters()
        waiting = asyncio.create_task(waiters.wait("r1", 5.0))
        await asyncio.sleep(0)
        started = time.monotonic()
        waiters.notify("r1")
        await waiting
        assert time.monotonic() - started < 1.0

    async def test_a_waiter_that_times_out_leaves_nothing_behind(self) -> None:
        waiters = Waiters()
        await asyncio.gather(*(waiters.wait(f"r{n}", 0.01) for n in range(50)))
        assert len(waiters) == 0 and waiters._by_id == {}

    async def test_draining_wakes_every_waiter_at_once(self) -> None:
        waiters = Waiters()
        waiting = [asyncio.create_task(waiters.wait(f"r{n}", 5.0)) for n in range(3)]
        await asyncio.sleep(0)
        started = time.monotonic()
        waiters.drain()
        await asyncio.gather(*waiting)
        assert time.monotonic() - started < 1.0 and waiters.draining and len(waiters) == 0


class TestTheHoldSweeper:
    def test_hands_out_each_due_hold_once_in_deadline_order(self) -> None:
        sweeper = HoldSweeper(stale=False)
        sweeper.deadlines = [(30, "c|3", "r3"), (10, "c|1", "r1"), (20, "c|2", "r2")]
        heapq.heapify(sweeper.deadlines)
        assert sweeper.due(20) == [("c|1", "r1"), ("c|2", "r2")]
        assert sweeper.due(20) == []
        assert sweeper.due(30) == [("c|3", "r3")]


class TestPressure:
    def test_takes_everything_while_decisions_keep_up(self) -> None:
        p = Pressure(rng=random.Random(1))
        p.observe(time.time() - 0.1)
        assert all(p.refusal(500, 100) is None for _ in range(200))

    def test_refuses_a_growing_share_past_half_the_bound_and_all_at_it(self) -> None:
        p = Pressure(weight=1.0, rng=random.Random(1))
        p.observe(time.time() - 0.375)  # three quarters of the bound
        refused = sum(p.refusal(500, 100) is not None for _ in range(1000))
        assert 350 < refused < 650
        p.observe(time.time() - 0.6)
        assert all(p.refusal(500, 100) for _ in range(100))

    def test_counts_its_refusals_for_the_health_report_and_starts_over_once_taken(self) -> None:
        p = Pressure(weight=1.0, rng=random.Random(1))
        p.observe(time.time() - 0.6)  # past the bound: every request is refused
        for _ in range(3):
            assert p.refusal(500, 100)
        assert p.take_refused() == 3
        assert p.take_refused() == 0

    def test_forgets_a_delay_once_nothing_has_been_decided_for_a_while(self) -> None:
        p = Pressure(weight=1.0, fresh_s=0.05)
        p.observe(time.time() - 5)
        assert p.refusal(500, 100) is not None
        time.sleep(0.06)
        assert p.delay_ms == 0 and p.refusal(500, 100) is None

    @pytest.mark.parametrize("bound", [1, 3])
    def test_refuses_past_the_in_flight_bound(self, bound: int) -> None:
        p = Pressure()
        with p.request():
            ctxs = [p.request() for _ in range(bound - 1)]
            for c in ctxs:
                c.__enter__()
            assert p.refusal(0, bound) is not None
            for c in ctxs:
                c.__exit__(None, None, None)
        assert p.in_flight == 0 and p.refusal(0, bound) is None
