"""Every HTTP API against its published OpenAPI document (services/<name>/openapi.json, served
at /openapi.json): schemathesis generates at least 1,000 requests per API, valid and invalid,
and every answer must be documented, never a 5xx, every error in the documented envelope. Then
the abuse cases: forged and tampered credentials, other people's tokens, hostile ids, concurrent
duplicates, the admin endpoint without its token, and no secret in any answer or log line."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator
from typing import Any

import hypothesis
import pytest
import pytest_asyncio
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from infra.stack import ROOT
from shared.identity import mint
from tests.support.pipeline import ADMIN_TOKEN, Pipeline, buyers, gather_limited, pipeline
from tests.support.queue import IDENTITY_SECRET, SECRET

pytestmark = pytest.mark.slow
SERVICES = ("queue", "reservation", "seat_projection", "payment")
REQUESTS_PER_API = 1000
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def document(service: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((ROOT / "services" / service / "openapi.json").read_text())
    return doc


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def shared_pipeline(
    tmp_path_factory: pytest.TempPathFactory, redis_url: str, kafka_brokers: str
) -> AsyncIterator[Pipeline]:
    async with pipeline(tmp_path_factory.mktemp("contract"), redis_url, kafka_brokers) as p:
        yield p


def fuzz(base_url: str, doc: dict[str, Any], credentials: dict[str, str]) -> int:
    """REQUESTS_PER_API generated requests spread over the document's operations, half valid
    and half invalid, half of each with real credentials; returns how many were sent. A failed
    check raises (with the request that failed, shrunk by Hypothesis)."""
    schema = schemathesis.openapi.from_dict(doc)
    operations = [result.ok() for result in schema.get_all_operations()]
    batches = [
        (op, mode, headers)
        for op in operations
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
        for headers in ({}, credentials)
    ]
    per_batch = math.ceil(REQUESTS_PER_API / len(batches))
    sent = 0
    with requests.Session() as session:
        while sent < REQUESTS_PER_API:  # another round when invalid requests ran out
            for op, mode, headers in batches:
                settings = hypothesis.settings(
                    max_examples=per_batch,
                    database=None,
                    deadline=None,
                    phases=[Phase.generate, Phase.shrink],
                    suppress_health_check=list(HealthCheck),
                )

                @settings
                @given(case=op.as_strategy(generation_mode=mode, headers=headers or None))
                def one(case: schemathesis.Case) -> None:
                    nonlocal sent
                    response = case.call(base_url=base_url, session=session, timeout=15)
                    sent += 1
                    case.validate_response(response, checks=CHECKS)

                try:
                    one()
                except Unsatisfiable:
                    if mode is GenerationMode.POSITIVE:
                        raise
                    # nothing of this operation can be invalid (no parameters, no body)
    return sent


class TestTheDocuments:
    @pytest.mark.parametrize("service", SERVICES)
    async def test_each_service_serves_its_document(
        self, shared_pipeline: Pipeline, service: str
    ) -> None:
        """Each service also refuses to start when its routes and its document differ
        (shared.http.publish_openapi), so a running service is its own proof."""
        status, served = await shared_pipeline.call("GET", service, "/openapi.json")
        assert status == 200 and served == document(service)


class TestGeneratedRequests:
    @pytest.mark.parametrize("service", SERVICES)
    async def test_a_thousand_generated_requests_get_only_documented_answers_and_no_5xx(
        self, shared_pipeline: Pipeline, service: str
    ) -> None:
        p = shared_pipeline
        concert = await p.create_concert(seats=50)
        ((user, token),) = await buyers(p, concert, 1)
        credentials = {
            "queue": {"Authorization": f"Bearer {mint(IDENTITY_SECRET, user)}"},
            "reservation": {"Queue-Token": token, "Authorization": f"Bearer {ADMIN_TOKEN}"},
        }.get(service, {})
        sent = await asyncio.to_thread(fuzz, p.urls[service], document(service), credentials)
        assert sent >= REQUESTS_PER_API


class TestAbuse:
    async def test_hostile_ids_and_concurrent_duplicates_get_their_documented_answers(
        self, shared_pipeline: Pipeline
    ) -> None:
        p = shared_pipeline
        concert = await p.create_concert(seats=10)
        ((user, token),) = await buyers(p, concert, 1)
        auth = {"Queue-Token": token}
        for hostile in ("a\x00b", "a\nb", "x" * 65, "x" * 20_000, "../../etc", "a b", "é"):
            body = {"concert_id": concert, "seat_id": "1", "user_id": hostile}
            refused = {(400, "invalid_request"), (413, "payload_too_large")}  # over 16 KiB: 413
            status, answer = await p.call("POST", "reservation", "/v1/reservations", json=body)
            assert (status, answer["error"]["code"]) in refused, hostile[:20]
            body = {"concert_id": hostile}
            status, answer = await p.call(
                "POST", "queue", "/v1/queue/tokens", json=body, headers=fanned(user)
            )
            assert (status, answer["error"]["code"]) in refused, hostile[:20]
        for path in ("/v1/reservations/%00x", "/v1/reservations/" + "r" * 5000):
            status, answer = await p.call("GET", "reservation", path, headers=auth)
            assert status in (400, 404) and "error" in answer, path
        status, answer = await p.call(
            "GET", "reservation", "/v1/reservations/x", headers={"Queue-Token": "t" * 9000}
        )
        assert status in (400, 401, 414) and "error" in answer

        # Twenty concurrent tries with one Idempotency-Key are one reservation, one hold slot.
        body = {"concert_id": concert, "seat_id": "3", "user_id": user}
        headers = {**auth, "Idempotency-Key": "same-click"}
        answers = await gather_limited(
            [
                p.call("POST", "reservation", "/v1/reservations", json=body, headers=headers)
                for _ in range(20)
            ]
        )
        assert {s for s, _ in answers} == {202}
        assert len({a["reservation_id"] for _, a in answers}) == 1
        for seat in ("4", "5", "6"):  # the limit is 4: three more fit, so only one was taken
            status, _ = await p.reserve(token, concert, seat, user)
            assert status == 202, seat

    async def test_no_secret_reaches_an_answer_or_a_log_line(
        self, shared_pipeline: Pipeline
    ) -> None:
        p = shared_pipeline
        answers = [
            await p.call("POST", "reservation", "/v1/concerts", json={"concert_id": "x"}),
            await p.call("GET", "queue", "/v1/queue/tokens/forged.token"),
            await p.call("GET", "reservation", "/metrics"),
        ]
        logs = "".join(
            log.read_text(errors="replace")
            for service in p.stack.services
            for log in service.logs
            if log.exists()
        )
        for secret in (ADMIN_TOKEN, SECRET, IDENTITY_SECRET):
            assert secret not in logs
            assert all(secret not in json.dumps(body) for _, body in answers)


def fanned(user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint(IDENTITY_SECRET, user)}"}
