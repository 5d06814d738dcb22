"""When a Faust worker's table recovery has stalled: the pure decision, apart from its timer.

Recovery reads each changelog partition the worker took over up to its high-water mark before
the worker serves again. `make chaos` once saw it wait forever after a scale-down (Faust's own
log: `No event received for active tp ... since recovery start`, for minutes): the process was
alive and never ready, so no supervisor restarted it. A stall is recovery that still has records
to read and has read none for `stall_s`; the worker then exits, and its restart recovers from the
start of the changelog. How long `stall_s` is: FAUST_RECOVERY_STALL_S (shared/settings.py)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class RecoveryWatch:
    stall_s: float  # no changelog record read for this long while records remain
    _remaining: int = -1  # what was left to read when it last changed
    _since: float = 0.0

    def stalled(self, now: float, in_recovery: bool, remaining: int) -> bool:
        """Observe recovery at `now`: True once it has made no progress for `stall_s`."""
        if not in_recovery or remaining <= 0:
            self._remaining = -1
            return False
        if remaining != self._remaining:
            self._remaining, self._since = remaining, now
            return False
        return now - self._since >= self.stall_s
