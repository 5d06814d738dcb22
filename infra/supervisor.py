"""Restart what crashed in the dev stack, with backoff, and say so (`make run`).

An orchestrator does this in production; in dev a crashed service or server should not take the
whole stack down with it. The policy is a pure function of a process's history, so it is tested
without processes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from infra.embedded import Server
from infra.stack import ServiceProc, Stack

FIRST_DELAY_S = 0.5
MAX_DELAY_S = 30.0
STABLE_AFTER_S = 30.0  # a process that ran this long before dying starts its backoff afresh


@dataclass
class Backoff:
    """How long to wait before restarting a process that exited, given its earlier crashes."""

    crashes: int = 0
    started_at: float = 0.0

    def on_exit(self, now: float) -> float:
        if now - self.started_at >= STABLE_AFTER_S:
            self.crashes = 0
        self.crashes += 1
        return float(min(MAX_DELAY_S, FIRST_DELAY_S * 2 ** (self.crashes - 1)))


@dataclass
class Watched:
    name: str
    poll: Callable[[], int | None]  # the exit code, None while running
    restart: Callable[[], object]
    backoff: Backoff = field(default_factory=Backoff)
    due_at: float | None = None  # when a scheduled restart is due


class Supervisor:
    """Polls every process of a stack; restarts each one that exited, after its backoff."""

    def __init__(self, stack: Stack, say: Callable[[str], None], *, servers: bool = True) -> None:
        """`servers=False` watches the services only (a test that stops a server itself)."""
        self.say = say
        now = time.monotonic()
        watched_servers = stack.servers if servers else []
        self.watched = [self._server(s) for s in watched_servers] + [
            self._worker(s, i) for s in stack.services for i in range(len(s.procs))
        ]
        for w in self.watched:
            w.backoff.started_at = now

    @staticmethod
    def _server(server: Server) -> Watched:
        return Watched(server.name, lambda: server.proc.poll(), server.restart)

    @staticmethod
    def _worker(service: ServiceProc, i: int) -> Watched:
        name = service.name if len(service.procs) == 1 else f"{service.name} worker {i}"
        return Watched(name, lambda: service.procs[i].poll(), lambda: service.spawn(i))

    def check(self, now: float) -> None:
        for w in self.watched:
            if w.due_at is None:
                code = w.poll()
                if code is None:
                    continue
                delay = w.backoff.on_exit(now)
                w.due_at = now + delay
                self.say(f"{w.name} exited with {code}; restarting in {delay:g} s")
            elif now >= w.due_at:
                w.due_at = None
                try:
                    w.restart()
                except Exception as exc:  # it did not come up: count it as another crash
                    self.say(f"{w.name} failed to restart: {str(exc).splitlines()[0]}")
                    continue
                w.backoff.started_at = time.monotonic()
                self.say(f"{w.name} restarted")
