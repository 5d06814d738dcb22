"""The invariant checker every failure case ends with. It reads the system from outside, as a
client and a downstream consumer would (the HTTP APIs and the topics), and holds it to what the
clients were told (`fans.Ledger`):

1. no seat is sold twice (the `seat.confirmed` log, and the reservations' statuses);
2. every completed payment (`payment.completed`) ends confirmed or refunded;
3. every reservation answered 202 reaches a terminal status within a bound;
4. the seat map equals the seat agent's decisions;
5. no queue token acknowledged to a fan is silently gone: it answers, or it ended by a rule
   (expired, dropped, completed). A token the queue no longer knows at all is listed as lost;
6. retention never deleted a command before it was processed: on every topic with a time limit
   (commands, timers), each consumer group's committed offset is at or past the log's start.

A check holds when its list of violations is empty.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from perf.chaos.fans import TERMINAL, Ledger
from shared.events import PaymentCompleted, SeatConfirmed
from shared.topics import CATALOG, partitions_of, topic_log

TOKENS_CHECK = "no acknowledged queue token is silently gone"
ENDED_BY_A_RULE = frozenset({"expired", "dropped", "completed", "superseded"})


@dataclass
class Verdict:
    violations: dict[str, list[str]] = field(default_factory=dict)
    confirmed: int = 0
    terminal_after_s: float = 0.0  # how long after the load the last reservation was terminal
    tokens_lost: list[str] = field(default_factory=list)  # users whose token is gone
    tokens_lost_by_reason: dict[str, int] = field(default_factory=dict)  # the queue's answer

    @property
    def holds(self) -> bool:
        return not any(self.violations.values())


async def check(
    http: aiohttp.ClientSession, urls: dict[str, str], brokers: str, ledger: Ledger, bound_s: float
) -> Verdict:
    verdict = Verdict()
    loop = asyncio.get_running_loop()
    started = loop.time()
    status_of = await _terminal_statuses(http, urls["reservation"], ledger, bound_s)
    verdict.terminal_after_s = round(loop.time() - started, 1)
    verdict.violations["every 202 reaches a terminal status"] = [
        f"{rid} still {s} after {bound_s:g} s" for rid, s in status_of.items() if s not in TERMINAL
    ]
    confirmed = {rid for rid, s in status_of.items() if s == "confirmed"}
    verdict.confirmed = len(confirmed)

    seats_sold: dict[str, set[str]] = {}
    for rid in confirmed:
        seats_sold.setdefault(ledger.accepted[rid].seat, set()).add(rid)
    facts = [
        f
        for f in await topic_log(brokers, "seat.confirmed")
        if isinstance(f, SeatConfirmed) and f.concert_id == ledger.concert
    ]
    for f in facts:
        seats_sold.setdefault(f.seat_id, set()).add(f.reservation_id)
    verdict.violations["no seat sold twice"] = [
        f"seat {seat}: {sorted(rids)}" for seat, rids in seats_sold.items() if len(rids) > 1
    ]

    completed = {
        m.reservation_id
        for m in await topic_log(brokers, "payment.completed")
        if isinstance(m, PaymentCompleted) and m.concert_id == ledger.concert
    }
    verdict.violations["every completed payment ends confirmed or refunded"] = [
        f"{rid} paid but {status_of.get(rid, 'not one of ours')}"
        for rid in sorted(completed)
        if status_of.get(rid) not in ("confirmed", "refunded")
    ]
    verdict.violations["the seat map equals the decisions"] = await _seat_map_disagreements(
        http, urls["seat_projection"], ledger, {ledger.accepted[rid].seat for rid in confirmed}
    )
    verdict.violations["no command deleted unprocessed"] = await deleted_unprocessed(brokers)
    lost = await _lost_tokens(http, urls["queue"], ledger)
    verdict.tokens_lost = sorted(lost, key=lambda u: ledger.token_at[u])
    verdict.tokens_lost_by_reason = dict(Counter(lost.values()))
    verdict.violations[TOKENS_CHECK] = [
        f"{user}'s token is unknown to the queue" for user in verdict.tokens_lost
    ]
    return verdict


async def deleted_unprocessed(brokers: str) -> list[str]:
    """Partitions of time-limited topics whose log start is past a consuming group's committed
    offset: records retention deleted before that group processed them."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.admin import AIOKafkaAdminClient

    limited = [spec for spec in CATALOG if spec.retention_ms > 0]
    admin = AIOKafkaAdminClient(bootstrap_servers=brokers)
    consumer = AIOKafkaConsumer(bootstrap_servers=brokers, enable_auto_commit=False)
    try:  # started inside: a start cut short still closes both
        await admin.start()
        await consumer.start()
        wrong = []
        for spec in limited:
            partitions = await partitions_of(brokers, spec.name)
            starts = await consumer.beginning_offsets(partitions)
            for group in spec.consumers:
                committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
                for tp, start in starts.items():
                    done = committed[tp].offset if tp in committed else -1
                    if start > 0 and done < start:
                        wrong.append(
                            f"{tp.topic}[{tp.partition}]: {group} committed {done}, "
                            f"log starts at {start}"
                        )
        return wrong
    finally:
        await consumer.stop()
        await admin.close()


