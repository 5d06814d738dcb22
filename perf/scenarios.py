"""The load-test scenarios of perf.harness: queue (k6), reservation + payment, spike, soak.

Each returns a `Scenario` (perf.results) built from raw samples; an exception inside one is
recorded as a problem of that scenario and the run goes on to the next.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from infra.processes import free_port, port_open, spawn, stop, wait_until
from perf.bench_queue import k6_binary
from perf.ledger import end_offsets_by_topic, records_per_flow
from perf.results import Scenario
from perf.samples import Sample, max_sustainable, phase, read_k6_csv, series
from perf.stats import percentile
from shared.identity import mint

QUEUE_SCRIPT = Path(__file__).parent / "k6" / "queue.js"
QUEUE_CRITERION = (100.0, 0.001)  # p99 ms, error share: the "maximum sustainable"
MAX_SEATS = 100_000  # per concert (POST /v1/concerts)
FLOW_CRITERION = (1000.0, 0.001)


@dataclass
class Plan:
    """Sizes of one run; `smoke` shrinks everything to about half a minute."""

    smoke: bool
    queue_rate: int = 1000
    queue_seconds: int = 20
    queue_ramp_from: int = 300  # iterations/s (3 requests each), low so the maximum is
    queue_ramp_to: int = 2000  # found from below
    queue_ramp_seconds: int = 40
    flow_steady_rate: int = 150  # below saturation: the CPU per flow is read here
    flow_steady_seconds: int = 10
    flow_rate: int = 500  # the reference report's target
    flow_seconds: int = 10
    flow_ramp_from: int = 50  # the ramp starts low so the maximum is found from below
    flow_ramp_to: int = 600
    flow_ramp_seconds: int = 40
    spike_users: int = 50_000
    spike_arrival_s: float = 10.0
    spike_seats: int = 5_000
    spike_admit_per_s: int = 500
    soak_seconds: int = 600
    soak_rate: int | None = None  # None: half the reservation scenario's maximum

    @classmethod
    def for_run(cls, smoke: bool) -> Plan:
        if not smoke:
            return cls(smoke=False)
        return cls(
            smoke=True,
            queue_rate=100,
            queue_seconds=4,
            queue_ramp_from=50,
            queue_ramp_to=300,
            queue_ramp_seconds=5,
            flow_steady_rate=10,
            flow_seconds=4,
            flow_steady_seconds=3,
            flow_rate=20,
            flow_ramp_from=10,
            flow_ramp_to=40,
            flow_ramp_seconds=5,
            spike_users=300,
            spike_arrival_s=2.0,
            spike_seats=30,
            spike_admit_per_s=100,
            soak_seconds=6,
            soak_rate=10,
        )


@dataclass
class Context:
    t0: float  # time.monotonic() at the run's start
    t0_unix: float
    workdir: Path
    urls: dict[str, str]
    admin_token: str
    brokers: str
    identity_secret: str  # the dev stack's site login key: the driver logs its fans in
    live: LiveStats = field(default_factory=lambda: LiveStats())
    load_pids: dict[str, list[int]] = field(default_factory=dict)  # k6 while it runs

    def now(self) -> float:
        return time.monotonic() - self.t0


@dataclass
class LiveStats:
    """What the collector's status line shows: the last second of the running driver."""

    label: str = "idle"
    samples: list[Sample] = field(default_factory=list)

    def line(self) -> str:
        if self.label.startswith("k6"):
            return f"{self.label:<12} (k6 is running; its figures are read when it ends)"
        now = time.monotonic()
        recent = [s for s in self.samples[-5000:] if s.t >= now - 1.0]
        ok = sum(s.ok for s in recent)
        p99 = percentile([s.ms for s in recent], 99)
        return f"{self.label:<12} {ok:6d}/s ok  p99 {p99:8.1f} ms  errors {len(recent) - ok}"


def empty_scenario(name: str, unit: str, criterion: str) -> Scenario:
    return {
        "name": name,
        "unit": unit,
        "complete": False,
        "problems": [],
        "phases": [],
        "max_sustainable_per_s": None,
        "criterion": criterion,
        "timeseries": {"t": [], "throughput_per_s": [], "p99_ms": [], "errors_per_s": []},
        "extra": {},
    }


