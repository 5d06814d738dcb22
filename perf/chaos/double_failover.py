"""How often one killed Redis primary causes two Sentinel failovers (the README's failure matrix).

    python -m perf.chaos.double_failover --down-after-ms 1000 --runs 14 [--unsettled]

Each run starts the embedded group (infra/redis_sentinel.py) on loopback, writes a key and waits
until both replicas have it, SIGKILLs the primary, and 12 s later counts, from the sentinels'
logs, the most `+switch-master` lines any sentinel wrote, and the data nodes that say they are
primary. One failover ends with one `+switch-master` and one primary; a double failover with two
of each (the second discards what clients wrote to the first new primary). `--unsettled` kills
the primary as soon as the replicas are connected, before they have synced and before the
sentinels know each other: the readiness the group had when a `make chaos` run lost 438 tokens.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import redis

from infra.redis_sentinel import DOWN_AFTER_MS, start_sentinel_group

PASSWORD = "double-failover-bench"  # a throwaway group on loopback
AFTER_KILL_S = 12.0  # longer than detection, election and a second detection at 5000 ms


def one_run(down_after_ms: int, settled: bool) -> tuple[int, int]:
    """(most `+switch-master` lines of one sentinel, data nodes that are primary) after a kill."""
    workdir = Path(tempfile.mkdtemp(prefix="double-failover-"))
    group = start_sentinel_group(workdir, PASSWORD, down_after_ms=down_after_ms, settled=settled)
    try:
        primary = group.primary()
        client = redis.Redis(port=primary.port, password=PASSWORD, socket_timeout=2)
        client.set("written-before-the-kill", "1")
        client.wait(2, 1000)
        client.close()
        primary.proc.kill()
        time.sleep(AFTER_KILL_S)
        logs = [(s.log).read_text(errors="replace") for s in group.sentinels]
        switches = max(log.count("+switch-master") for log in logs)
        primaries = 0
        for node in group.redis:
            if node is primary:
                continue
            other = redis.Redis(port=node.port, password=PASSWORD, socket_timeout=2)
            try:
                primaries += other.info("replication")["role"] == "master"
            finally:
                other.close()
        return switches, primaries
    finally:
        group.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--down-after-ms", type=int, default=DOWN_AFTER_MS)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--unsettled", action="store_true", help="kill before the group settles")
    args = parser.parse_args()
    results = []
    for i in range(args.runs):
        switches, primaries = one_run(args.down_after_ms, settled=not args.unsettled)
        results.append((switches, primaries))
        print(f"run {i + 1}: +switch-master {switches}, primaries at the end {primaries}")
    doubles = sum(1 for switches, primaries in results if switches > 1 or primaries > 1)
    readiness = "unsettled" if args.unsettled else "settled"
    print(
        f"down-after-milliseconds {args.down_after_ms}, {readiness} group: "
        f"{doubles} double failovers in {args.runs} runs"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
