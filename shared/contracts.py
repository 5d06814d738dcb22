"""The published event contracts, generated from the two catalogs (shared/events.py and
shared/topics.py) so they cannot drift from the code:

- `events.schema.json`: a JSON Schema (2020-12) for every published event;
- `asyncapi.json`: an AsyncAPI 3.0 document for every topic (key, partitions, retention,
  compaction, producer, consumers) and the events on it.

Both are committed under shared/contracts/ (the image carries them) and served by the
reservation service at /asyncapi.json and /events.schema.json. `python -m shared.contracts`
writes them again after a catalog change; the suite fails while they differ from the code.

The compatibility rule they state: consumers ignore fields they do not know (so adding a field
is not a breaking change), and the version `v` changes only for a breaking change, which old
consumers refuse rather than misread. Delivery is at least once, in order per key; the
`event_id` is the de-duplication key.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import orjson

from shared.events import CATALOG as EVENTS
from shared.events import FIELD_TYPES, SCHEMA_VERSION, Message
from shared.topics import CATALOG as TOPICS
from shared.topics import TopicSpec

DIR = Path(__file__).resolve().parent / "contracts"
SCHEMA_FILE = DIR / "events.schema.json"
ASYNCAPI_FILE = DIR / "asyncapi.json"
DEFAULT_PARTITIONS = 4  # KAFKA_PARTITIONS' default; a deployment may choose another count
JSON_TYPES = {str: "string", int: "integer"}
FIELD_NOTES = {
    "event_id": "unique per event; deterministic when derived from another message, so a "
    "redelivery repeats it: the de-duplication key",
    "occurred_at": "UTC, ISO-8601 with milliseconds",
    "hold_expires_at_ms": "epoch milliseconds",
    "version": "the seat's version after this change: later facts about one seat have higher "
    "versions",
    "amount": "in the concert's price unit",
    "queue_ticket": "the fan's ticket number in the waiting room",
}
COMPATIBILITY = (
    "Consumers must ignore fields they do not know: adding a field is not a breaking change "
    "and keeps `v`. `v` changes only for a breaking change (a field removed, renamed or "
    "retyped); a consumer refuses a `v` it does not know instead of misreading it. Delivery is "
    "at least once and in order per key: de-duplicate on `event_id`."
)


def published() -> list[type[Message]]:
    """The events that appear on a topic (internal ones, e.g. PaymentArrivedEarly, do not)."""
    on_topics = {m for spec in TOPICS for m in spec.messages}
    return [cls for name, cls in EVENTS.items() if name in on_topics]


def event_schema(cls: type[Message]) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "type": {"const": cls.__name__, "description": "the event's name"},
        "v": {"const": SCHEMA_VERSION, "description": "schema version (breaking changes only)"},
    }
    for f in dataclasses.fields(cls):
        prop: dict[str, Any] = {"type": JSON_TYPES[FIELD_TYPES[str(f.type)]]}
        if f.name == "occurred_at":
            prop["format"] = "date-time"
        if f.name in FIELD_NOTES:
            prop["description"] = FIELD_NOTES[f.name]
        properties[f.name] = prop
    doc = (cls.__doc__ or "").strip()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"urn:concert-ticketing:event:{cls.__name__}:v{SCHEMA_VERSION}",
        "title": cls.__name__,
        **({"description": " ".join(doc.split())} if not doc.startswith(cls.__name__) else {}),
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": True,  # the compatibility rule: unknown fields are ignored
    }


def schemas() -> dict[str, Any]:
    return {
        "$comment": COMPATIBILITY,
        "events": {cls.__name__: event_schema(cls) for cls in published()},
    }


def _channel(spec: TopicSpec) -> dict[str, Any]:
    retention = "forever" if spec.retention_ms < 0 else f"{spec.retention_ms // 3_600_000} h"
    return {
        "address": spec.name,
        "description": (
            f"Key: `{spec.key}` (UTF-8). Produced by {spec.producer}; consumed by "
            f"{', '.join(spec.consumers) or 'no service of ours (published for others)'}. "
            f"Retention: {retention}; cleanup: {spec.cleanup}."
        ),
        "messages": {m: {"$ref": f"#/components/messages/{m}"} for m in spec.messages},
        "bindings": {
            "kafka": {
                "topic": spec.name,
                "partitions": DEFAULT_PARTITIONS,
                "topicConfiguration": {
                    "cleanup.policy": [spec.cleanup],
                    "retention.ms": spec.retention_ms,
                },
                "bindingVersion": "0.5.0",
            }
        },
        "x-key": spec.key,
        "x-producer": spec.producer,
        "x-consumers": list(spec.consumers),
    }


def asyncapi() -> dict[str, Any]:
    channels = {spec.name: _channel(spec) for spec in TOPICS}
    operations = {}
    for spec in TOPICS:
        messages = [{"$ref": f"#/channels/{spec.name}/messages/{m}"} for m in spec.messages]
        channel = {"$ref": f"#/channels/{spec.name}"}
        operations[f"publish {spec.name}"] = {
            "action": "send",
            "channel": channel,
            "messages": messages,
            "summary": f"{spec.producer} publishes",
        }
        operations[f"consume {spec.name}"] = {
            "action": "receive",
            "channel": channel,
            "messages": messages,
            "summary": f"consumed by {', '.join(spec.consumers) or 'downstream consumers'}",
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Concert ticketing events",
            "version": str(SCHEMA_VERSION),
            "description": "Every topic of the reservation pipeline and the events on it. "
            + COMPATIBILITY
            + " Values are JSON (UTF-8), one event per record; the event's name is its "
            "`type` field.",
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {
            "messages": {
                cls.__name__: {
                    "name": cls.__name__,
                    "contentType": "application/json",
                    "payload": {"$ref": f"#/components/schemas/{cls.__name__}"},
                }
                for cls in published()
            },
            "schemas": {cls.__name__: event_schema(cls) for cls in published()},
        },
    }


def render(doc: dict[str, Any]) -> bytes:
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def main() -> int:
    DIR.mkdir(exist_ok=True)
    SCHEMA_FILE.write_bytes(render(schemas()))
    ASYNCAPI_FILE.write_bytes(render(asyncapi()))
    print(f"wrote {SCHEMA_FILE} and {ASYNCAPI_FILE}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