# --- queue: k6 ---------------------------------------------------------------------------------


def run_k6(ctx: Context, name: str, env: dict[str, str], timeout_s: float) -> list[Sample]:
    out = ctx.workdir / "k6"
    out.mkdir(parents=True, exist_ok=True)
    argv = [k6_binary(), "run", "--quiet", "--no-color", "--no-usage-report", "--address", ""]
    argv += ["--out", f"csv={out / f'{name}.csv'}"]
    for key, value in {**env, "SUMMARY_PATH": str(out / f"{name}.json")}.items():
        argv += ["-e", f"{key}={value}"]
    argv.append(str(QUEUE_SCRIPT))
    proc_env = {**os.environ, "K6_NO_USAGE_REPORT": "true", "K6_CSV_TIME_FORMAT": "unix_milli"}
    ctx.live.label = f"k6 {name}"
    proc = spawn(argv, log=out / f"{name}.log", env=proc_env)
    ctx.load_pids["k6"] = [proc.pid]
    try:
        code = proc.wait(timeout=timeout_s)
    finally:
        stop(proc)
        ctx.load_pids.pop("k6", None)
    if code != 0:
        tail = (out / f"{name}.log").read_text(errors="replace")[-1500:]
        raise RuntimeError(f"k6 {name} exited with {code}: {tail}")
    return read_k6_csv(out / f"{name}.csv", ctx.t0_unix)


def on_sale(ctx: Context) -> str:
    """A fresh concert for a k6 phase: the queue admits entries only for concerts on sale."""

    async def create() -> str:
        async with aiohttp.ClientSession() as http:
            return await post_concert(
                http, ctx.urls["reservation"], ctx.admin_token, 1000, "perf-q"
            )

    return asyncio.run(create())


def queue_scenario(ctx: Context, plan: Plan) -> Scenario:
    p99, errors = QUEUE_CRITERION
    sc = empty_scenario("queue", "requests", f"p99 <= {p99:.0f} ms and errors <= {errors:.1%}")
    base = {"BASE_URL": ctx.urls["queue"], "OP": "flow", "WARMUP_S": "2", "POOL_SIZE": "500"}
    base["IDENTITY_SECRET"] = ctx.identity_secret
    fixed_start = ctx.now()
    fixed = run_k6(
        ctx,
        "queue-fixed",
        {
            **base,
            "MODE": "fixed",
            "RATE": str(plan.queue_rate),
            "DURATION_S": str(plan.queue_seconds),
            "CONCERT_ID": on_sale(ctx),
        },
        plan.queue_seconds + 90,
    )
    start = min((s.t for s in fixed), default=fixed_start)
    sc["phases"].append(
        phase(
            f"target {plan.queue_rate} iterations/s (x3 requests)",
            "fixed",
            fixed,
            started_t=start,
            duration_s=plan.queue_seconds,
            offered_per_s=plan.queue_rate * 3,
        )
    )
    ramp = run_k6(
        ctx,
        "queue-ramp",
        {
            **base,
            "MODE": "ramp",
            "RATE": str(plan.queue_ramp_from),
            "RATE_TO": str(plan.queue_ramp_to),
            "DURATION_S": str(plan.queue_ramp_seconds),
            "FIXED_VUS": "200",
            "CONCERT_ID": on_sale(ctx),
        },
        plan.queue_ramp_seconds + 90,
    )
    ramp_start = min((s.t for s in ramp), default=ctx.now())
    sc["phases"].append(
        phase(
            f"ramp {plan.queue_ramp_from * 3}->{plan.queue_ramp_to * 3} requests/s",
            "ramp",
            ramp,
            started_t=ramp_start,
            duration_s=plan.queue_ramp_seconds,
            offered_per_s=None,
        )
    )
    everything = fixed + ramp
    sc["timeseries"] = series(everything, start, ramp_start + plan.queue_ramp_seconds)
    sc["max_sustainable_per_s"] = max_sustainable(
        ramp,
        ramp_start,
        ramp_start + plan.queue_ramp_seconds,
        p99_limit_ms=p99,
        error_limit=errors,
    )
    hello = hello_ceiling(ctx, plan)
    best = sc["max_sustainable_per_s"]
    sc["extra"] = {
        "requests_per_token": 3,  # each k6 iteration: enter, poll, validate
        "bare_aiohttp_hello_req_per_s": round(hello, 1),
        "max_sustainable_over_bare_aiohttp": round(best / hello, 3) if best and hello else None,
    }
    sc["complete"] = True
    return sc


