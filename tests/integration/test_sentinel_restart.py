"""infra/redis/start-node.sh against real sentinels: a failed primary that comes back asks the
sentinels first and rejoins as a replica of the new primary. It never serves its old data as a
primary, which `make chaos` measured at about 10 s for a plain restart."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import redis
from redis.sentinel import MasterNotFoundError

from infra.processes import port_open, spawn, stop_all, wait_until
from infra.redis_sentinel import start_sentinel_group

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "sentinel-restart-test-password"


def role(port: int) -> list[object]:
    client = redis.Redis(port=port, password=PASSWORD, socket_timeout=1, decode_responses=True)
    try:
        answer: list[object] = client.execute_command("ROLE")  # type: ignore[no-untyped-call]
        return answer
    finally:
        client.close()


def test_a_failed_primary_comes_back_as_a_replica_of_the_new_one(tmp_path: Path) -> None:
    group = start_sentinel_group(tmp_path / "sentinel", PASSWORD)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        old = group.primary()
        client = redis.Redis(port=old.port, password=PASSWORD)
        client.set("written-before-the-kill", "1")
        client.execute_command("WAIT", 2, 1000)  # type: ignore[no-untyped-call]
        client.close()
        old.kill()

        def moved_on() -> bool:
            try:
                return group.primary_port() != old.port
            except MasterNotFoundError:  # the sentinels are electing
                return False

        wait_until(moved_on, timeout=30, what="a failover")
        new_port = group.primary_port()

        (tmp_path / "password").write_text(PASSWORD + "\n")
        conf = tmp_path / "node.conf"  # what node.conf and the container give the old primary
        conf.write_text(
            f"bind 127.0.0.1\nport {old.port}\ndir {tmp_path / 'sentinel' / 'redis-0'}\n"
            "appendonly yes\n"
        )
        env = {
            **os.environ,
            "REDIS_PASSWORD_FILE": str(tmp_path / "password"),
            "AUTH_CONF": str(tmp_path / "auth.conf"),
            "NODE_CONF": str(conf),
            "NODE_HOST": "127.0.0.1",
            "NODE_PORT": str(old.port),
            "SENTINELS": " ".join(f"127.0.0.1:{s.port}" for s in group.sentinels),
        }
        log = tmp_path / "restarted.log"
        proc = spawn(["sh", str(ROOT / "infra/redis/start-node.sh")], env=env, log=log)
        procs.append(proc)
        wait_until(lambda: port_open(old.port), timeout=30, what="the restart", proc=proc, log=log)

        first = role(old.port)
        assert first[0] == "slave", first  # from its first answer on: never a primary
        assert int(str(first[2])) == new_port
        wait_until(lambda: role(old.port)[3] == "connected", timeout=30, what="the replica in sync")
        primary = redis.Redis(port=new_port, password=PASSWORD)
        assert primary.get("written-before-the-kill") == b"1"
        primary.close()
        replica = redis.Redis(port=old.port, password=PASSWORD)
        assert replica.get("written-before-the-kill") == b"1"
        replica.close()
        assert (tmp_path / "auth.conf").stat().st_mode & 0o077 == 0  # the password file
    finally:
        stop_all(procs)
        group.stop()
