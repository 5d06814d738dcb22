"""Every patch of a library, and every reach into a library's internals, in this one module.

Each part is checked against the versions it was written for: a deliberate upgrade of
faust-streaming, aiokafka or redis-py trips the guard below, and tests/unit/test_compat.py plus
the suites named with each part are what to re-run before moving the guard.

`install` applies the patches, once per process, from each service's entrypoint
(`shared.faust_app.faust_main`, `services/queue/__main__.py`) and from the test session
(tests/conftest.py):

1. **Faust empties agents' queues on every `flow_control.resume()`**, which drops messages at
   the end of table recovery (faust-streaming/faust#596, open; present in 0.15.3). Faust resumes
   the stream partitions, seeks them to their committed offsets, and only then calls `resume()`.
   Flow is already active then (recovery resumed it to read the changelogs), so messages fetched
   in between sit in an agent's queue when it is emptied, and the consumer has moved past them:
   never processed, and their gap blocks every later commit of the partition. Measured: a
   reservation worker restarted after SIGKILL with a backlog lost 3 to 6 payment results in most
   runs (`TestCrash` in tests/integration/test_pipeline.py); with the fix, none in 25 runs. The
   fix: resuming flow that is already active empties nothing. Queues are still emptied when it
   matters: a rebalance suspends flow and empties them, and the first resume after it again.
2. **Fetch pacing for noida-db**, which answers an empty fetch at once where Kafka holds it for
   `fetch.max.wait.ms`: every idle consumer spun (56 % of a core for one idle aiokafka consumer,
   ~18 % per idle Faust worker). Each fetch round trip then lasts at least
   `KAFKA_FETCH_MIN_INTERVAL_MS`; an idle consumer sleeps, a busy one loses at most that much per
   hop. Not installed against Kafka (`InfraSettings.fetch_pacing_ms` is 0 there).
3. **Faust transports** `kafka+batching` and `kafka+idempotent`: Faust passes neither
   `fetch.min.bytes` nor `fetch.max.wait.ms` to aiokafka (set here from
   `KAFKA_FETCH_MIN_BYTES` / `KAFKA_FETCH_MAX_WAIT_MS`), and enables the idempotent producer only
   for exactly-once, where we want it always.
4. **aiohttp's answers to requests it refuses before any handler runs** (a request line or
   header over 8190 bytes, malformed HTTP) are plain text echoing the offending line, with a
   logged traceback each. They leave in the JSON error envelope instead, without the input
   echoed, logged in one line; 5xx answers keep aiohttp's own behaviour.

Below them: read-only accessors for Faust state that has no public API, and the Redis
connection pools that count their connections for Prometheus (redis-py tells only
OpenTelemetry).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from importlib.metadata import version
from typing import Any

import faust
from aiohttp.http_exceptions import LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiokafka.consumer.fetcher import Fetcher
from faust.streams import _current_event
from faust.transport.drivers import TRANSPORTS
from faust.transport.drivers.aiokafka import (
    AIOKafkaConsumerThread,
    Consumer,
    Producer,
    Transport,
)
from mode.utils.queues import FlowControlEvent
from prometheus_client import Counter, Gauge
from redis import exceptions as rexc
from redis.asyncio import BlockingConnectionPool
from redis.asyncio.sentinel import SentinelConnectionPool

from shared.http import error_response
from shared.settings import Env, InfraSettings

# The versions every internal reached below was checked on.
TESTED = {"faust-streaming": "0.15.", "aiokafka": "0.14.", "redis": "8.", "aiohttp": "3."}
for _dist, _prefix in TESTED.items():
    _found = version(_dist)
    if not _found.startswith(_prefix):  # pragma: no cover - a deliberate upgrade trips this
        raise ImportError(
            f"shared/compat.py reaches {_dist} internals checked on {_prefix}x, not on "
            f"{_found}: re-check it (tests/unit/test_compat.py) before upgrading"
        )

log = logging.getLogger(__name__)
BATCHING, IDEMPOTENT = "kafka+batching", "kafka+idempotent"  # the transports' URL schemes


def install(infra: InfraSettings | None = None) -> None:
    """Apply every patch of this module to this process (idempotent), with `infra`'s fetch
    settings (the defaults' without)."""
    infra = infra or InfraSettings.from_env(Env({}))
    FlowControlEvent.resume = _resume_keeping_queued  # type: ignore[method-assign]
    _pacing["min_interval_s"] = infra.fetch_pacing_ms / 1000
    Fetcher._proc_fetch_request = _paced if infra.fetch_pacing_ms > 0 else _original_fetch
    FETCH.update(min_bytes=infra.kafka_fetch_min_bytes, max_wait_ms=infra.kafka_fetch_max_wait_ms)
    TRANSPORTS.aliases[BATCHING] = "shared.compat:BatchingTransport"
    TRANSPORTS.aliases[IDEMPOTENT] = "shared.compat:IdempotentTransport"
    RequestHandler.handle_error = _handle_error  # type: ignore[method-assign]


# --- 1. Faust: resuming flow that is already active keeps what is queued --------------------

_original_resume = FlowControlEvent.resume


def _resume_keeping_queued(self: FlowControlEvent) -> None:
    if self.is_active():
        return  # nothing stale can be queued since the last resume
    _original_resume(self)


# --- 2. aiokafka: fetch pacing (noida-db) ----------------------------------------------------

_original_fetch = Fetcher._proc_fetch_request
_pacing = {"min_interval_s": 0.0}


async def _paced(self: Any, assignment: Any, node_id: Any, request: Any) -> Any:
    started = time.monotonic()
    result = await _original_fetch(self, assignment, node_id, request)
    left = _pacing["min_interval_s"] - (time.monotonic() - started)
    if left > 0:
        try:
            await asyncio.sleep(left)
        except asyncio.CancelledError:
            return False  # closing or unassigned: what the original does when cancelled
    return result


# --- 3. Faust transports: batching fetches, idempotent producer -----------------------------

FETCH = {"min_bytes": 1, "max_wait_ms": 500}  # this process's Faust consumer (one app each)


def batch_fetches(consumer: Any, *, min_bytes: int, max_wait_ms: int) -> None:
    """Set a not yet started aiokafka consumer's fetch.min.bytes and fetch.max.wait.ms, for
    consumers built by code that does not pass them (Faust's). aiokafka reads both when
    `start()` builds its fetcher."""
    if not hasattr(consumer, "_fetch_min_bytes") or not hasattr(consumer, "_fetch_max_wait_ms"):
        raise RuntimeError("aiokafka changed: shared/compat.batch_fetches needs a look")
    consumer._fetch_min_bytes = min_bytes
    consumer._fetch_max_wait_ms = max_wait_ms


class BatchingConsumerThread(AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        batch_fetches(consumer, min_bytes=FETCH["min_bytes"], max_wait_ms=FETCH["max_wait_ms"])
        return consumer


class BatchingConsumer(Consumer):
    def _new_consumer_thread(self) -> AIOKafkaConsumerThread:
        return BatchingConsumerThread(self, loop=self.loop, beacon=self.beacon)


class BatchingTransport(Transport):
    Consumer = BatchingConsumer


class IdempotentProducer(Producer):
    def _settings_extra(self) -> dict[str, Any]:
        return {**super()._settings_extra(), "acks": "all", "enable_idempotence": True}


class IdempotentTransport(BatchingTransport):
    Producer = IdempotentProducer


# --- 4. aiohttp: requests refused before any handler leave in the JSON envelope -------------

_original_handle_error = RequestHandler.handle_error


def _handle_error(
    self: RequestHandler,
    request: Any,
    status: int = 500,
    exc: BaseException | None = None,
    message: str | None = None,
) -> Any:
    if status >= 500 or request.writer.output_size > 0:
        return _original_handle_error(self, request, status, exc, message)
    if isinstance(exc, LineTooLong):
        status, code = 414, "request_too_long"
        text = "the request line or a header is over 8190 bytes"
    else:
        code, text = "malformed_request", "the request is not valid HTTP/1.1"
    log.info("refused a request from %s: %s (%s)", request.remote, code, type(exc).__name__)
    response = error_response(status, code, text)
    response.force_close()
    return response


# --- Faust: a table whose latest changelog write can be awaited ------------------------------


class AckedTable(faust.Table):  # type: ignore[type-arg]
    """A table whose latest changelog write can be awaited: it resolves once the broker has
    acknowledged the record, i.e. once the change would survive a crash of this worker. Faust
    hands the write's future to nobody; this keeps the one `send_changelog` returns."""

    last_write: Any = None

    def send_changelog(self, *args: Any, **kwargs: Any) -> Any:
        self.last_write = super().send_changelog(*args, **kwargs)
        return self.last_write


# --- read-only accessors for Faust state with no public API ---------------------------------


def committed_offsets(consumer: Any) -> Mapping[str, int]:
    """ "topic:partition" -> the offset last committed by this worker (empty if none)."""
    committed: Mapping[Any, int | None] = getattr(consumer, "_committed_offset", {})
    return {f"{tp.topic}:{tp.partition}": o for tp, o in committed.items() if o is not None}


def recovery_state(app: Any) -> tuple[bool, int]:
    """(in recovery, changelog records still to read) of the app's table recovery."""
    recovery = app.tables.recovery
    if not recovery.in_recovery:
        return False, 0
    return True, int(recovery.active_remaining_total())


def read_offset(consumer: Any, tp: Any) -> int | None:
    """The offset of the last message this worker read from `tp`, None before the first."""
    read: Mapping[Any, int | None] = getattr(consumer, "_read_offset", {})
    return read.get(tp)


def owner_of(app: Any, topic: str, key: bytes) -> Any | None:
    """The URL of the worker that owns `key`'s partition of `topic`, from Faust's assignor;
    None while that is not known. Before the first assignment, or before the producer knows
    the topic's partitions, Faust raises one of several errors (KeyError, TypeError, Kafka
    errors): each means "not known yet", and the caller answers from what it has."""
    try:
        return app.assignor.key_store(topic, key)
    except Exception:
        return None


@contextmanager
def writing_for(event: Any) -> Iterator[None]:
    """Table writes inside this block go to `event`'s partition, as they would inside that
    event's stream iteration. Faust knows the partition only from the current event, which
    `stream.take_events` does not set while a batch is handled."""
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


# --- Redis connection pools that count their connections ------------------------------------
# The pools of shared/redis_client.py count what passes through the two public methods every
# command and pipeline uses (`get_connection`, `release`): in use now, the live pools' limit,
# commands that found their pool full and waited, and those that got no connection in time
# (the blocking pool's timeout, or the Sentinel pool's "Too many connections"; each a 503). The
# Cluster client has no pool class to subclass: `QueuingRedisCluster` counts on its own
# semaphore.

# Process-wide, like redis_out_of_memory_total: every service's /metrics shows them.
POOL_IN_USE = Gauge(
    "redis_pool_connections_in_use",
    "Redis connections checked out of this process's pools",
    registry=None,
)
POOL_MAX = Gauge(
    "redis_pool_max_connections",
    "Connections this process's live Redis pools may hold together",
    registry=None,
)
_LIMITS: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()  # live pools only
POOL_MAX.set_function(lambda: sum(_LIMITS.values()))
POOL_WAITS = Counter(
    "redis_pool_waits_total",
    "Redis commands that found their connection pool full and waited for a connection",
    registry=None,
)
POOL_EXHAUSTED = Counter(
    "redis_pool_exhausted_total",
    "Redis commands that got no pooled connection in time (answered 503)",
    registry=None,
)
POOL_METRICS = (POOL_IN_USE, POOL_MAX, POOL_WAITS, POOL_EXHAUSTED)


def count_pool_limit(pool: Any, max_connections: int) -> None:
    """Count `pool`'s connections in `redis_pool_max_connections` for as long as it lives."""
    _LIMITS[pool] = max_connections


class _Counted:
    """Counts the connections a redis-py asyncio pool hands out and takes back."""

    max_connections: int
    _out: set[int]

    def _start_counting(self) -> None:
        self._out = set()
        count_pool_limit(self, self.max_connections)

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        if len(self._out) >= self.max_connections:
            POOL_WAITS.inc()
        try:
            connection = await super().get_connection(*args, **kwargs)  # type: ignore[misc]
        except rexc.ConnectionError as exc:
            if isinstance(exc, rexc.MaxConnectionsError) or isinstance(
                exc.__cause__, asyncio.TimeoutError
            ):
                POOL_EXHAUSTED.inc()
            raise
        self._out.add(id(connection))
        POOL_IN_USE.inc()
        return connection

    async def release(self, connection: Any) -> None:
        # get_connection releases a connection it could not set up before handing it out.
        if id(connection) in self._out:
            self._out.discard(id(connection))
            POOL_IN_USE.dec()
        await super().release(connection)  # type: ignore[misc]


class CountedBlockingPool(_Counted, BlockingConnectionPool):
    """A standalone Redis's pool: a command waits up to its timeout for a connection."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._start_counting()


class CountedSentinelPool(_Counted, SentinelConnectionPool):
    """A Sentinel primary's pool: a command finding it full fails at once."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        self._start_counting()
