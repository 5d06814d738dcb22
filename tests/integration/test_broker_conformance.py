"""The broker against what the project needs: produce, offsets, groups, transactions and Faust.

Runs against Apache Kafka (the default) with no expected failure; with KAFKA_BROKER_IMPL=noida
the fallback's known defect is a strict xfail."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections import defaultdict
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition

from infra.processes import kill, spawn
from tests.support.broker import (
    GROUP_TIMEOUTS,
    NOIDA_DEAD_MEMBER,
    NOIDA_NO_TRANSACTIONS,
    TAKEOVER_WITHIN_S,
    acks_all_producer,
    create_topic,
    known_defect,
    read_records,
    started_consumer,
    topic_partitions,
    wait_for_log,
)
from tests.support.queue import eventually, new_id

REPO = Path(__file__).resolve().parents[2]

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
