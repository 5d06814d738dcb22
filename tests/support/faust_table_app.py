"""A one-table Faust worker for the broker-conformance tests, configured by TABLE_APP_* env vars.

Run as ``python -m tests.support.faust_table_app worker -l info``. The agent copies each
(key, value) from the source topic into a table kept in memory (``memory://``), so after a
restart everything the table holds comes from its changelog topic. GET /state/ (on
127.0.0.1:TABLE_APP_WEB_PORT) serves the table and start-up timings (wall-clock seconds).

TABLE_APP_BROKER      host:port of the broker (required)
TABLE_APP_ID          Faust app id, also the consumer group (required)
TABLE_APP_DATA_DIR    Faust data dir (required)
TABLE_APP_WEB_PORT    loopback port of the web view (required)
TABLE_APP_KEYS        how many distinct keys the test sends (logged once all are applied)
TABLE_APP_TOPIC       source topic (default "<app id>-source")
TABLE_APP_PARTITIONS  partitions of the source topic and the table (default 2)
TABLE_APP_APPLY       "0": consume but leave the table alone (proves recovery came from the
                      changelog, not from processing the source topic again)
TABLE_APP_INSTANCE_ID static group membership (consumer_group_instance_id); unset: dynamic
TABLE_APP_SETTINGS    JSON object of Faust settings laid over FAST_START_SETTINGS
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any, cast

import faust
from faust.web import Request, Response, View

IMPORTED_AT = time.time()
logger = logging.getLogger("faust_table_app")

BROKER = os.environ["TABLE_APP_BROKER"]
APP_ID = os.environ["TABLE_APP_ID"]
KEYS = int(os.environ.get("TABLE_APP_KEYS", "0"))
TOPIC = os.environ.get("TABLE_APP_TOPIC", f"{APP_ID}-source")
PARTITIONS = int(os.environ.get("TABLE_APP_PARTITIONS", "2"))
APPLY = os.environ.get("TABLE_APP_APPLY", "1") != "0"

# The settings that make a worker join, recover and process in about a second on a
# single-node dev/test broker (see tests/integration/test_broker_conformance.py).
FAST_START_SETTINGS: dict[str, Any] = {
    "broker_session_timeout": 6.0,
    "broker_heartbeat_interval": 0.5,
    "broker_rebalance_timeout": 6.0,
    "broker_request_timeout": 10.0,
    "broker_commit_interval": 0.5,
    "consumer_auto_offset_reset": "earliest",
    "producer_acks": -1,
    "stream_recovery_delay": 0.0,
    "table_standby_replicas": 0,
}

SETTINGS = {**FAST_START_SETTINGS, **json.loads(os.environ.get("TABLE_APP_SETTINGS", "{}"))}
if os.environ.get("TABLE_APP_INSTANCE_ID"):
    SETTINGS["consumer_group_instance_id"] = os.environ["TABLE_APP_INSTANCE_ID"]

app = faust.App(
    APP_ID,
    broker=f"kafka://{BROKER}",
    store="memory://",
    datadir=os.environ["TABLE_APP_DATA_DIR"],
    topic_partitions=PARTITIONS,
    topic_replication_factor=1,
    web_host="127.0.0.1",
    web_bind="127.0.0.1",
    web_port=int(os.environ["TABLE_APP_WEB_PORT"]),
    web_in_thread=False,
    **SETTINGS,
)
source = app.topic(
    TOPIC,
    key_type=bytes,
    value_type=bytes,
    key_serializer="raw",
    value_serializer="raw",
    partitions=PARTITIONS,
)
values = app.Table("values", default=str, partitions=PARTITIONS)

timings: dict[str, float | None] = {
    "imported_at": IMPORTED_AT,
    "assigned_at": None,
    "recovered_at": None,
    "first_processed_at": None,
    "all_applied_at": None,
}
processed = 0


async def _assigned(sender: Any, *args: Any, **kwargs: Any) -> None:
    if timings["assigned_at"] is None:
        timings["assigned_at"] = time.time()
        logger.warning("table app: partitions assigned %.3fs after import", _since_import())


# mode's signal stubs take no coroutine function that mypy can match; the call is fine.
cast(Any, app.on_partitions_assigned).connect(_assigned)


async def _note_recovery() -> None:
    await _recovery().completed.wait()
    timings["recovered_at"] = time.time()
    logger.warning("table app: table recovery completed %.3fs after import", _since_import())


app.task(_note_recovery)


@app.agent(source)
async def copy_into_table(stream: Any) -> None:
    global processed
    async for key, value in stream.items():
        if timings["first_processed_at"] is None:
            timings["first_processed_at"] = time.time()
            logger.warning("table app: first message processed %.3fs after import", _since_import())
        processed += 1
        if APPLY:
            values[key.decode()] = value.decode()
            if KEYS and timings["all_applied_at"] is None and len(values) >= KEYS:
                timings["all_applied_at"] = time.time()
                logger.warning("table app: all %d keys applied", KEYS)


@app.page("/state/")
async def state(web: View, request: Request) -> Response:
    return web.json(
        {
            "apply": APPLY,
            "recovered": _recovery().completed.is_set(),
            "processed": processed,
            "table": {str(k): str(v) for k, v in values.items()},
            "timings": timings,
        }
    )


def _recovery() -> Any:
    return cast(Any, app.tables).recovery


def _since_import() -> float:
    return time.time() - IMPORTED_AT


if __name__ == "__main__":
    app.main()
