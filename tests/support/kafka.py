"""Reading topics from outside the services, as a downstream consumer would."""

from __future__ import annotations

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient


async def partitions_of(brokers: str, *topics: str) -> list[TopicPartition]:
    """Every partition of `topics`, as the broker describes them (none for a missing topic).

    A consumer's own metadata only covers the topics it subscribed to or was assigned, so
    asking the broker is the reliable way to list a topic's partitions before assigning them."""
    admin = AIOKafkaAdminClient(bootstrap_servers=brokers)
    try:
        await admin.start()
        described = await admin.describe_topics(list(topics))
    finally:
        await admin.close()
    return sorted(
        TopicPartition(d["topic"], p["partition"])
        for d in described
        if not d.get("error_code")
        for p in d.get("partitions") or ()
    )
