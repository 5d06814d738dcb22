"""The fix for Faust emptying agents' queues at the end of recovery (shared/faust_compat.py)."""

from __future__ import annotations

from faust.streams import current_event
from mode.utils.queues import FlowControlEvent, FlowControlQueue

from shared.faust_compat import keep_queued_messages_on_resume, writing_for


def flow_and_queue() -> tuple[FlowControlEvent, FlowControlQueue[str]]:
    keep_queued_messages_on_resume()
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
    """shared.faust_compat.recovery_state reaches Faust internals (the watchdog's input)."""
    import faust

    from shared.faust_compat import recovery_state

    app = faust.App("recovery-state-test", broker="kafka://127.0.0.1:1", store="memory://")
    assert recovery_state(app) == (False, 0)
