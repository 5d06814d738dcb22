"""Publishing an API command and waiting for the broker's acknowledgement: a 202 means the
command is durably accepted, and a 503 says truthfully whether it may still be."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka.errors import KafkaError

from services.reservation.context import Reservations
from shared.errors import DomainError, Unavailable


async def publish_acked(
    ctx: Reservations,
    topic: str,
    message: Any,
    *,
    undo: Callable[[], Awaitable[object]] | None = None,
    **ids: str,
) -> None:
    """Publish and wait for the broker's acknowledgement: a 202 means durably accepted.

    A 503 tells the truth about what may still happen. A message the producer never took is
    not accepted: `undo` runs at once. One it took but the broker has not acknowledged in time
    may still be delivered (the producer keeps retrying): the 503 then carries `ids` (the
    reservation id, so the client can look it up or retry with the same Idempotency-Key) and
    `"accepted": "unknown"`, and `undo` runs only if the broker finally refuses it."""
    timeout = ctx.settings.infra.kafka_send_timeout_s
    started = asyncio.get_running_loop().time()
    try:
        async with asyncio.timeout(timeout):
            delivery = await ctx.publish(topic, message)
    except (TimeoutError, OSError, KafkaError) as exc:
        ctx.metrics.send_failures.labels(topic, "not_taken").inc()
        await _undo(undo)
        raise Unavailable(f"the event log is unavailable ({type(exc).__name__}), retry") from None
    left = max(0.0, timeout - (asyncio.get_running_loop().time() - started))
    try:
        await asyncio.wait_for(asyncio.shield(delivery), left)
    except TimeoutError:
        ctx.metrics.send_failures.labels(topic, "not_acknowledged").inc()
        delivery.add_done_callback(lambda f: _undo_if_refused(ctx, f, undo))
        unknown = Unavailable(
            "the event log has not acknowledged the request yet; it may still be accepted: "
            "look it up, or retry with the same Idempotency-Key"
        )
        unknown.extra.update(accepted="unknown", **ids)
        raise unknown from None
    except (OSError, KafkaError) as exc:
        ctx.metrics.send_failures.labels(topic, "refused").inc()
        await _undo(undo)
        raise Unavailable(
            f"the event log refused the request ({type(exc).__name__}), retry"
        ) from None


async def _undo(undo: Callable[[], Awaitable[object]] | None) -> None:
    if undo is not None:
        with contextlib.suppress(DomainError):
            await undo()


def _undo_if_refused(
    ctx: Reservations, delivery: asyncio.Future[Any], undo: Callable[[], Awaitable[object]] | None
) -> None:
    """A late outcome: delivered, nothing to do; refused for good, undo what the request took."""
    if undo is not None and (delivery.cancelled() or delivery.exception() is not None):
        task = asyncio.ensure_future(_undo(undo))
        ctx.background.add(task)
        task.add_done_callback(ctx.background.discard)
