"""The broker against what the project needs: produce, offsets, groups, transactions and Faust.

Runs against Apache Kafka (the default) with no expected failure; with KAFKA_BROKER_IMPL=noida
the fallback's known defect is a strict xfail."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from infra.processes import free_port, kill, spawn
from tests.support.kafka import partitions_of
from tests.support.queue import eventually, new_id

REPO = Path(__file__).resolve().parents[2]
logger = logging.getLogger(__name__)

# Short enough for tests, and within a real Kafka's limits (group.min.session.timeout.ms=6000).
GROUP_TIMEOUTS: dict[str, int] = {
    "session_timeout_ms": 6000,
    "heartbeat_interval_ms": 500,
    "rebalance_timeout_ms": 6000,
}
# A real Kafka notices a dead member after its session timeout and rebalances within about
# one more heartbeat; these deadlines leave several seconds of slack on top.
TAKEOVER_WITHIN_S = 15.0

NOIDA_DEAD_MEMBER = (
    "noida-db 0.2.3: a consumer-group member that dies without LeaveGroup (SIGKILL) is never "
    "expired while others heartbeat, and a group re-formed without it still names it as "
    "leader, so nobody sends the leader SyncGroup and the survivors rejoin forever"
)
NOIDA_NO_TRANSACTIONS = "noida-db 0.2.3 has no transaction coordinator"

# A group member to SIGKILL: it prints "assigned" once it owns partitions, then idles.
MEMBER_SCRIPT = """
import asyncio, sys
from aiokafka import AIOKafkaConsumer

async def main(brokers, topic, group):
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=brokers, group_id=group, enable_auto_commit=False,
        session_timeout_ms=6000, heartbeat_interval_ms=500, rebalance_timeout_ms=6000,
    )
    await consumer.start()
    print("assigned", sorted(tp.partition for tp in consumer.assignment()), flush=True)
    await asyncio.sleep(3600)

asyncio.run(main(*sys.argv[1:]))
"""


def known_defect(
    request: pytest.FixtureRequest, broker_impl: str, impl: str, why: str, *, strict: bool = True
) -> None:
    """Expect this test to fail on `impl`; strict: it fails loudly once the defect is fixed."""
    if broker_impl == impl:
        request.applymarker(pytest.mark.xfail(reason=why, strict=strict))


async def create_topic(brokers: str, partitions: int, name: str | None = None) -> str:
    name = name or new_id("conformance")
    admin = AIOKafkaAdminClient(bootstrap_servers=brokers)
    try:
        await admin.start()
        response = await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()
    errors = [(topic, code) for topic, code, *_ in response.topic_errors if code != 0]
    assert not errors, errors
    return name


@contextlib.asynccontextmanager
async def acks_all_producer(brokers: str, **options: Any) -> AsyncIterator[AIOKafkaProducer]:
    """A producer that waits for every in-sync replica (what the services use)."""
    producer = AIOKafkaProducer(bootstrap_servers=brokers, acks="all", **options)
    try:
        await producer.start()
        yield producer
    finally:
        await producer.stop()


async def started_consumer(
    stack: contextlib.AsyncExitStack, brokers: str, *topics: str, **options: Any
) -> AIOKafkaConsumer:
    """A started consumer, stopped when `stack` closes; with a group it has joined by then."""
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=brokers,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **options,
    )
    stack.push_async_callback(consumer.stop)
    await asyncio.wait_for(consumer.start(), TAKEOVER_WITHIN_S)
    return consumer


async def read_records(consumer: AIOKafkaConsumer, count: int, within: float = 15.0) -> list[Any]:
    """Exactly `count` records from the consumer's assigned partitions, in arrival order."""
    records: list[Any] = []
    deadline = time.monotonic() + within
    while len(records) < count:
        assert time.monotonic() < deadline, f"read {len(records)} of {count} records in {within}s"
        for batch in (await consumer.getmany(timeout_ms=200)).values():
            records.extend(batch)
    assert len(records) == count, f"read {len(records)} records, expected {count}"
    return records


def topic_partitions(topic: str, partitions: int) -> set[TopicPartition]:
    return {TopicPartition(topic, p) for p in range(partitions)}