def hello_ceiling(ctx: Context, plan: Plan) -> float:
    """Saturated throughput of a bare aiohttp app on this machine: the queue's ceiling."""
    port = free_port()
    log = ctx.workdir / "k6" / "hello.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    proc = spawn([sys.executable, "-m", "perf.hello", "--port", str(port)], log=log)
    ctx.load_pids["hello"] = [proc.pid]
    try:
        wait_until(lambda: port_open(port), timeout=30, what="perf.hello", proc=proc, log=log)
        seconds = 3 if plan.smoke else 10
        env = {"BASE_URL": f"http://127.0.0.1:{port}", "OP": "hello", "MODE": "saturate"}
        env |= {"VUS": "64", "DURATION_S": str(seconds), "WARMUP_S": "1"}
        samples = run_k6(ctx, "hello", env, seconds + 60)
    finally:
        stop(proc)
        ctx.load_pids.pop("hello", None)
    ok = [s for s in samples if s.ok]
    if len(ok) < 2:
        return math.nan
    span = ok[-1].t - ok[0].t
    return len(ok) / span if span > 0 else math.nan


# --- reservation + payment: Python flows -------------------------------------------------------


class Flows:
    """Reserve -> held -> pay -> confirmed, one user and one seat per flow."""

    def __init__(self, ctx: Context, http: aiohttp.ClientSession, concert: str) -> None:
        self.ctx = ctx
        self.http = http
        self.concert = concert
        self.samples: list[Sample] = []
        self.confirmed: list[str] = []
        self.retried = 0  # 503s answered with Retry-After and retried
        self.refused = 0  # flows whose reservation was still refused as overloaded at the end
        # Flows measured from the reservation attempt that was accepted (not the refused tries
        # before it), and how long each 503 took to come back: what load shedding changes.
        self.accepted: list[Sample] = []
        self.refusal_ms: list[float] = []

    async def call(
        self, method: str, url: str, *, tries: list[float] | None = None, **kw: Any
    ) -> tuple[int, Any]:
        """One request; a 503 is retried after its Retry-After, as a well-behaved client does
        (up to 5 times), so backpressure shows up as latency rather than as a lost fan. `tries`
        gets the start time of every attempt."""
        for _ in range(5):
            started = time.monotonic()
            if tries is not None:
                tries.append(started)
            async with self.http.request(method, url, **kw) as r:
                if r.status != 503:
                    return r.status, await r.json()
                pause = float(r.headers.get("Retry-After", "1"))
            self.refusal_ms.append((time.monotonic() - started) * 1000)
            self.retried += 1
            await asyncio.sleep(pause)
        return 503, {}

    async def token(self, user: str) -> str:
        q = self.ctx.urls["queue"]
        status, body = await self.call(
            "POST",
            f"{q}/v1/queue/tokens",
            json={"concert_id": self.concert, "user_id": user},
            headers=self.login(user),
        )
        if status not in (200, 201):
            raise RuntimeError(f"queue entry: {status} {body}")
        while body.get("status") != "active":
            await asyncio.sleep(0.1)
            _, body = await self.call("GET", f"{q}/v1/queue/tokens/{body['token']}")
            if "token" not in body:
                raise RuntimeError(f"queue token lost: {body}")
        return str(body["token"])

    def login(self, user: str) -> dict[str, str]:
        """The Authorization header of `user` logged in at the ticket site."""
        return {"Authorization": f"Bearer {mint(self.ctx.identity_secret, user)}"}

    async def wait(self, rid: str, seen: str, token: str) -> str:
        r = self.ctx.urls["reservation"]
        url = f"{r}/v1/reservations/{rid}?wait_ms=10000&seen={seen}"
        for _ in range(6):
            _, body = await self.call("GET", url, headers={"Queue-Token": token})
            if body.get("status") != seen:
                return str(body.get("status"))
        return seen

    async def flow(self, user: str, token: str, seat: str, record: bool = True) -> str:
        """One purchase attempt: "confirmed", "rejected" (seat taken or lost) or "error"."""
        r = self.ctx.urls["reservation"]
        started = time.monotonic()
        tries: list[float] = []
        outcome = "error"
        try:
            # ?wait_ms: the answer comes once the seat agent has decided, in one request; a
            # long-poll follows only when it has not (another worker decides, or time is up).
            status, body = await self.call(
                "POST",
                f"{r}/v1/reservations?wait_ms=10000",
                json={"concert_id": self.concert, "seat_id": seat, "user_id": user},
                headers={"Queue-Token": token},
                tries=tries,
            )
            if status == 503:
                self.refused += 1
            held = body.get("status", "") if status == 202 else ""
            if held == "pending":
                held = await self.wait(body["reservation_id"], "pending", token)
            if held == "held":
                rid = body["reservation_id"]
                status, body = await self.call(
                    "POST",
                    f"{r}/v1/reservations/{rid}/payment?wait_ms=10000",
                    json={"user_id": user},
                    headers={"Queue-Token": token},
                )
                final = body.get("reservation", {}).get("status", "") if status == 202 else ""
                if final == "held":
                    final = await self.wait(rid, "held", token)
                outcome = "confirmed" if final == "confirmed" else "rejected" if final else "error"
            elif held:
                outcome = "rejected"
        except (aiohttp.ClientError, TimeoutError, KeyError, ValueError):
            outcome = "error"
        if outcome == "confirmed":
            self.confirmed.append(seat)
        if record:
            self.record(started, outcome == "confirmed")
            if outcome != "error" and tries:
                end = time.monotonic()
                self.accepted.append(Sample(end - self.ctx.t0, (end - tries[-1]) * 1000, True))
        return outcome

    def record(self, started: float, ok: bool) -> None:
        end = time.monotonic()
        sample = Sample(end - self.ctx.t0, (end - started) * 1000, ok)
        self.samples.append(sample)
        self.ctx.live.samples.append(Sample(end, sample.ms, ok))


