"""The published event contracts (shared/contracts/) equal the code, hold every real event, and
are enough for a downstream team to consume `seat.confirmed`; and consumers follow the
compatibility rule they state: unknown fields are ignored, an unknown version is refused."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import jsonschema
import orjson
import pytest

from shared import contracts
from shared.events import (
    CATALOG,
    SCHEMA_VERSION,
    PaymentArrivedEarly,
    SeatConfirmed,
    UnknownMessage,
    decode,
)
from shared.topics import CATALOG as TOPICS
from shared.topics import key_of


def example(cls: type[Any]) -> Any:
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        values[f.name] = 7 if f.type == "int" else f"{f.name}-1"
    values["occurred_at"] = "2026-11-30T12:00:00.000+00:00"
    return cls(**values)


class TestCommitted:
    def test_the_committed_documents_equal_what_the_catalogs_generate(self) -> None:
        """After a catalog change: python -m shared.contracts."""
        assert contracts.SCHEMA_FILE.read_bytes() == contracts.render(contracts.schemas())
        assert contracts.ASYNCAPI_FILE.read_bytes() == contracts.render(contracts.asyncapi())

    def test_every_topic_is_a_channel_with_its_key_retention_and_parties(self) -> None:
        doc = contracts.asyncapi()
        assert set(doc["channels"]) == {spec.name for spec in TOPICS}
        for spec in TOPICS:
            channel = doc["channels"][spec.name]
            assert channel["x-key"] == spec.key
            assert channel["x-producer"] == spec.producer
            assert channel["x-consumers"] == list(spec.consumers)
            kafka = channel["bindings"]["kafka"]["topicConfiguration"]
            assert kafka == {"cleanup.policy": [spec.cleanup], "retention.ms": spec.retention_ms}

    def test_every_reference_resolves(self) -> None:
        doc = contracts.asyncapi()
        text = json.dumps(doc)
        refs = {r.split('"')[0] for r in text.split('"$ref": "#/')[1:]}
        for ref in refs:
            node: Any = doc
            for part in ref.split("/"):
                node = node[part]
            assert node, ref

    def test_internal_events_are_not_published(self) -> None:
        assert "PaymentArrivedEarly" not in contracts.schemas()["events"]
        assert PaymentArrivedEarly.__name__ in CATALOG


@pytest.mark.parametrize("name", sorted(contracts.schemas()["events"]))
def test_every_published_event_validates_against_its_schema(name: str) -> None:
    schema = contracts.schemas()["events"][name]
    jsonschema.Draft202012Validator.check_schema(schema)
    record = orjson.loads(example(CATALOG[name]).to_bytes())
    jsonschema.validate(record, schema, format_checker=jsonschema.FormatChecker())
    del record["event_id"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(record, schema)


def test_a_downstream_consumer_reads_seat_confirmed_from_the_asyncapi_document_alone() -> None:
    doc = contracts.asyncapi()
    (channel,) = [c for c in doc["channels"].values() if "SeatConfirmed" in c["messages"]]
    schema = doc["components"]["schemas"]["SeatConfirmed"]
    event = example(SeatConfirmed)
    record, key = event.to_bytes(), key_of(channel["address"], event).decode()
    value = orjson.loads(record)
    jsonschema.validate(value, schema)
    # The document names the key's parts, and what to de-duplicate on.
    assert key == "|".join(value[part] for part in channel["x-key"].split("|"))
    assert "event_id" in doc["info"]["description"]


class TestCompatibility:
    def test_a_field_added_by_a_newer_producer_is_ignored_not_fatal(self) -> None:
        event = example(SeatConfirmed)
        newer = {**orjson.loads(event.to_bytes()), "seat_section": "A", "price_paid": 100}
        assert decode(orjson.dumps(newer)) == event

    def test_a_version_this_consumer_does_not_know_is_refused(self) -> None:
        newer = {**orjson.loads(example(SeatConfirmed).to_bytes()), "v": SCHEMA_VERSION + 1}
        with pytest.raises(UnknownMessage, match="version"):
            decode(orjson.dumps(newer))

    def test_a_missing_field_is_still_refused(self) -> None:
        record = orjson.loads(example(SeatConfirmed).to_bytes())
        del record["payment_id"]
        with pytest.raises(UnknownMessage):
            decode(orjson.dumps(record))
