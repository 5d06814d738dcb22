"""One table of error codes at the HTTP edge (shared/http.py: ERROR_CODES): every domain error
(shared/errors.py, the only place errors are defined) has its code in it, every code in it is
produced somewhere, and it is published in every service's OpenAPI document."""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
from pathlib import Path

import pytest

import services
import shared
from shared.errors import DomainError
from shared.http import ERROR_CODES

ROOT = Path(__file__).resolve().parents[2]


def every_error_class() -> set[type[DomainError]]:
    for package in (shared, services):
        for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if not module.name.endswith("__main__"):
                importlib.import_module(module.name)
    found: set[type[DomainError]] = set()
    todo = [DomainError]
    while todo:
        cls = todo.pop()
        found.add(cls)
        todo.extend(cls.__subclasses__())
    return found


def test_every_error_class_has_its_code_in_the_table_and_is_defined_in_one_place() -> None:
    classes = every_error_class()
    assert {cls.__name__ for cls in classes if cls.code not in ERROR_CODES} == set()
    assert {cls.__module__ for cls in classes} == {"shared.errors"}


def test_an_error_leaves_with_the_tables_status_and_the_headers_it_implies() -> None:
    from shared.errors import MethodNotAllowed, Overloaded, TokenGone
    from shared.http import domain_error_response

    gone = domain_error_response(TokenGone("the token ended", reason="expired"))
    assert gone.status == 410 and "Retry-After" not in gone.headers
    busy = domain_error_response(Overloaded("too busy", retry_after_s=5))
    assert busy.status == 503 and busy.headers["Retry-After"] == "5"
    wrong = domain_error_response(MethodNotAllowed("use POST", allow="POST"))
    assert wrong.status == 405 and wrong.headers["Allow"] == "POST"


def test_every_code_in_the_table_is_produced_by_the_code() -> None:
    sources = "\n".join(
        p.read_text()
        for d in ("shared", "services")
        for p in (ROOT / d).rglob("*.py")
        if p.name != "http.py"
    )
    table = re.compile(r"^ERROR_CODES: dict.*?^}$", re.S | re.M)  # the table names every code
    http_py = table.sub("", (ROOT / "shared" / "http.py").read_text())
    unused = [c for c in ERROR_CODES if f'"{c}"' not in sources + http_py]
    assert unused == []


@pytest.mark.parametrize("service", ["queue", "reservation", "payment", "seat_projection"])
def test_every_openapi_document_publishes_the_table(service: str) -> None:
    doc = json.loads((ROOT / "services" / service / "openapi.json").read_text())
    published = {
        c: (e["status"], e["meaning"]) for c, e in doc["components"]["x-error-codes"].items()
    }
    assert published == ERROR_CODES
