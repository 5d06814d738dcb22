"""Settings shared by every service: read from the environment once, typed, validated at start-up.

Every variable is documented in the README's settings table; `python -m shared.settings` prints the
effective values (secrets masked).
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

ENVIRONMENTS = ("dev", "test", "prod")
PLACEHOLDER_SECRETS = frozenset({"", "changeme", "change-me", "secret", "dev", "test", "xxx"})
MIN_SECRET_BYTES = 32
BROKER_IMPLS = ("kafka", "noida")  # Apache Kafka; noida-db, an opt-in fallback without Java
PROCESSING_GUARANTEES = ("at_least_once", "exactly_once")
LOG_FORMATS = ("json", "text")  # shared/logs.py

T = TypeVar("T", int, float)


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


class Env:
    """Typed reads of one environment mapping; each error names the variable."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self.environ = os.environ if environ is None else environ
        self.asked: set[str] = set()  # every name looked up: what the deployment tests check

    def raw(self, name: str) -> str | None:
        """NAME, or the content of the file that NAME_FILE names: how orchestrators mount
        secrets (Kubernetes Secret volumes, compose secrets). Both at once is refused."""
        self.asked.update((name, f"{name}_FILE"))
        file = self.environ.get(f"{name}_FILE", "").strip()
        if not file:
            return self.environ.get(name)
        if self.environ.get(name, "").strip():
            raise SettingsError(f"set {name} or {name}_FILE, not both")
        try:
            return Path(file).read_text()
        except OSError as exc:
            raise SettingsError(f"{name}_FILE={file}: cannot read it ({exc.strerror})") from None

    def text(self, name: str, default: str) -> str:
        raw = self.raw(name)
        return (default if raw is None else raw).strip()

    def flag(self, name: str, default: bool) -> bool:
        raw = self.raw(name)
        if raw is None or raw.strip() == "":
            return default
        value = raw.strip().lower()
        if value in ("1", "true", "yes", "on"):
            return True
        if value in ("0", "false", "no", "off"):
            return False
        raise SettingsError(f"{name} must be a boolean (true/false), got {raw!r}")

    def integer(
        self, name: str, default: int, *, minimum: int | None = None, maximum: int | None = None
    ) -> int:
        return self._number(int, name, default, minimum, maximum)

    def number(
        self,
        name: str,
        default: float,
        *,
        minimum: float | None = None,
        maximum: float | None = None,
    ) -> float:
        return self._number(float, name, default, minimum, maximum)

    def origins(self, name: str) -> tuple[str, ...]:
        try:
            return parse_origins(self.text(name, ""))
        except ValueError as exc:
            raise SettingsError(f"{name}: {exc}") from None

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.text(name, default).lower()
        if value not in choices:
            raise SettingsError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
        return value

    def _number(
        self, kind: type[T], name: str, default: T, minimum: T | None, maximum: T | None
    ) -> T:
        raw = self.raw(name)
        if raw is None or raw.strip() == "":
            value = default
        else:
            try:
                value = kind(raw.strip())
            except ValueError:
                raise SettingsError(f"{name} must be {kind.__name__}, got {raw!r}") from None
        if minimum is not None and value < minimum:
            raise SettingsError(f"{name} must be >= {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise SettingsError(f"{name} must be <= {maximum}, got {value}")
        return value


ORIGIN = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?")


def parse_origins(raw: str) -> tuple[str, ...]:
    """`https://a.example, http://localhost:8080` -> the origins; ValueError names a bad one."""
    origins = tuple(o.strip().rstrip("/") for o in raw.split(",") if o.strip())
    for origin in origins:
        if not ORIGIN.fullmatch(origin):
            raise ValueError(f"{origin!r} is not an origin (scheme://host[:port])")
    return origins


def require_canonical_url(infra: InfraSettings, host: str) -> None:
    """A Faust worker bound to every interface cannot tell other workers where it is: in prod
    it must be told (NODE_CANONICAL_URL), or requests forwarded to it would go nowhere."""
    if infra.env == "prod" and host in ("0.0.0.0", "::", "") and not infra.node_canonical_url:
        raise SettingsError(
            f"NODE_CANONICAL_URL must be set when a worker binds {host or 'every interface'} "
            "in prod: the URL other workers reach this one at (e.g. its pod's DNS name)"
        )


def require_loopback_in_dev(env_name: str, host: str, var: str) -> None:
    if env_name != "prod" and host not in ("127.0.0.1", "localhost", "::1"):
        raise SettingsError(f"{var}={host!r}: dev and test listeners bind loopback only")


@dataclass(frozen=True)
class TokenTimes:
    """How long queue tokens live, read by the queue that issues them and by the reservation
    service that checks them (shared/waiting_room.py)."""

    active_ttl_s: float  # an admitted fan's token lapses this long after its last use
    wait_heartbeat_s: float  # a waiting fan who has not polled for this long loses the place

    @classmethod
    def from_env(cls, e: Env) -> TokenTimes:
        return cls(
            active_ttl_s=e.number("QUEUE_ACTIVE_TTL_S", 30.0, minimum=0.1),
            wait_heartbeat_s=e.number("QUEUE_WAIT_HEARTBEAT_S", 60.0, minimum=0.1),
        )


def address(value: str, var: str, what: str) -> str:
    """An infrastructure address, which has no default: unset, it is refused with its name."""
    if not value:
        raise SettingsError(
            f"{var} must be set (the address of your {what}): `make run` starts embedded ones "
            "and sets it for the services it runs"
        )
    return value


@dataclass(frozen=True)
class InfraSettings:
    """Where Redis and Kafka are, and how the services use them. The addresses have no default:
    whoever starts the embedded servers (make run, the tests, the harness) sets them, and a
    service refuses an unset one (`ServiceSettings`, `address`)."""

    env: str
    redis_url: str
    redis_socket_timeout_s: float
    redis_max_connections: int
    kafka_brokers: str
    kafka_broker_impl: str
    kafka_idempotent: bool
    kafka_partitions: int
    kafka_replication: int
    kafka_min_insync_replicas: int
    kafka_processing_guarantee: str
    kafka_linger_ms: int
    kafka_send_timeout_s: float
    kafka_session_timeout_s: float
    kafka_heartbeat_s: float
    kafka_rebalance_timeout_s: float
    faust_worker_id: int
    node_canonical_url: str  # where other workers reach this one (Faust's NODE_CANONICAL_URL)
    kafka_fetch_min_interval_ms: float
    kafka_static_membership: bool
    kafka_fetch_min_bytes: int
    kafka_fetch_max_wait_ms: int
    shutdown_drain_s: float
    recovery_stall_s: float  # a Faust worker whose table recovery stalls this long exits
    log_format: str  # json (machines) or text (people)
    cors_allowed_origins: tuple[str, ...]  # browser origins allowed to call the public APIs

    @property
    def redis_address(self) -> str:
        """REDIS_URL. There is no default address: the embedded Redis of `make run`, the tests
        and the load tests is on a port of its own, and they set REDIS_URL for the services."""
        return address(self.redis_url, "REDIS_URL", "Redis")

    @property
    def kafka_address(self) -> str:
        """KAFKA_BROKERS, with no default address either (see `redis_address`)."""
        return address(self.kafka_brokers, "KAFKA_BROKERS", "Kafka brokers")

    @property
    def static_membership(self) -> bool:
        """Static group membership (KIP-345), off by default on Kafka, measured (README):

        - a SIGKILLed worker restarted at the same address takes its partitions back at once
          (1.4 s to ready) instead of after the session timeout (6.2 s in dev);
        - but a static member does not leave its group on a clean stop, so every deploy or
          scale-down holds its partitions for the session timeout, and Faust's assignor
          refuses the cached assignment of a worker that comes back at another address.

        noida-db never expires a dead member, so there it is always on."""
        return self.kafka_static_membership or self.kafka_broker_impl == "noida"

    @property
    def fetch_pacing_ms(self) -> float:
        """Fetch pacing applies to noida-db alone; Kafka holds an empty fetch itself."""
        return self.kafka_fetch_min_interval_ms if self.kafka_broker_impl == "noida" else 0.0

    @classmethod
    def from_env(cls, e: Env) -> InfraSettings:
        env = e.choice("APP_ENV", "dev", ENVIRONMENTS)
        # A Faust worker joins its group only after the rebalance timeout: short outside prod.
        prod = env == "prod"
        replication = e.integer("KAFKA_REPLICATION", 3 if prod else 1, minimum=1)
        if prod:  # no embedded servers in production: never fall back to localhost
            for var in ("REDIS_URL", "KAFKA_BROKERS"):
                if not e.text(var, ""):
                    raise SettingsError(f"{var} must be set when APP_ENV=prod")
        return cls(
            env=env,
            redis_url=e.text("REDIS_URL", ""),
            redis_socket_timeout_s=e.number("REDIS_SOCKET_TIMEOUT_S", 1.0, minimum=0.05),
            redis_max_connections=e.integer("REDIS_MAX_CONNECTIONS", 256, minimum=1),
            kafka_brokers=e.text("KAFKA_BROKERS", ""),
            kafka_broker_impl=e.choice("KAFKA_BROKER_IMPL", "kafka", BROKER_IMPLS),
            kafka_idempotent=e.flag("KAFKA_IDEMPOTENT", True),
            kafka_partitions=e.integer("KAFKA_PARTITIONS", 4, minimum=1, maximum=1024),
            kafka_replication=replication,
            # acks=all is only as strong as this: 2 of 3 replicas must have a record before it
            # is acknowledged, so one broker can die with nothing acknowledged lost.
            kafka_min_insync_replicas=e.integer(
                "KAFKA_MIN_INSYNC_REPLICAS", min(2, replication), minimum=1, maximum=replication
            ),
            kafka_processing_guarantee=e.choice(
                "KAFKA_PROCESSING_GUARANTEE", "at_least_once", PROCESSING_GUARANTEES
            ),
            kafka_linger_ms=e.integer("KAFKA_LINGER_MS", 20, minimum=0, maximum=1000),
            kafka_send_timeout_s=e.number("KAFKA_SEND_TIMEOUT_S", 5.0, minimum=0.1),
            kafka_session_timeout_s=e.number(
                "KAFKA_SESSION_TIMEOUT_S", 30.0 if prod else 6.0, minimum=1.0
            ),
            kafka_heartbeat_s=e.number("KAFKA_HEARTBEAT_S", 3.0 if prod else 0.5, minimum=0.1),
            kafka_rebalance_timeout_s=e.number(
                "KAFKA_REBALANCE_TIMEOUT_S", 60.0 if prod else 6.0, minimum=1.0
            ),
            faust_worker_id=e.integer("FAUST_WORKER_ID", 0, minimum=0),
            node_canonical_url=e.text("NODE_CANONICAL_URL", ""),
            kafka_static_membership=e.flag("KAFKA_STATIC_MEMBERSHIP", False),
            # Only for noida-db, which answers an empty fetch at once (shared/compat.py).
            kafka_fetch_min_interval_ms=e.number(
                "KAFKA_FETCH_MIN_INTERVAL_MS", 5.0, minimum=0.0, maximum=1000.0
            ),
            # Consumers let the broker gather a batch: a fetch answers once this many bytes are
            # there or after this wait, instead of once per record (measured in the README).
            kafka_fetch_min_bytes=e.integer("KAFKA_FETCH_MIN_BYTES", 16384, minimum=1),
            kafka_fetch_max_wait_ms=e.integer(
                "KAFKA_FETCH_MAX_WAIT_MS", 20, minimum=0, maximum=30_000
            ),
            # On SIGTERM: readiness off and long-polls answered at once, then this long serving
            # before the listener closes (shared/serving.py).
            shutdown_drain_s=e.number("SHUTDOWN_DRAIN_S", 2.0, minimum=0.0, maximum=120.0),
            # Table recovery with records left to read and none read for this long: the worker
            # exits (status 70) so its supervisor restarts it (shared/recovery_watch.py).
            recovery_stall_s=e.number("FAUST_RECOVERY_STALL_S", 30.0, minimum=1.0, maximum=3600.0),
            log_format=e.choice("LOG_FORMAT", "json" if prod else "text", LOG_FORMATS),
            cors_allowed_origins=e.origins("CORS_ALLOWED_ORIGINS"),
        )


@dataclass(frozen=True)
class ServiceSettings:
    """What every service reads alike, extended by each service's settings: the infrastructure
    it talks to (REDIS_URL is required: every service uses Redis), and where it listens,
    <NAME>_HOST (loopback unless prod) and <NAME>_PORT."""

    NAME: ClassVar[str]  # the prefix of the service's own variables, e.g. QUEUE
    PORT: ClassVar[int]  # its default port

    infra: InfraSettings
    host: str
    port: int

    @classmethod
    def common(cls, e: Env) -> dict[str, Any]:
        """The fields every service reads alike, for its own `from_env` to extend."""
        infra = InfraSettings.from_env(e)
        address(infra.redis_url, "REDIS_URL", "Redis")
        host = e.text(f"{cls.NAME}_HOST", "127.0.0.1")
        require_loopback_in_dev(infra.env, host, f"{cls.NAME}_HOST")
        port = e.integer(f"{cls.NAME}_PORT", cls.PORT, minimum=0, maximum=65535)
        return {"infra": infra, "host": host, "port": port}


@dataclass(frozen=True)
class WorkerSettings(ServiceSettings):
    """A Faust worker's: KAFKA_BROKERS is required too, and <NAME>_DATA_DIR (its tables live in
    memory; Faust keeps little there), by default .run/faust/<name>."""

    datadir: Path

    @classmethod
    def common(cls, e: Env) -> dict[str, Any]:
        common = super().common(e)
        address(common["infra"].kafka_brokers, "KAFKA_BROKERS", "Kafka brokers")
        default = f".run/faust/{cls.NAME.lower()}"
        return {**common, "datadir": Path(e.text(f"{cls.NAME}_DATA_DIR", default))}


def token_secret(e: Env, env_name: str, var: str = "QUEUE_TOKEN_SECRET") -> bytes:
    """The HMAC secret: required and strong in prod; generated per process in dev if unset."""
    raw = e.text(var, "")
    if raw.lower() in PLACEHOLDER_SECRETS:
        if env_name == "prod":
            raise SettingsError(f"{var} must be set to a random secret in prod")
        return secrets.token_bytes(MIN_SECRET_BYTES)
    if env_name == "prod" and len(raw.encode()) < MIN_SECRET_BYTES:
        raise SettingsError(f"{var} must be at least {MIN_SECRET_BYTES} bytes in prod")
    return raw.encode()


SECRET_FIELD_WORDS = ("secret", "password", "token")


def mask_url(url: str) -> str:
    """A URL with the password of its user info replaced by *** (redis://:pw@host -> :***@)."""
    scheme, sep, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    if not sep or "@" not in netloc:
        return url
    userinfo, host = netloc.rsplit("@", 1)
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}{slash}{path}"


def describe(settings: object) -> dict[str, object]:
    """Settings as a dict for logs: secrets masked, passwords inside URLs too, nested settings
    described the same way."""
    out: dict[str, object] = {}
    for f in fields(settings):  # type: ignore[arg-type]
        value = getattr(settings, f.name)
        if any(word in f.name for word in SECRET_FIELD_WORDS):
            out[f.name] = "***"
        elif is_dataclass(value) and not isinstance(value, type):
            out[f.name] = describe(value)
        elif isinstance(value, str) and "://" in value:
            out[f.name] = mask_url(value)
        else:
            out[f.name] = value
    return out


if __name__ == "__main__":
    print(describe(InfraSettings.from_env(Env())))
