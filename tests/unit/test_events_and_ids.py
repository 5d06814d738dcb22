"""Wire format, topic catalog, reservation ids: pytest tests/unit/test_events_and_ids.py"""

from __future__ import annotations

import dataclasses
import re
import string
import typing
from collections import Counter
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.reservation.ids import ReservationIds, payment_id_for
from shared import topics
from shared.events import CATALOG, SCHEMA_VERSION, Message, UnknownMessage, decode
from shared.topics import BY_NAME, CONCERT, PAYMENT, SEAT, TOPIC_OF, consumed_by, key_of, names

MESSAGE_TYPES = sorted(CATALOG.values(), key=lambda cls: cls.__name__)
STRATEGY_OF: dict[type, st.SearchStrategy[Any]] = {
    str: st.text(),
    int: st.integers(-(2**63), 2**63 - 1),  # what a JSON number of the wire format holds
}


def field_types(cls: type[Message]) -> dict[str, type]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def messages_of(cls: type[Message]) -> st.SearchStrategy[Message]:
    return st.builds(cls, **{name: STRATEGY_OF[t] for name, t in field_types(cls).items()})


def sample(cls: type[Message], **values: Any) -> Message:
    fields = {name: f"{name}-1" if t is str else 7 for name, t in field_types(cls).items()}
    return cls(**{**fields, **values})


