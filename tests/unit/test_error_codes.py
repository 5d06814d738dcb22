"""One table of error codes (shared/errors.py: ERROR_CODES): complete, truthful about statuses,
every code in it produced somewhere, and published in every service's OpenAPI document."""

from __future__ import annotations

import importlib
import json
import pkgutil
from pathlib import Path

import pytest

import services
import shared
from shared.errors import ERROR_CODES, ServiceError

ROOT = Path(__file__).resolve().parents[2]


def every_error_class() -> set[type[ServiceError]]:
    for package in (shared, services):
        for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if not module.name.endswith("__main__"):
                importlib.import_module(module.name)
    found: set[type[ServiceError]] = set()
    todo = [ServiceError]
    while todo:
        cls = todo.pop()
        found.add(cls)
        todo.extend(cls.__subclasses__())
    return found


def test_every_error_class_has_its_code_and_status_in_the_table() -> None:
    wrong = {
        cls.__name__: (cls.code, cls.status)
        for cls in every_error_class()
        if ERROR_CODES.get(cls.code, (None,))[0] != cls.status
    }
    assert wrong == {}


def test_every_code_in_the_table_is_produced_by_the_code() -> None:
    sources = "\n".join(
        p.read_text()
        for d in ("shared", "services")
        for p in (ROOT / d).rglob("*.py")
        if p.name != "errors.py"
    )
    errors_py = (ROOT / "shared" / "errors.py").read_text().split("ERROR_CODES")[0]
    unused = [c for c in ERROR_CODES if f'"{c}"' not in sources + errors_py]
    assert unused == []


@pytest.mark.parametrize("service", ["queue", "reservation", "payment", "seat_projection"])
def test_every_openapi_document_publishes_the_table(service: str) -> None:
    doc = json.loads((ROOT / "services" / service / "openapi.json").read_text())
    published = {
        c: (e["status"], e["meaning"]) for c, e in doc["components"]["x-error-codes"].items()
    }
    assert published == ERROR_CODES