class TestProduceAndConsume:
    async def test_an_idempotent_producers_keyed_records_come_back_intact_in_partition_order(
        self, kafka_brokers: str
    ) -> None:
        topic = await create_topic(kafka_brokers, partitions=3)
        sent = [(f"key-{i % 24}".encode(), f"value-{i}".encode()) for i in range(600)]
        async with acks_all_producer(
            kafka_brokers, enable_idempotence=True, linger_ms=5
        ) as producer:
            acks = await asyncio.gather(
                *[await producer.send(topic, key=key, value=value) for key, value in sent]
            )

        by_partition: dict[int, list[tuple[bytes, bytes]]] = defaultdict(list)
        partition_of_key: dict[bytes, set[int]] = defaultdict(set)
        for (key, value), ack in zip(sent, acks, strict=True):
            by_partition[ack.partition].append((key, value))
            partition_of_key[key].add(ack.partition)
        assert sorted(by_partition) == [0, 1, 2]
        assert all(len(partitions) == 1 for partitions in partition_of_key.values())
        for partition, records in by_partition.items():
            offsets = [ack.offset for ack in acks if ack.partition == partition]
            assert offsets == list(range(len(records))), f"acked offsets of partition {partition}"

        async with contextlib.AsyncExitStack() as stack:
            consumer = await started_consumer(stack, kafka_brokers)
            consumer.assign(sorted(topic_partitions(topic, 3)))
            received = await read_records(consumer, len(sent))
        got: dict[int, list[tuple[bytes, bytes]]] = defaultdict(list)
        for record in received:
            assert record.offset == len(got[record.partition]), "a gap or repeat in offsets"
            got[record.partition].append((record.key, record.value))
        assert got == by_partition

    async def test_end_offsets_count_every_record_of_multi_record_batches(
        self, kafka_brokers: str
    ) -> None:
        topic = await create_topic(kafka_brokers, partitions=2)
        batches, per_batch = 5, 50  # partition 0: explicit batches
        rounds, per_round = 3, 40  # partition 1: send()s that linger into one batch a round
        async with acks_all_producer(kafka_brokers, linger_ms=100) as producer:
            pending = []
            for b in range(batches):
                batch = producer.create_batch()
                for i in range(per_batch):
                    appended = batch.append(
                        key=f"k{i}".encode(), value=f"b{b}-{i}".encode(), timestamp=None
                    )
                    assert appended is not None, "batch full"
                pending.append(await producer.send_batch(batch, topic, partition=0))
            await producer.flush()
            batch_acks = await asyncio.gather(*pending)
            lingered = []
            for r in range(rounds):
                futures = [
                    await producer.send(topic, key=b"k", value=f"r{r}-{i}".encode(), partition=1)
                    for i in range(per_round)
                ]
                await producer.flush()
                lingered.extend(await asyncio.gather(*futures))

        assert [ack.offset for ack in batch_acks] == [b * per_batch for b in range(batches)]
        assert [ack.offset for ack in lingered] == list(range(rounds * per_round))
        written = {
            TopicPartition(topic, 0): batches * per_batch,
            TopicPartition(topic, 1): rounds * per_round,
        }
        async with contextlib.AsyncExitStack() as stack:
            consumer = await started_consumer(stack, kafka_brokers)
            assert await consumer.end_offsets(list(written)) == written
            assert await consumer.beginning_offsets(list(written)) == dict.fromkeys(written, 0)
            consumer.assign(list(written))
            records = await read_records(consumer, sum(written.values()))
            for tp, count in written.items():
                offsets = [r.offset for r in records if r.partition == tp.partition]
                assert offsets == list(range(count)), f"offsets of {tp}"
                await consumer.seek_to_end(tp)
                assert await consumer.position(tp) == count


class TestTransactions:
    async def test_a_read_committed_consumer_sees_committed_transactions_and_never_aborted_ones(
        self, kafka_brokers: str, broker_impl: str, request: pytest.FixtureRequest
    ) -> None:
        known_defect(request, broker_impl, "noida", NOIDA_NO_TRANSACTIONS)
        topic, group = await create_topic(kafka_brokers, partitions=2), new_id("group")
        source = await create_topic(kafka_brokers, partitions=1)
        async with acks_all_producer(kafka_brokers) as plain:
            await plain.send_and_wait(source, value=b"input")
        producer = AIOKafkaProducer(
            bootstrap_servers=kafka_brokers, transactional_id=new_id("txn"), acks="all"
        )
        await producer.start()
        try:
            # Consume-transform-produce: outputs and the input's offset commit as one.
            async with producer.transaction():
                for i in range(10):
                    await producer.send(topic, key=f"k{i}".encode(), value=b"committed")
                await producer.send_offsets_to_transaction({TopicPartition(source, 0): 1}, group)
            with contextlib.suppress(RuntimeError):
                async with producer.transaction():
                    for i in range(10):
                        await producer.send(topic, key=f"k{i}".encode(), value=b"aborted")
                    raise RuntimeError("abort")
            async with producer.transaction():
                await producer.send(topic, key=b"last", value=b"committed")
        finally:
            await producer.stop()

        async with contextlib.AsyncExitStack() as stack:
            consumer = await started_consumer(
                stack, kafka_brokers, isolation_level="read_committed"
            )
            consumer.assign(sorted(topic_partitions(topic, 2)))
            records = await read_records(consumer, 11)
            assert {r.value for r in records} == {b"committed"}
            assert not any((await consumer.getmany(timeout_ms=500)).values()), "aborted leaked"
            offsets = await consumer.end_offsets(sorted(topic_partitions(topic, 2)))
            # 21 records and three commit/abort markers were written across both partitions.
            assert sum(offsets.values()) > 21
            reader = await started_consumer(stack, kafka_brokers, group_id=group)
            assert await reader.committed(TopicPartition(source, 0)) == 1


