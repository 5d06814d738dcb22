"""The broker against Faust's needs: table changelogs recovered by a restarted worker, as the
services' tables are (the rest of the conformance suite: test_broker_conformance.py).

Runs against Apache Kafka (the default); with KAFKA_BROKER_IMPL=noida the fallback's known
defects are strict xfails."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from infra.processes import free_port, kill, spawn
from tests.support.broker import (
    NOIDA_DEAD_MEMBER,
    NOIDA_NO_TRANSACTIONS,
    TAKEOVER_WITHIN_S,
    acks_all_producer,
    create_topic,
    known_defect,
    started_consumer,
)
from tests.support.kafka import partitions_of
from tests.support.queue import eventually, new_id

REPO = Path(__file__).resolve().parents[2]
logger = logging.getLogger(__name__)


@pytest.mark.slow
class TestFaustTables:
    @pytest.mark.parametrize(
        ("membership", "guarantee"),
        [("static", "at_least_once"), ("dynamic", "at_least_once"), ("static", "exactly_once")],
    )
    async def test_a_table_recovers_every_key_from_its_changelog_after_the_worker_is_sigkilled(
        self,
        kafka_brokers: str,
        broker_impl: str,
        membership: str,
        guarantee: str,
        request: pytest.FixtureRequest,
        tmp_path: Path,
    ) -> None:
        # Static membership: the restarted worker takes its old group.instance.id, so the broker
        # hands it the dead member's place; dynamic: the broker must expire the dead member.
        if membership == "dynamic":
            known_defect(request, broker_impl, "noida", NOIDA_DEAD_MEMBER)
        if guarantee == "exactly_once":
            known_defect(request, broker_impl, "noida", NOIDA_NO_TRANSACTIONS)
        app_id, keys = new_id("tables"), 100
        await create_topic(kafka_brokers, partitions=2, name=f"{app_id}-source")
        expected = {f"key-{i}": f"value-{i}" for i in range(keys)}
        async with acks_all_producer(kafka_brokers) as producer:
            for key, value in expected.items():
                await producer.send(f"{app_id}-source", key=key.encode(), value=value.encode())
            await producer.flush()

        env = {
            "TABLE_APP_BROKER": kafka_brokers,
            "TABLE_APP_ID": app_id,
            "TABLE_APP_KEYS": str(keys),
            "TABLE_APP_SETTINGS": json.dumps({"processing_guarantee": guarantee}),
        }
        if membership == "static":
            env["TABLE_APP_INSTANCE_ID"] = f"{app_id}-worker-1"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
            first = TableWorker(tmp_path, "first", env)
            try:
                state = await first.until(http, lambda s: s["table"] == expected, within=30)
                first.report("first start", state)
                # The table is updated before its changelog write is acked: wait for the
                # changelog, or a kill in between loses keys as Kafka semantics allow.
                # Exactly-once: the changelog is transactional, so read only what was committed.
                await changelog_has_keys(
                    kafka_brokers, f"{app_id}-values-changelog", keys, committed_only=True
                )
            finally:
                kill(first.proc)  # SIGKILL the process group: nothing flushed, no LeaveGroup

            # APPLY=0: the restarted worker consumes but never writes, so the table it serves
            # can only have come from the changelog topic (its store is memory://).
            # Restarted as an orchestrator restarts a service: same address. A static member
            # gets its cached assignment back without a rebalance, and Faust's assignor checks
            # that the worker URL inside it is its own.
            second = TableWorker(tmp_path, "second", {**env, "TABLE_APP_APPLY": "0"}, first.port)
            try:
                state = await second.until(
                    http,
                    lambda s: s["recovered"] and s["table"] == expected,
                    within=TAKEOVER_WITHIN_S + 5,
                )
                second.report("restart after SIGKILL", state)
                assert not state["apply"]
            finally:
                kill(second.proc)


async def changelog_has_keys(
    brokers: str, topic: str, count: int, *, committed_only: bool = False
) -> None:
    """Wait until `count` distinct keys can be read from a Faust changelog topic."""
    async with contextlib.AsyncExitStack() as stack:
        isolation = "read_committed" if committed_only else "read_uncommitted"
        consumer = await started_consumer(stack, brokers, isolation_level=isolation)
        partitions = await partitions_of(brokers, topic)
        assert partitions, f"no changelog topic {topic}"
        consumer.assign(partitions)
        keys: set[bytes] = set()

        async def all_keys_read() -> bool:
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                keys.update(record.key for record in batch)
            return len(keys) >= count

        try:
            await eventually(all_keys_read, within=TAKEOVER_WITHIN_S, interval=0)
        except AssertionError as e:
            raise AssertionError(f"{e}: {len(keys)} of {count} keys in {topic}") from None


class TableWorker:
    """tests/support/faust_table_app.py as a worker process of its own, and its /state/ view."""

    def __init__(
        self, tmp_path: Path, name: str, env: dict[str, str], port: int | None = None
    ) -> None:
        self.port = port or free_port()
        self.log = tmp_path / f"worker-{name}.log"
        env = {
            **os.environ,
            "TABLE_APP_DATA_DIR": str(tmp_path / "faust-data"),
            "TABLE_APP_WEB_PORT": str(self.port),
            **env,
        }
        self.spawned_at = time.time()
        self.proc = spawn(
            [sys.executable, "-m", "tests.support.faust_table_app", "worker", "-l", "info"],
            log=self.log,
            env=env,
            cwd=REPO,
        )

    async def state(self, http: aiohttp.ClientSession) -> dict[str, Any] | None:
        try:
            async with http.get(f"http://127.0.0.1:{self.port}/state/") as response:
                if response.status != 200:
                    return None
                body: dict[str, Any] = await response.json()
                return body
        except (TimeoutError, aiohttp.ClientError):
            return None

    async def until(
        self,
        http: aiohttp.ClientSession,
        condition: Callable[[dict[str, Any]], bool],
        *,
        within: float,
    ) -> dict[str, Any]:
        """The first state that meets `condition`; fails early if the worker exits."""

        async def check() -> dict[str, Any] | None:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited with {self.proc.returncode}\n{self.tail()}")
            state = await self.state(http)
            return state if state is not None and condition(state) else None

        try:
            return await eventually(check, within=within, interval=0.1)
        except AssertionError as e:
            state = await self.state(http)
            summary = state and {k: v for k, v in state.items() if k != "table"}
            size = state and len(state["table"])
            raise AssertionError(
                f"{e}\nlast state: {summary}, {size} keys\n{self.tail()}"
            ) from None

    def report(self, what: str, state: dict[str, Any]) -> None:
        since = {
            phase.removesuffix("_at"): round(at - self.spawned_at, 3)
            for phase, at in state["timings"].items()
            if at is not None
        }
        logger.info("faust worker %s: seconds since spawn %s", what, since)

    def tail(self) -> str:
        lines = self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
        # Skip Faust's start-up tables (box drawing), keep the last 40 log lines.
        text = "\n".join([line for line in lines if line.startswith("[")][-40:])
        return f"--- {self.log} (last lines) ---\n{text}"
