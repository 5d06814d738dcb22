from pathlib import Path

from infra.kafka_broker import Node, new_cluster_id, node_properties
from shared.topics import BY_NAME, CATALOG, changelog_configs


def properties(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines())


def cluster(size: int) -> list[Node]:
    return [Node(i + 1, 9000 + i, 9100 + i, Path(f"/data/{i + 1}")) for i in range(size)]


class TestNodeProperties:
    def test_a_single_node_is_a_broker_and_controller_on_loopback_with_unreplicated_internals(
        self,
    ) -> None:
        (node,) = nodes = cluster(1)
        p = properties(node_properties(node, nodes))
        assert p["process.roles"] == "broker,controller"
        assert p["controller.quorum.voters"] == "1@127.0.0.1:9100"
        assert p["listeners"] == "PLAINTEXT://127.0.0.1:9000,CONTROLLER://127.0.0.1:9100"
        assert p["offsets.topic.replication.factor"] == "1"
        assert p["transaction.state.log.min.isr"] == "1"
        assert p["auto.create.topics.enable"] == "false"

    def test_three_nodes_share_one_quorum_and_replicate_internal_topics_three_ways(self) -> None:
        nodes = cluster(3)
        configs = [properties(node_properties(node, nodes)) for node in nodes]
        assert len({c["controller.quorum.voters"] for c in configs}) == 1
        assert configs[0]["controller.quorum.voters"].count("@127.0.0.1:") == 3
        assert [c["node.id"] for c in configs] == ["1", "2", "3"]
        assert len({c["listeners"] for c in configs}) == 3
        assert len({c["log.dirs"] for c in configs}) == 3
        assert configs[2]["offsets.topic.replication.factor"] == "3"
        assert configs[2]["transaction.state.log.min.isr"] == "2"

    def test_cluster_ids_are_random_22_character_kafka_uuids(self) -> None:
        ids = {new_cluster_id() for _ in range(50)}
        assert len(ids) == 50
        assert all(len(i) == 22 and not i.startswith("-") for i in ids)


class TestTopicSettings:
    def test_every_topic_carries_its_retention_segment_size_and_min_insync_replicas(self) -> None:
        for spec in CATALOG:
            configs = spec.configs(min_insync_replicas=2)
            assert configs["min.insync.replicas"] == "2"
            assert int(configs["segment.bytes"]) > 0
            assert configs["cleanup.policy"] == (
                "compact" if spec.name == "concert.created" else "delete"
            )

    def test_commands_outlive_any_consumer_lag_and_facts_are_kept(self) -> None:
        week = 7 * 24 * 3600 * 1000
        assert int(BY_NAME["reservation.requested"].configs(1)["retention.ms"]) >= week
        assert int(BY_NAME["payment.requested"].configs(1)["retention.ms"]) >= week
        assert BY_NAME["seat.confirmed"].configs(1)["retention.ms"] == "-1"
        assert BY_NAME["payment.completed"].configs(1)["retention.ms"] == "-1"

    def test_changelogs_get_the_same_min_insync_replicas(self) -> None:
        assert changelog_configs(2)["min.insync.replicas"] == "2"