async def create_concert(ctx: Context, http: aiohttp.ClientSession, seats: int) -> str:
    return await post_concert(http, ctx.urls["reservation"], ctx.admin_token, seats, "perf")


async def post_concert(
    http: aiohttp.ClientSession, reservation_url: str, admin_token: str, seats: int, prefix: str
) -> str:
    """A new concert of `seats` seats (admin API), with a fresh id starting with `prefix`."""
    concert = f"{prefix}-{uuid.uuid4().hex[:8]}"
    async with http.post(
        reservation_url + "/v1/concerts",
        json={"concert_id": concert, "seats": seats, "price": 100},
        headers={"Authorization": f"Bearer {admin_token}"},
    ) as r:
        if r.status != 201:
            raise RuntimeError(f"create concert: {r.status} {await r.text()}")
    return concert


async def admitted_users(flows: Flows, prefix: str, n: int) -> list[tuple[str, str]]:
    gate = asyncio.Semaphore(200)

    async def one(i: int) -> tuple[str, str]:
        async with gate:
            user = f"{prefix}{i}"
            return user, await flows.token(user)

    return list(await asyncio.gather(*(one(i) for i in range(n))))


async def open_loop(
    flows: Flows, users: list[tuple[str, str]], first_seat: int, rate_at: Any, seconds: float
) -> int:
    """Start flows at rate_at(elapsed) per second, whatever the system does; returns how many."""
    tasks = []
    started = time.monotonic()
    next_due = started
    i = 0
    while i < len(users) and next_due - started < seconds:
        if (delay := next_due - time.monotonic()) > 0:
            await asyncio.sleep(delay)
        user, token = users[i]
        tasks.append(asyncio.create_task(flows.flow(user, token, str(first_seat + i))))
        i += 1
        next_due += 1 / max(1e-3, rate_at(next_due - started))
    await asyncio.gather(*tasks)
    return i


