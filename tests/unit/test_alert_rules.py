"""The Prometheus configuration and rules: valid for Debian's promtool, every alert unit-tested
(infra/prometheus/tests/rules_test.yml) and documented, every metric they read exported."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "infra" / "prometheus"
EXPORTED_ELSEWHERE = ("redis_", "up")  # the Redis exporter's, and Prometheus's own `up`
PROMQL_WORDS = {"sum", "max", "min", "rate", "and", "or", "unless"}


def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool comes from Debian's prometheus package (make deps installs it)"
    return path


def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load((PROM / "rules.yml").read_text())
    return [r for group in doc["groups"] for r in group["rules"]]


def alerts() -> list[dict[str, Any]]:
    return [r for r in rules() if "alert" in r]


def check_config(path: Path) -> None:
    """promtool's check of a scrape configuration and the rule files it names."""
    run = subprocess.run(
        [promtool(), "check", "config", str(path)], capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_scrape_configuration_and_its_rules_are_valid() -> None:
    check_config(PROM / "prometheus.yml")


def test_every_alert_passes_its_unit_tests(tmp_path: Path) -> None:
    """The tests name each alert's summary; the runbook (static text) is added from the rule
    here, so it is written once."""
    runbook = {r["alert"]: r["annotations"]["runbook"] for r in alerts()}
    tests = yaml.safe_load((PROM / "tests" / "rules_test.yml").read_text())
    for test in tests["tests"]:
        for case in test.get("alert_rule_test", []):
            for alert in case["exp_alerts"]:
                alert.setdefault("exp_annotations", {})["runbook"] = runbook[case["alertname"]]
    tests["rule_files"] = [str(PROM / "rules.yml")]
    (tmp_path / "rules_test.yml").write_text(yaml.safe_dump(tests))
    run = subprocess.run(
        [promtool(), "test", "rules", "rules_test.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_every_alert_is_tested_firing() -> None:
    tests = yaml.safe_load((PROM / "tests" / "rules_test.yml").read_text())
    fired = {
        case["alertname"]
        for test in tests["tests"]
        for case in test.get("alert_rule_test", [])
        if case["exp_alerts"]
    }
    assert fired == {r["alert"] for r in alerts()}


@pytest.mark.parametrize("alert", [r["alert"] for r in alerts()])
def test_every_alert_has_a_summary_a_runbook_and_a_severity(alert: str) -> None:
    (rule,) = [r for r in alerts() if r["alert"] == alert]
    assert rule["labels"]["severity"] in ("page", "warn")
    assert rule["annotations"]["summary"]
    assert len(rule["annotations"]["runbook"].split()) >= 10


def test_every_metric_the_rules_read_is_exported_by_a_service() -> None:
    recorded = {r["record"] for r in rules() if "record" in r}
    names: set[str] = set()
    for r in rules():
        expr = re.sub(r'"[^"]*"', "", r["expr"])  # label values
        expr = re.sub(r"\{[^}]*\}|\[[^]]*\]", "", expr)  # matchers and ranges
        expr = re.sub(r"\b(by|on|without|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
        names |= set(re.findall(r"\b[a-z_][a-z0-9_:]*\b", expr))
    names -= recorded | PROMQL_WORDS
    code = "\n".join(
        p.read_text() for d in ("shared", "services") for p in (ROOT / d).rglob("*.py")
    )
    missing = {
        n
        for n in names
        if not n.startswith(EXPORTED_ELSEWHERE) and f'"{n.removesuffix("_total")}' not in code
    }
    assert missing == set()


def test_the_kubernetes_scrape_configuration_is_valid(tmp_path: Path) -> None:
    (doc,) = yaml.safe_load_all((ROOT / "infra" / "k8s" / "prometheus.yaml").read_text())
    (tmp_path / "prometheus.yml").write_text(doc["data"]["prometheus.yml"])
    (tmp_path / "rules.yml").write_text((PROM / "rules.yml").read_text())
    check_config(tmp_path / "prometheus.yml")