def wire(cls: type[Message], **changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads(sample(cls).to_bytes())
    return {**doc, **changes}


class TestWireFormat:
    @pytest.mark.parametrize("cls", MESSAGE_TYPES, ids=lambda cls: cls.__name__)
    @settings(max_examples=25, deadline=None)
    @given(data=st.data())
    def test_every_message_round_trips(self, cls: type[Message], data: st.DataObject) -> None:
        m = data.draw(messages_of(cls))
        raw = m.to_bytes()
        assert decode(raw) == m
        assert decode(raw.decode()) == m
        assert type(decode(raw)) is cls

    @pytest.mark.parametrize("cls", MESSAGE_TYPES, ids=lambda cls: cls.__name__)
    def test_names_the_type_and_schema_version_in_the_envelope(self, cls: type[Message]) -> None:
        doc = orjson.loads(sample(cls).to_bytes())
        assert (doc["type"], doc["v"], doc["event_id"]) == (
            cls.__name__,
            SCHEMA_VERSION,
            "event_id-1",
        )


class TestDecodingSomethingElse:
    @pytest.mark.parametrize("name", ["SeatSold", "Message", "SeatMessage", "", None, 3])
    def test_rejects_a_type_outside_the_catalog(self, name: object) -> None:
        with pytest.raises(UnknownMessage):
            decode(orjson.dumps(wire(CATALOG["SeatHeld"], type=name)))

    @pytest.mark.parametrize("version", [0, SCHEMA_VERSION + 1, "1", None])
    def test_rejects_another_schema_version(self, version: object) -> None:
        with pytest.raises(UnknownMessage):
            decode(orjson.dumps(wire(CATALOG["SeatHeld"], v=version)))

    @pytest.mark.parametrize("envelope", ["type", "v"])
    def test_rejects_a_message_without_its_type_or_version(self, envelope: str) -> None:
        doc = wire(CATALOG["SeatHeld"])
        del doc[envelope]
        with pytest.raises(UnknownMessage):
            decode(orjson.dumps(doc))

    @pytest.mark.parametrize("cls", MESSAGE_TYPES, ids=lambda cls: cls.__name__)
    def test_rejects_a_message_missing_any_field(self, cls: type[Message]) -> None:
        for name in field_types(cls):
            doc = wire(cls)
            del doc[name]
            with pytest.raises(UnknownMessage, match=name):
                decode(orjson.dumps(doc))

    def test_ignores_a_field_the_message_does_not_have(self) -> None:
        """A newer producer's added field (the compatibility rule, shared/contracts.py)."""
        message = decode(orjson.dumps(wire(CATALOG["SeatHeld"], seat_colour="red")))
        assert type(message).__name__ == "SeatHeld"
        assert not hasattr(message, "seat_colour")

    @pytest.mark.parametrize(
        "raw", [b"", b"not json", b"{", b"\xff\xfe", b"[]", b"null", b"42", b'"SeatHeld"']
    )
    def test_rejects_anything_but_a_json_object(self, raw: bytes) -> None:
        with pytest.raises(UnknownMessage):
            decode(raw)


class TestTopicsConsumedTogether:
    @pytest.mark.parametrize(
        ("topic_names", "key"),
        [
            (names(SEAT), "concert_id|seat_id"),
            (names(PAYMENT), "reservation_id"),
            (consumed_by("seat_projection"), "concert_id"),
        ],
        ids=["seat agent", "payment agent", "seat projection"],
    )
    def test_share_one_key(self, topic_names: tuple[str, ...], key: str) -> None:
        assert topic_names
        assert {BY_NAME[name].key for name in topic_names} == {key}

    def test_the_seat_agent_consumes_exactly_the_seat_group(self) -> None:
        assert set(consumed_by("reservation")) == set(names(SEAT))

    def test_the_payment_agent_consumes_exactly_the_payment_group(self) -> None:
        assert set(consumed_by("payment")) == set(names(PAYMENT))

    def test_the_seat_projection_reads_only_concert_keyed_topics(self) -> None:
        assert set(consumed_by("seat_projection")) <= set(names(CONCERT))


class TestMessageKeys:
    @pytest.mark.parametrize("topic", names(SEAT))
    def test_of_seat_topics_are_concert_and_seat(self, topic: str) -> None:
        cls = CATALOG[BY_NAME[topic].messages[0]]
        m = sample(cls, concert_id="c-9", seat_id="A-12")
        assert key_of(topic, m) == b"c-9|A-12" == getattr(m, "seat_key").encode()  # noqa: B009

    @pytest.mark.parametrize("topic", names(PAYMENT))
    def test_of_payment_topics_are_the_reservation(self, topic: str) -> None:
        m = sample(CATALOG[BY_NAME[topic].messages[0]], reservation_id="r1.abc.def")
        assert key_of(topic, m) == b"r1.abc.def"

    @pytest.mark.parametrize("topic", names(CONCERT))
    def test_of_concert_topics_are_the_concert(self, topic: str) -> None:
        m = sample(CATALOG[BY_NAME[topic].messages[0]], concert_id="c-9")
        assert key_of(topic, m) == b"c-9"


# What services.reservation.core.decide can return, and the payment service's results.
SEAT_AGENT_FACTS = ("SeatHeld", "ReservationRejected", "SeatReleased", "SeatConfirmed")
SEAT_AGENT_COMMANDS = ("RefundPayment",)
PAYMENT_RESULTS = ("PaymentCompleted", "PaymentFailed", "PaymentRefunded")


class TestTopicCatalog:
    def test_carries_only_messages_of_the_event_catalog(self) -> None:
        carried = {m for spec in topics.CATALOG for m in spec.messages}
        assert carried <= set(CATALOG)

    def test_puts_each_message_type_on_one_topic(self) -> None:
        counts = Counter(m for spec in topics.CATALOG for m in spec.messages)
        assert set(counts.values()) == {1}

    @pytest.mark.parametrize("name", SEAT_AGENT_FACTS + SEAT_AGENT_COMMANDS)
    def test_has_a_topic_for_everything_the_seat_agent_publishes(self, name: str) -> None:
        spec = BY_NAME[TOPIC_OF[name]]
        assert spec.producer == "reservation (seat agent)" and name in spec.messages
        key_of(spec.name, sample(CATALOG[name]))  # the key can be read off the message

    def test_keeps_the_seat_agents_internal_refund_record_off_every_topic(self) -> None:
        assert "ReservationRefunded" not in TOPIC_OF

    @pytest.mark.parametrize("name", PAYMENT_RESULTS)
    def test_routes_payment_results_to_the_seat_agent(self, name: str) -> None:
        assert TOPIC_OF[name] in names(SEAT)

    def test_routes_refund_commands_to_the_payment_agent(self) -> None:
        assert TOPIC_OF["RefundPayment"] in names(PAYMENT)

    @pytest.mark.parametrize("name", ["SeatHeld", "SeatReleased", "SeatConfirmed"])
    def test_routes_seat_changes_to_the_seat_projection(self, name: str) -> None:
        assert TOPIC_OF[name] in consumed_by("seat_projection")


# --- reservation ids ----------------------------------------------------------------------------

IDS = ReservationIds(b"k" * 32)
ID_CHARS = string.ascii_letters + string.digits + "_.:-"
B64_CHARS = string.ascii_letters + string.digits + "-_"
# One id field as the HTTP API accepts it; 64-character ones are covered by TestLongestIds.
id_field = st.text(alphabet=ID_CHARS, min_size=1, max_size=63)


class TestReservationIdRoundTrip:
    @settings(max_examples=200, deadline=None)
    @given(id_field, id_field, id_field)
    def test_gives_back_the_seat_and_user_it_was_made_for(
        self, concert_id: str, seat_id: str, user_id: str
    ) -> None:
        ref = IDS.parse(IDS.new(concert_id, seat_id, user_id))
        assert ref is not None
        assert (ref.concert_id, ref.seat_id, ref.user_id) == (concert_id, seat_id, user_id)
        assert re.fullmatch(r"[0-9a-f]{16}", ref.nonce)

    def test_is_read_by_another_worker_sharing_the_secret(self) -> None:
        rid = IDS.new("c1", "A-1", "u1")
        assert ReservationIds(b"k" * 32).parse(rid) == IDS.parse(rid)


class TestLongestIds:
    def test_round_trip_when_every_field_has_the_longest_allowed_id(self) -> None:
        rid = IDS.new("c" * 64, "s" * 64, "u" * 64)
        ref = IDS.parse(rid)
        assert ref is not None
        assert (ref.concert_id, ref.seat_id, ref.user_id) == ("c" * 64, "s" * 64, "u" * 64)

    def test_round_trip_one_character_short_of_that(self) -> None:
        ref = IDS.parse(IDS.new("c" * 64, "s" * 64, "u" * 63))
        assert ref is not None and ref.user_id == "u" * 63


class TestMadeUpReservationIds:
    def test_an_id_signed_with_another_secret_is_refused(self) -> None:
        forged = ReservationIds(b"x" * 32).new("c1", "A-1", "u1")
        assert IDS.parse(forged) is None

    @settings(max_examples=200, deadline=None)
    @given(st.data())
    def test_an_id_with_any_payload_character_changed_is_refused(self, data: st.DataObject) -> None:
        rid = IDS.new("c1", "A-1", "u1", "same-key")  # the same id every example: stable draws
        prefix, payload, mac = rid.split(".")
        # every bit of every payload character but the last is read (the last may be padding)
        i = data.draw(st.integers(0, len(payload) - 2))
        other = data.draw(st.sampled_from(B64_CHARS).filter(lambda c: c != payload[i]))
        tampered = payload[:i] + other + payload[i + 1 :]
        assert IDS.parse(f"{prefix}.{tampered}.{mac}") is None

    def test_an_id_with_its_payload_swapped_for_another_seat_is_refused(self) -> None:
        mine = IDS.new("c1", "A-1", "u1").split(".")
        theirs = IDS.new("c1", "A-2", "u1").split(".")
        assert IDS.parse(f"{mine[0]}.{theirs[1]}.{mine[2]}") is None

    @pytest.mark.parametrize(
        "garbage",
        ["", "r1", "r1..", "r1.a.b", "r1.YQ.YQ", "r1.!!!.???", "r2.x.y", "x" * 400, "r1.é.ü"],
    )
    def test_garbage_is_refused(self, garbage: str) -> None:
        assert IDS.parse(garbage) is None

    def test_the_signed_id_of_another_version_is_refused(self) -> None:
        rid = IDS.new("c1", "A-1", "u1")
        assert IDS.parse("r2" + rid[2:]) is None

    @settings(max_examples=300, deadline=None)
    @given(st.text(max_size=320))
    def test_any_text_is_refused_without_an_error(self, text: str) -> None:
        assert IDS.parse(text) is None


class TestNewReservationIds:
    def test_are_unguessable_a_fresh_one_every_time(self) -> None:
        made = {IDS.new("c1", "A-1", "u1") for _ in range(50)}
        assert len(made) == 50

    def test_are_the_same_for_the_same_idempotency_key(self) -> None:
        assert IDS.new("c1", "A-1", "u1", "key-1") == IDS.new("c1", "A-1", "u1", "key-1")

    def test_differ_for_different_idempotency_keys(self) -> None:
        assert IDS.new("c1", "A-1", "u1", "key-1") != IDS.new("c1", "A-1", "u1", "key-2")

    def test_differ_for_the_same_key_on_another_seat_or_user(self) -> None:
        ids = {
            IDS.new("c1", "A-1", "u1", "key-1"),
            IDS.new("c1", "A-2", "u1", "key-1"),
            IDS.new("c1", "A-1", "u2", "key-1"),
        }
        assert len(ids) == 3

    def test_cannot_be_predicted_from_the_idempotency_key_without_the_secret(self) -> None:
        other = ReservationIds(b"x" * 32)
        assert IDS.new("c1", "A-1", "u1", "key-1") != other.new("c1", "A-1", "u1", "key-1")


class TestPaymentIds:
    def test_are_the_same_for_the_same_reservation(self) -> None:
        rid = IDS.new("c1", "A-1", "u1")
        assert payment_id_for(rid) == payment_id_for(rid)
        assert re.fullmatch(r"p1\.[0-9a-f]{24}", payment_id_for(rid))

    def test_differ_between_reservations(self) -> None:
        rids = {IDS.new("c1", "A-1", "u1") for _ in range(20)}
        assert len({payment_id_for(rid) for rid in rids}) == 20