async def reservation_async(ctx: Context, plan: Plan, sc: Scenario) -> None:
    ramp_avg = (plan.flow_ramp_from + plan.flow_ramp_to) / 2
    n_steady = plan.flow_steady_rate * plan.flow_steady_seconds
    n_fixed = plan.flow_rate * plan.flow_seconds
    n_ramp = int(ramp_avg * plan.flow_ramp_seconds) + 1
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=4000)) as http:
        concert = await create_concert(ctx, http, min(MAX_SEATS, n_steady + n_fixed + n_ramp))
        flows = Flows(ctx, http, concert)
        ctx.live.label = "admitting"
        users = await admitted_users(flows, "r", n_steady + n_fixed + n_ramp)
        steady_users = users[:n_steady]
        users = users[n_steady:]
        ctx.live.label = f"flows {plan.flow_rate}/s"
        fixed_start = ctx.now()
        await open_loop(flows, users[:n_fixed], 1, lambda _: plan.flow_rate, plan.flow_seconds)
        sc["phases"].append(
            phase(
                f"target {plan.flow_rate} flows/s",
                "fixed",
                [x for x in flows.samples if x.t >= fixed_start],
                started_t=fixed_start,
                duration_s=ctx.now() - fixed_start,
                offered_per_s=plan.flow_rate,
            )
        )
        ctx.live.label = "flows ramp"
        ramp_start = ctx.now()
        span = plan.flow_ramp_to - plan.flow_ramp_from

        def rate(elapsed: float) -> float:
            return plan.flow_ramp_from + span * min(1.0, elapsed / plan.flow_ramp_seconds)

        await open_loop(flows, users[n_fixed:], n_fixed + 1, rate, plan.flow_ramp_seconds)
        ramp_end = ctx.now()
        ramp_samples = [s for s in flows.samples if s.t >= ramp_start]
        sc["phases"].append(
            phase(
                f"ramp {plan.flow_ramp_from}->{plan.flow_ramp_to} flows/s",
                "ramp",
                ramp_samples,
                started_t=ramp_start,
                duration_s=ramp_end - ramp_start,
                offered_per_s=None,
            )
        )
        p99, errors = FLOW_CRITERION
        sc["max_sustainable_per_s"] = max_sustainable(
            ramp_samples, ramp_start, ramp_end, p99_limit_ms=p99, error_limit=errors
        )
        # Steady, below saturation, last: the broker's JIT is warm and the backlog drained. The
        # CPU ledger and the records per flow are read here.
        ctx.live.label = f"flows {plan.flow_steady_rate}/s"
        offsets_before = await end_offsets_by_topic(ctx.brokers)
        steady_start = ctx.now()
        await open_loop(
            flows,
            steady_users,
            len(users) + 1,  # the seats after the ramp's
            lambda _: plan.flow_steady_rate,
            plan.flow_steady_seconds,
        )
        steady = [x for x in flows.samples if x.t >= steady_start]
        sc["phases"].append(
            phase(
                f"steady {plan.flow_steady_rate} flows/s",
                "fixed",
                steady,
                started_t=steady_start,
                duration_s=ctx.now() - steady_start,
                offered_per_s=plan.flow_steady_rate,
            )
        )
        records = records_per_flow(
            offsets_before, await end_offsets_by_topic(ctx.brokers), sum(x.ok for x in steady)
        )
        sc["timeseries"] = series(flows.samples, fixed_start, ctx.now())
        sold = await seat_counts(ctx, http, concert, len(flows.confirmed))
        ctx.live.label = "raw aiokafka"
        raw = await raw_ceiling(ctx.brokers, 5000 if plan.smoke else 50_000)
        best = sc["max_sustainable_per_s"]
        per_flow = records.get("total")
        sc["extra"] = {
            "raw_aiokafka_records_per_s": round(raw, 1),
            # Counted from the brokers' end offsets (changelogs included), per completed flow
            # of the steady phase.
            "records_per_flow": per_flow,
            "records_per_flow_by_topic": {k: v for k, v in records.items() if k != "total"},
            "max_sustainable_records_over_raw": (
                round(best * per_flow / raw, 4) if best and raw and per_flow else None
            ),
            "seats_confirmed_by_flows": len(flows.confirmed),
            "seats_sold_in_seat_map": sold,
            "seats_sold_twice": len(flows.confirmed) - len(set(flows.confirmed)),
            # Load shedding: 503 + Retry-After answers the driver followed, and flows still
            # refused after five tries (counted as errors above).
            "requests_retried_after_503": flows.retried,
            "flows_refused_overloaded": flows.refused,
            "refusal_p99_ms": round(percentile(flows.refusal_ms, 99), 1)
            if flows.refusal_ms
            else None,
            **{
                f"accepted_flow_p99_ms_{name}": round(percentile([x.ms for x in part], 99), 1)
                for name, part in (
                    ("fixed", [x for x in flows.accepted if fixed_start <= x.t < ramp_start]),
                    ("ramp", [x for x in flows.accepted if ramp_start <= x.t < steady_start]),
                )
                if part
            },
        }