class TestConsumerGroups:
    async def test_two_members_split_the_partitions_and_the_other_takes_all_when_the_leader_leaves(
        self, kafka_brokers: str
    ) -> None:
        topic, group = await create_topic(kafka_brokers, partitions=4), new_id("group")
        everything = topic_partitions(topic, 4)
        async with contextlib.AsyncExitStack() as stack:
            # The first member to join is the group's leader: the one that computes assignments.
            leader = await started_consumer(
                stack, kafka_brokers, topic, group_id=group, **GROUP_TIMEOUTS
            )
            assert leader.assignment() == everything
            other = await started_consumer(
                stack, kafka_brokers, topic, group_id=group, **GROUP_TIMEOUTS
            )

            async def split() -> tuple[set[TopicPartition], set[TopicPartition]] | None:
                mine, theirs = set(leader.assignment()), set(other.assignment())
                if mine and theirs and not mine & theirs and mine | theirs == everything:
                    return mine, theirs
                return None

            mine, theirs = await eventually(split, within=TAKEOVER_WITHIN_S)
            committed = {tp: 10 + tp.partition for tp in everything}
            await leader.commit({tp: committed[tp] for tp in mine})
            await other.commit({tp: committed[tp] for tp in theirs})
            for tp in mine:
                assert await leader.committed(tp) == committed[tp]

            await leader.stop()  # a clean LeaveGroup

            async def survivor_owns_all() -> bool:
                return set(other.assignment()) == everything

            await eventually(survivor_owns_all, within=TAKEOVER_WITHIN_S)
            for tp in sorted(everything):
                assert await other.committed(tp) == committed[tp], f"committed offset of {tp}"

    async def test_a_new_member_resumes_every_partition_from_the_groups_committed_offsets(
        self, kafka_brokers: str
    ) -> None:
        topic, group = await create_topic(kafka_brokers, partitions=4), new_id("group")
        everything = sorted(topic_partitions(topic, 4))
        async with acks_all_producer(kafka_brokers) as producer:
            for tp in everything:
                for i in range(20):
                    await producer.send(
                        topic, value=f"{tp.partition}-{i}".encode(), partition=tp.partition
                    )
            await producer.flush()
        committed = {tp: 5 + 3 * tp.partition for tp in everything}
        async with contextlib.AsyncExitStack() as stack:
            first = await started_consumer(
                stack, kafka_brokers, topic, group_id=group, **GROUP_TIMEOUTS
            )
            await first.commit(committed)
        async with contextlib.AsyncExitStack() as stack:
            second = await started_consumer(
                stack, kafka_brokers, topic, group_id=group, **GROUP_TIMEOUTS
            )
            records = await read_records(second, sum(20 - offset for offset in committed.values()))
        for tp, offset in committed.items():
            got = [r.value for r in records if r.partition == tp.partition]
            assert got == [f"{tp.partition}-{i}".encode() for i in range(offset, 20)], str(tp)


@pytest.mark.slow
class TestCrashedMembers:
    async def test_a_surviving_member_takes_over_the_partitions_of_a_sigkilled_member(
        self,
        kafka_brokers: str,
        broker_impl: str,
        request: pytest.FixtureRequest,
        tmp_path: Path,
    ) -> None:
        known_defect(request, broker_impl, "noida", NOIDA_DEAD_MEMBER)
        topic, group = await create_topic(kafka_brokers, partitions=2), new_id("group")
        log = tmp_path / "member.log"
        member = spawn(
            [sys.executable, "-c", MEMBER_SCRIPT, kafka_brokers, topic, group], log=log, cwd=REPO
        )
        try:
            await wait_for_log(member, log, "assigned")
            async with contextlib.AsyncExitStack() as stack:
                survivor = await started_consumer(
                    stack, kafka_brokers, topic, group_id=group, **GROUP_TIMEOUTS
                )

                async def owns(count: int) -> bool:
                    return len(survivor.assignment()) == count

                await eventually(lambda: owns(1), within=TAKEOVER_WITHIN_S)
                kill(member)
                try:
                    await eventually(lambda: owns(2), within=TAKEOVER_WITHIN_S)
                except AssertionError as e:
                    owned = sorted(tp.partition for tp in survivor.assignment())
                    raise AssertionError(f"{e}: the survivor still owns only {owned}") from None
        finally:
            kill(member)


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


async def wait_for_log(proc: subprocess.Popen[bytes], log: Path, text: str) -> None:
    async def logged() -> bool:
        output = await asyncio.to_thread(log.read_text, errors="replace")
        assert proc.poll() is None, f"exited with {proc.returncode}:\n{output[-2000:]}"
        return text in output

    await eventually(logged, within=TAKEOVER_WITHIN_S)


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
