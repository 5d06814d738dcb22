"""Log lines and request ids (shared/logs.py)."""

from __future__ import annotations

import io
import logging
import logging.config

import orjson
import pytest

from shared.logs import REQUEST_ID, dict_config, follow_record, kafka_headers, request_id_of


def capture(fmt: str) -> tuple[logging.Logger, io.StringIO]:
    config = dict_config(fmt)
    stream = io.StringIO()
    config["handlers"]["default"]["stream"] = stream
    logging.config.dictConfig(config)
    return logging.getLogger("test.logs"), stream


@pytest.fixture(autouse=True)
def restore_logging() -> object:
    yield
    logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})
    logging.root.handlers.clear()


class TestRequestIds:
    @pytest.mark.parametrize("given", ["abc", "trace-1.2:3_x", "a" * 128])
    def test_a_well_formed_id_from_the_caller_is_kept(self, given: str) -> None:
        assert request_id_of(given) == given

    @pytest.mark.parametrize("given", [None, "", "a" * 129, "two words", "x\r\nforged: 1", "é"])
    def test_anything_else_gets_a_new_unguessable_id(self, given: str | None) -> None:
        rid = request_id_of(given)
        assert rid != given and len(rid) == 32 and int(rid, 16) >= 0
        assert request_id_of(given) != rid

    def test_records_published_while_serving_carry_the_id_as_a_kafka_header(self) -> None:
        assert kafka_headers() == []
        token = REQUEST_ID.set("req-7")
        try:
            assert kafka_headers() == [("request-id", b"req-7")]
        finally:
            REQUEST_ID.reset(token)

    @pytest.mark.parametrize(
        ("headers", "expected"),
        [
            ([("request-id", b"req-9")], "req-9"),
            ({"request-id": b"req-9"}, "req-9"),
            ([("other", b"x")], ""),
            (None, ""),
            ([("request-id", b"x\r\nforged: 1")], ""),
        ],
    )
    def test_an_agent_follows_the_request_id_of_the_record_it_handles(
        self, headers: object, expected: str
    ) -> None:
        token = REQUEST_ID.set("left over from the record before")
        try:
            follow_record(headers)
            assert REQUEST_ID.get() == expected
        finally:
            REQUEST_ID.reset(token)


class TestLogLines:
    def test_json_lines_carry_time_level_logger_message_and_request_id(self) -> None:
        log, out = capture("json")
        token = REQUEST_ID.set("req-42")
        try:
            log.warning("seat %s taken", "7")
        finally:
            REQUEST_ID.reset(token)
        log.info("outside a request")
        first, second = (orjson.loads(line) for line in out.getvalue().splitlines())
        assert first["message"] == "seat 7 taken" and first["level"] == "WARNING"
        assert first["logger"] == "test.logs" and first["request_id"] == "req-42"
        assert first["time"].endswith("+00:00")
        assert "request_id" not in second

    def test_an_exception_stays_inside_its_one_json_line(self) -> None:
        log, out = capture("json")
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed")
        (line,) = out.getvalue().splitlines()
        assert "ValueError: boom" in orjson.loads(line)["exception"]

    def test_text_lines_for_people_show_the_request_id(self) -> None:
        log, out = capture("text")
        token = REQUEST_ID.set("req-9")
        try:
            log.warning("hello")
        finally:
            REQUEST_ID.reset(token)
        assert "WARNING test.logs [req-9] hello" in out.getvalue()