async def seat_counts(
    ctx: Context, http: aiohttp.ClientSession, concert: str, expect_sold: int
) -> int:
    """Sold seats in the (eventually consistent) seat map, waiting up to 10 s to catch up."""
    url = ctx.urls["seat_projection"] + f"/v1/concerts/{concert}/seats?limit=1"
    deadline = time.monotonic() + 10
    while True:
        async with http.get(url) as r:
            sold = int((await r.json())["counts"]["sold"])
        if sold == expect_sold or time.monotonic() > deadline:
            return sold
        await asyncio.sleep(0.25)


def reservation_scenario(ctx: Context, plan: Plan) -> Scenario:
    p99, errors = FLOW_CRITERION
    sc = empty_scenario(
        "reservation", "flows", f"flow p99 <= {p99:.0f} ms and errors <= {errors:.1%}"
    )
    asyncio.run(reservation_async(ctx, plan, sc))
    sc["complete"] = True
    return sc


# --- spike -------------------------------------------------------------------------------------


async def spike_async(ctx: Context, plan: Plan, sc: Scenario) -> None:
    q = ctx.urls["queue"]
    connector = aiohttp.TCPConnector(limit=4000)
    async with aiohttp.ClientSession(connector=connector) as http:
        concert = await create_concert(ctx, http, plan.spike_seats)
        flows = Flows(ctx, http, concert)
        free = list(range(1, plan.spike_seats + 1))
        random.shuffle(free)
        waits: list[float] = []
        buyers: list[str] = []
        sold_out_at: list[float] = []
        start = ctx.now()

        async def fan(i: int) -> None:
            """Arrive, wait in line, buy a seat or leave when sold out; one sample per fan
            (ok unless something failed: a sold-out answer is a clean outcome)."""
            await asyncio.sleep(random.uniform(0, plan.spike_arrival_s))
            user, entered = f"s{i}", time.monotonic()
            try:
                status, body = await flows.call(
                    "POST",
                    f"{q}/v1/queue/tokens",
                    json={"concert_id": concert, "user_id": user},
                    headers=flows.login(user),
                )
                if status not in (200, 201):
                    return flows.record(entered, False)
                token = body["token"]
                while body.get("status") == "waiting" and free:
                    await asyncio.sleep(body["poll_after_ms"] / 1000)
                    status, body = await flows.call("GET", f"{q}/v1/queue/tokens/{token}")
                    if status != 200:
                        return flows.record(entered, False)
                if body.get("status") != "active" or not free:
                    async with http.delete(f"{q}/v1/queue/tokens/{token}") as gone:
                        return flows.record(entered, gone.status == 204)  # sold out: leaves
                waits.append(time.monotonic() - entered)
                while free:
                    seat = str(free.pop())
                    outcome = await flows.flow(user, token, seat, record=False)
                    if outcome == "error":
                        free.append(int(seat))  # not known to be sold: back in the pool
                        return flows.record(entered, False)
                    if outcome == "confirmed":
                        buyers.append(seat)
                        if len(buyers) == plan.spike_seats:
                            sold_out_at.append(ctx.now())
                        break
                flows.record(entered, True)
            except (aiohttp.ClientError, TimeoutError, KeyError, ValueError):
                flows.record(entered, False)

        ctx.live.label = "spike"
        await asyncio.gather(*(fan(i) for i in range(plan.spike_users)))
        end = ctx.now()
        sc["phases"].append(
            phase(
                f"{plan.spike_users} fans in {plan.spike_arrival_s:.0f} s for "
                f"{plan.spike_seats} seats",
                "spike",
                flows.samples,
                started_t=start,
                duration_s=end - start,
                offered_per_s=None,
            )
        )
        sc["timeseries"] = series(flows.samples, start, end)
        sold = await seat_counts(ctx, http, concert, len(buyers))
        sc["extra"] = {
            "fans": plan.spike_users,
            "seats": plan.spike_seats,
            "seats_sold": sold,
            "time_to_sell_out_s": round(sold_out_at[0] - start, 2) if sold_out_at else None,
            "queue_wait_s": {f"p{q}": round(percentile(waits, q), 3) for q in (50, 95, 99)}
            | {"max": round(max(waits, default=float("nan")), 3)},
            "queue_wait_samples_s": [round(w, 3) for w in waits],
            "seats_sold_twice": len(buyers) - len(set(buyers)),
            "seat_map_agrees": sold == len(buyers),
            "requests_retried_after_503": flows.retried,
        }