async def _get(http: aiohttp.ClientSession, url: str, **kw: Any) -> tuple[int, dict[str, Any]]:
    for _ in range(20):  # a service still coming back: try again
        try:
            async with http.get(url, **kw) as r:
                if r.status != 503:
                    return r.status, await r.json()
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.5)
    return 503, {}


async def _terminal_statuses(
    http: aiohttp.ClientSession, base: str, ledger: Ledger, bound_s: float
) -> dict[str, str]:
    """Each accepted reservation's status once terminal, or its last one at the bound."""
    deadline = asyncio.get_running_loop().time() + bound_s
    gate = asyncio.Semaphore(50)

    async def one(rid: str) -> tuple[str, str]:
        headers = {"Queue-Token": ledger.accepted[rid].token}
        url = f"{base}/v1/reservations/{rid}?wait_ms=2000&seen="
        seen, status = "pending", "unanswered"
        async with gate:
            while True:
                code, body = await _get(http, url + seen, headers=headers)
                if code == 200:
                    seen = status = str(body["status"])
                if status in TERMINAL or asyncio.get_running_loop().time() > deadline:
                    return rid, status

    return dict(await asyncio.gather(*(one(rid) for rid in ledger.accepted)))


async def _seat_map_disagreements(
    http: aiohttp.ClientSession, base: str, ledger: Ledger, sold: set[str]
) -> list[str]:
    """Seats whose status in the map differs from the decisions (sold iff confirmed, nothing
    held once every reservation is terminal); the map is eventually consistent: 30 s to agree."""
    wrong: list[str] = []
    for _ in range(60):
        shown: dict[str, str] = {}
        after: str | None = "0"
        while after is not None:
            code, page = await _get(
                http, f"{base}/v1/concerts/{ledger.concert}/seats?limit=1000&after={after}"
            )
            if code != 200:
                return [f"seat map unreadable: {code}"]
            shown.update({s["seat_id"]: s["status"] for s in page["seats"]})
            after = page["next_after"]
        wrong = [
            f"seat {seat}: map says {shown.get(seat)}, decisions say {want}"
            for seat in map(str, range(1, ledger.seats + 1))
            if shown.get(seat) != (want := "sold" if seat in sold else "available")
        ]
        if not wrong:
            return []
        await asyncio.sleep(0.5)
    return wrong


async def _lost_tokens(http: aiohttp.ClientSession, base: str, ledger: Ledger) -> dict[str, str]:
    """user -> what the queue answers for an acknowledged token that no rule ended."""
    gate = asyncio.Semaphore(50)

    async def answer(token: str) -> str:
        async with gate:
            code, body = await _get(http, f"{base}/v1/queue/tokens/{token}")
        if code == 200:
            return ""
        return str(body.get("error", {}).get("reason") or f"HTTP {code}")

    users = list(ledger.tokens.items())
    reasons = await asyncio.gather(*(answer(t) for _, t in users))
    return {
        u: r for (u, _), r in zip(users, reasons, strict=True) if r and r not in ENDED_BY_A_RULE
    }
