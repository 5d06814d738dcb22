"""The library patches and accessors of shared/compat.py, on the pinned versions."""

from __future__ import annotations

from faust.streams import current_event
from mode.utils.queues import FlowControlEvent, FlowControlQueue

from shared import compat
from shared.compat import writing_for


def flow_and_queue() -> tuple[FlowControlEvent, FlowControlQueue[str]]:
    compat.install()
    flow = FlowControlEvent()
    return flow, FlowControlQueue(flow_control=flow, clear_on_resume=True)


class TestResumingFlowThatIsAlreadyActive:
    def test_keeps_the_messages_queued_since_it_was_resumed(self) -> None:
        flow, queue = flow_and_queue()
        flow.resume()
        queue.put_nowait("fetched during recovery")
        flow.resume()  # what Faust does once recovery is complete
        assert queue.qsize() == 1 and flow.is_active()


class TestResumingFlowAfterASuspension:
    def test_still_empties_the_queues_of_messages_from_before(self) -> None:
        flow, queue = flow_and_queue()
        flow.resume()
        queue.put_nowait("of a partition being revoked")
        flow.suspend()  # what Faust does when a rebalance starts
        flow.resume()
        assert queue.qsize() == 0 and flow.is_active()


class TestWritingFor:
    def test_makes_the_event_current_inside_the_block_only(self) -> None:
        class Event:  # weak-referenceable stand-in for a Faust event
            pass

        event = Event()
        assert current_event() is None
        with writing_for(event):
            assert current_event() is event
        assert current_event() is None


def test_the_recovery_state_reads_on_the_pinned_faust() -> None:
    """compat.recovery_state reaches Faust internals (the watchdog's input)."""
    import faust

    from shared.compat import recovery_state

    app = faust.App("recovery-state-test", broker="kafka://127.0.0.1:1", store="memory://")
    assert recovery_state(app) == (False, 0)


def test_install_registers_the_transports_and_is_idempotent() -> None:
    from faust.transport.drivers import by_url

    compat.install()
    compat.install()
    assert by_url(f"{compat.IDEMPOTENT}://127.0.0.1:9092") is compat.IdempotentTransport
    assert by_url(f"{compat.BATCHING}://127.0.0.1:9092") is compat.BatchingTransport
    assert compat.FETCH == {"min_bytes": 16384, "max_wait_ms": 20}  # the settings' defaults


def test_owner_of_a_key_is_not_known_before_any_assignment() -> None:
    import faust

    app = faust.App("owner-test", broker="kafka://127.0.0.1:1", store="memory://")
    assert compat.owner_of(app, "owner-test-seat_records-changelog", b"c1|1") is None