def spike_scenario(ctx: Context, plan: Plan) -> Scenario:
    sc = empty_scenario("spike", "flows", "every seat sold once; queue waits bounded")
    asyncio.run(spike_async(ctx, plan, sc))
    sc["complete"] = True
    return sc


# --- soak --------------------------------------------------------------------------------------


async def soak_async(ctx: Context, plan: Plan, rate: float, sc: Scenario) -> None:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=4000)) as http:
        n = int(rate * plan.soak_seconds) + 1
        # A concert has at most MAX_SEATS seats: a long soak sells out several, one after the
        # other, as an on-sale with several shows would.
        sizes = [min(MAX_SEATS, n - i) for i in range(0, n, MAX_SEATS)]
        ctx.live.label = "admitting"
        parts = []
        for k, size in enumerate(sizes):
            flows = Flows(ctx, http, await create_concert(ctx, http, size))
            parts.append((flows, await admitted_users(flows, f"k{k}-", size)))
        ctx.live.label = f"soak {rate:.0f}/s"
        start = ctx.now()
        for flows, users in parts:  # each part ends when its users have all started
            await open_loop(flows, users, 1, lambda _: rate, plan.soak_seconds)
        end = ctx.now()
        samples = sorted((x for flows, _ in parts for x in flows.samples), key=lambda x: x.t)
        sc["phases"].append(
            phase(
                f"soak {rate:.0f} flows/s for {plan.soak_seconds} s",
                "soak",
                samples,
                started_t=start,
                duration_s=end - start,
                offered_per_s=rate,
            )
        )
        sc["timeseries"] = series(samples, start, end)
        span = max(1.0, min(60.0, (end - start) / 5))
        first = [x.ms for x in samples if x.t < start + span]
        last = [x.ms for x in samples if x.t >= end - span]
        sc["extra"] = {
            "window_s": span,
            "concerts": len(parts),
            "p99_first_window_ms": percentile(first, 99),
            "p99_last_window_ms": percentile(last, 99),
        }


def soak_scenario(ctx: Context, plan: Plan, reservation_max: float | None) -> Scenario:
    sc = empty_scenario("soak", "flows", "memory and latency flat over the run")
    rate = plan.soak_rate or (reservation_max / 2 if reservation_max else 50)
    asyncio.run(soak_async(ctx, plan, rate, sc))
    sc["complete"] = True
    return sc


async def raw_ceiling(brokers: str, n: int) -> float:
    """aiokafka alone on the same broker: produce n ~300-byte records and consume them back."""
    topic = f"perf-raw-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=brokers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 4, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=brokers, linger_ms=2, acks="all")
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=brokers, auto_offset_reset="earliest")
    await producer.start()
    await consumer.start()
    try:
        started = time.perf_counter()

        async def produce() -> None:
            futures = [await producer.send(topic, b"x" * 300, key=b"%d" % i) for i in range(n)]
            await asyncio.gather(*futures)

        async def consume() -> None:
            seen = 0
            while seen < n:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    seen += len(records)

        await asyncio.gather(produce(), consume())
        return n / (time.perf_counter() - started)
    finally:
        await producer.stop()
        await consumer.stop()


def dump(path: Path, doc: object) -> None:
    path.write_text(json.dumps(doc, indent=1, default=str, allow_nan=True) + "\n")
