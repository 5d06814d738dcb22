from collections.abc import Callable
from pathlib import Path

import pytest

from services.payment.settings import PaymentSettings
from services.queue.settings import QueueSettings
from services.reservation.settings import ReservationSettings
from services.seat_projection.settings import ProjectionSettings
from shared.settings import (
    Env,
    InfraSettings,
    SettingsError,
    WorkerSettings,
    describe,
    mask_url,
    require_canonical_url,
)

IDENTITY = {"IDENTITY_JWT_SECRET": "site-login-key-" + "k" * 32}
# What `make run` sets for the services it starts (the embedded servers' addresses).
EMBEDDED = {"REDIS_URL": "redis://127.0.0.1:6390/0", "KAFKA_BROKERS": "127.0.0.1:9092"}
# Production mode needs real infrastructure addresses.
PROD = {"APP_ENV": "prod", "REDIS_URL": "redis://redis:6379/0", "KAFKA_BROKERS": "kafka:9092"}


def queue(**env: str) -> QueueSettings:
    return QueueSettings.from_env(Env({**IDENTITY, **EMBEDDED, **env}))


class TestSettings:
    def test_defaults_are_the_documented_ones(self) -> None:
        s = queue()
        assert (s.host, s.port, s.tokens.active_ttl_s, s.tokens.wait_heartbeat_s) == (
            "127.0.0.1",
            8000,
            30,
            60,
        )
        assert s.infra.env == "dev" and s.infra.kafka_broker_impl == "kafka"
        assert s.infra.kafka_idempotent is True
        assert s.infra.kafka_processing_guarantee == "at_least_once"

    def test_reads_values_from_the_environment(self) -> None:
        s = queue(QUEUE_PORT="9000", QUEUE_ADMIT_PER_S="12.5", KAFKA_IDEMPOTENT="false")
        assert (s.port, s.admit_per_s, s.infra.kafka_idempotent) == (9000, 12.5, False)

    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("QUEUE_PORT", "eighty"),
            ("QUEUE_PORT", "70000"),
            ("QUEUE_ACTIVE_TTL_S", "-1"),
            ("KAFKA_IDEMPOTENT", "maybe"),
            ("APP_ENV", "staging"),
            ("KAFKA_BROKER_IMPL", "tansu"),
            ("KAFKA_PROCESSING_GUARANTEE", "at_most_once"),
            ("KAFKA_MIN_INSYNC_REPLICAS", "4"),
        ],
    )
    def test_a_bad_value_fails_loudly_naming_the_variable(self, name: str, value: str) -> None:
        with pytest.raises(SettingsError, match=name):
            queue(**{name: value})

    def test_dev_generates_a_token_secret_per_process_when_unset(self) -> None:
        a, b = queue().token_secret, queue().token_secret
        assert len(a) >= 32 and a != b

    def test_prod_refuses_a_missing_or_placeholder_secret(self) -> None:
        for secret in ("", "changeme"):
            with pytest.raises(SettingsError, match="QUEUE_TOKEN_SECRET"):
                queue(**PROD, QUEUE_HOST="0.0.0.0", QUEUE_TOKEN_SECRET=secret)

    def test_prod_refuses_a_short_secret(self) -> None:
        with pytest.raises(SettingsError, match="at least 32 bytes"):
            queue(**PROD, QUEUE_TOKEN_SECRET="s" * 20)

    def test_no_service_starts_without_an_identity_verifier(self) -> None:
        for env in ("dev", "prod"):
            with pytest.raises(SettingsError, match="IDENTITY_JWT_SECRET"):
                QueueSettings.from_env(
                    Env({**PROD, "APP_ENV": env, "QUEUE_TOKEN_SECRET": "s" * 32})
                )

    def test_dev_listens_on_loopback_only(self) -> None:
        with pytest.raises(SettingsError, match="QUEUE_HOST"):
            queue(QUEUE_HOST="0.0.0.0")
        assert queue(**PROD, QUEUE_HOST="0.0.0.0", QUEUE_TOKEN_SECRET="s" * 32).host

    @pytest.mark.parametrize(
        ("read", "name", "port"),
        [
            (PaymentSettings.from_env, "PAYMENT", 8002),
            (ProjectionSettings.from_env, "SEAT_PROJECTION", 8003),
            (ReservationSettings.from_env, "RESERVATION", 8001),
        ],
    )
    def test_every_worker_reads_its_listener_and_data_dir_under_its_own_name(
        self, read: Callable[[Env], WorkerSettings], name: str, port: int
    ) -> None:
        env = {"ADMIN_TOKEN": "a" * 16, **EMBEDDED}
        default = read(Env(env))
        assert (default.host, default.port) == ("127.0.0.1", port)
        assert default.datadir == Path(f".run/faust/{name.lower()}")
        mine = {f"{name}_PORT": "9100", f"{name}_DATA_DIR": "/tmp/w", "QUEUE_PORT": "9200"}
        own = read(Env({**env, **mine}))
        assert (own.port, own.datadir) == (9100, Path("/tmp/w"))
        with pytest.raises(SettingsError, match=f"{name}_HOST"):
            read(Env({**env, f"{name}_HOST": "0.0.0.0"}))

    @pytest.mark.parametrize(
        ("read", "missing"),
        [
            (lambda e: queue(**e), "REDIS_URL"),
            (lambda e: ProjectionSettings.from_env(Env(e)), "REDIS_URL"),
            (lambda e: ProjectionSettings.from_env(Env(e)), "KAFKA_BROKERS"),
            (lambda e: PaymentSettings.from_env(Env(e)), "KAFKA_BROKERS"),
        ],
    )
    def test_an_unset_infrastructure_address_is_refused_not_guessed(
        self, read: Callable[[dict[str, str]], object], missing: str
    ) -> None:
        """No default address: the embedded servers are on ports of their own, and whoever
        starts them sets the addresses for the services."""
        with pytest.raises(SettingsError, match=missing):
            read({**EMBEDDED, missing: ""})

    def test_an_unset_address_is_never_guessed_by_whoever_asks_for_it(self) -> None:
        infra = InfraSettings.from_env(Env({}))
        with pytest.raises(SettingsError, match="REDIS_URL"):
            _ = infra.redis_address
        with pytest.raises(SettingsError, match="KAFKA_BROKERS"):
            _ = infra.kafka_address

    def test_the_queue_alone_may_run_without_a_broker(self) -> None:
        assert queue(KAFKA_BROKERS="").infra.kafka_brokers == ""

    def test_replication_defaults_to_three_in_prod_with_two_replicas_in_sync(self) -> None:
        prod = InfraSettings.from_env(Env(PROD))
        assert (prod.kafka_replication, prod.kafka_min_insync_replicas) == (3, 2)
        dev = InfraSettings.from_env(Env({}))
        assert (dev.kafka_replication, dev.kafka_min_insync_replicas) == (1, 1)
        report_shape = InfraSettings.from_env(Env({"KAFKA_REPLICATION": "2"}))
        assert report_shape.kafka_min_insync_replicas == 2

    @pytest.mark.parametrize("missing", ["REDIS_URL", "KAFKA_BROKERS"])
    def test_prod_refuses_to_start_without_an_infrastructure_address(self, missing: str) -> None:
        with pytest.raises(SettingsError, match=missing):
            InfraSettings.from_env(Env({k: v for k, v in PROD.items() if k != missing}))

    def test_a_secret_can_come_from_a_file(self, tmp_path: Path) -> None:
        (tmp_path / "url").write_text("redis+sentinel://:pw@sentinel:26379/ticketing/0\n")
        (tmp_path / "key").write_text("k" * 40 + "\n")
        s = queue(
            REDIS_URL="",
            REDIS_URL_FILE=str(tmp_path / "url"),
            QUEUE_TOKEN_SECRET_FILE=str(tmp_path / "key"),
        )
        assert s.infra.redis_url == "redis+sentinel://:pw@sentinel:26379/ticketing/0"
        assert s.token_secret == b"k" * 40

    def test_numbers_and_flags_can_come_from_files_too(self, tmp_path: Path) -> None:
        (tmp_path / "port").write_text("9100\n")
        (tmp_path / "flag").write_text("false\n")
        s = queue(
            QUEUE_PORT_FILE=str(tmp_path / "port"), KAFKA_IDEMPOTENT_FILE=str(tmp_path / "flag")
        )
        assert (s.port, s.infra.kafka_idempotent) == (9100, False)

    def test_a_variable_and_its_file_together_are_refused(self, tmp_path: Path) -> None:
        (tmp_path / "key").write_text("k" * 40)
        with pytest.raises(SettingsError, match="QUEUE_TOKEN_SECRET or QUEUE_TOKEN_SECRET_FILE"):
            queue(QUEUE_TOKEN_SECRET="s" * 40, QUEUE_TOKEN_SECRET_FILE=str(tmp_path / "key"))

    def test_an_unreadable_secret_file_names_its_variable(self, tmp_path: Path) -> None:
        with pytest.raises(SettingsError, match="ADMIN_TOKEN_FILE"):
            Env({"ADMIN_TOKEN_FILE": str(tmp_path / "missing")}).text("ADMIN_TOKEN", "")

    def test_a_worker_bound_to_every_interface_in_prod_must_say_where_it_is_reached(
        self,
    ) -> None:
        with pytest.raises(SettingsError, match="NODE_CANONICAL_URL"):
            require_canonical_url(InfraSettings.from_env(Env(PROD)), "0.0.0.0")
        given = InfraSettings.from_env(Env({**PROD, "NODE_CANONICAL_URL": "http://r-0.r:8001"}))
        require_canonical_url(given, "0.0.0.0")
        require_canonical_url(InfraSettings.from_env(Env({})), "127.0.0.1")

    def test_cors_origins_are_exact_origins_only(self) -> None:
        given = "https://tickets.example, http://localhost:8080/"
        infra = InfraSettings.from_env(Env({"CORS_ALLOWED_ORIGINS": given}))
        assert infra.cors_allowed_origins == ("https://tickets.example", "http://localhost:8080")
        assert InfraSettings.from_env(Env({})).cors_allowed_origins == ()
        for bad in ("*", "tickets.example", "https://tickets.example/page", "ftp://x.example"):
            with pytest.raises(SettingsError, match="CORS_ALLOWED_ORIGINS"):
                InfraSettings.from_env(Env({"CORS_ALLOWED_ORIGINS": bad}))

    def test_noida_workarounds_apply_only_when_noida_is_selected(self) -> None:
        kafka = InfraSettings.from_env(Env({}))
        assert (kafka.static_membership, kafka.fetch_pacing_ms) == (False, 0.0)
        noida = InfraSettings.from_env(Env({"KAFKA_BROKER_IMPL": "noida"}))
        assert noida.static_membership and noida.fetch_pacing_ms == 5.0
        chosen = InfraSettings.from_env(Env({"KAFKA_STATIC_MEMBERSHIP": "true"}))
        assert chosen.static_membership

    def test_admission_burst_is_a_tenth_of_a_second_and_at_least_one(self) -> None:
        assert queue(QUEUE_ADMIT_PER_S="200").admit_burst == 20
        assert queue(QUEUE_ADMIT_PER_S="3").admit_burst == 1

    def test_an_admission_rate_of_zero_closes_the_gate(self) -> None:
        assert queue(QUEUE_ADMIT_PER_S="0").admit_burst == 0


class TestLoggedSettings:
    def test_no_secret_and_no_password_inside_a_url_reaches_the_log(self) -> None:
        env = Env(
            {
                "APP_ENV": "test",
                "REDIS_URL": "redis+sentinel://:hunter2-pw@127.0.0.1:26379,127.0.0.1:26380/m/0",
                "QUEUE_TOKEN_SECRET": "q" * 40,
                "IDENTITY_JWT_SECRET": "i" * 40,
            }
        )
        logged = repr(describe(QueueSettings.from_env(env)))
        assert "hunter2-pw" not in logged and "q" * 40 not in logged and "i" * 40 not in logged
        assert "redis+sentinel://:***@127.0.0.1:26379,127.0.0.1:26380/m/0" in logged

    def test_a_url_without_a_password_is_logged_as_it_is(self) -> None:
        assert mask_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
        assert mask_url("redis://user:pw@h:1/0") == "redis://user:***@h:1/0"
