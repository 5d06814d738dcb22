# The front door: `make help` lists every target.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTEST := $(PY) -m pytest -p no:cacheprovider --durations=10

.DEFAULT_GOAL := help
.PHONY: help deps run test test-unit test-integration test-e2e lint fmt bench-queue bench-queue-workers bench-reservation bench-sse perf perf-queue perf-reservation perf-spike perf-soak perf-idle perf-smoke chaos chaos-smoke test-redis-cluster clean

help: ## List the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required"'
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { $(SUDO) apt-get update -qq && \
	  $(SUDO) apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.lock
	@touch $@

# Debian packages the embedded stack needs, by the command that shows each is there.
APT_NEEDS := redis-server:redis-server redis-sentinel:redis-sentinel java:openjdk-17-jre-headless mvn:maven \
  promtool:prometheus prometheus-redis-exporter:prometheus-redis-exporter \
  chromium:chromium

deps: $(VENV)/.installed ## Virtualenv (pinned deps); redis-server, Java, Maven, Chromium if missing; Kafka
	@missing=$$(for need in $(APT_NEEDS); do command -v $${need%%:*} >/dev/null || echo $${need#*:}; done); \
	if [ -n "$$missing" ]; then echo "installing Debian's" $$missing; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $$missing >/dev/null; fi
	@fc-list :lang=ko 2>/dev/null | grep -q . || { echo "installing Debian's fonts-nanum (Korean text in the page's browser tests)"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq fonts-nanum >/dev/null; }
	@$(PY) -m infra.kafka_broker >/dev/null  # resolves the pinned Kafka from Maven Central, once

run: deps ## Start Redis, Kafka (KAFKA_CLUSTER=3: three nodes) and every service (Ctrl-C stops all)
	$(PY) -m infra.run

test: deps lint ## Lint, then the whole suite: unit, integration and e2e against real servers
	$(PYTEST) tests --ignore=tests/chaos

test-unit: deps ## Unit tests only (no servers)
	$(PYTEST) tests/unit

test-integration: deps ## Integration tests (real Redis and broker, started for the session)
	$(PYTEST) tests/integration

test-redis-cluster: deps ## The integration suite against a Redis Cluster (3 primaries, 3 replicas)
	REDIS_TOPOLOGY=cluster $(PYTEST) tests/integration

test-e2e: deps ## End-to-end tests through make run's start-up path
	$(PYTEST) tests/e2e

lint: deps ## ruff (lint + format check) and mypy (strict) on the project's code
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

fmt: deps ## Apply ruff's fixes and formatting
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

bench-queue: perf-queue ## = perf-queue (the harness's queue scenario, with the aiohttp ceiling)

bench-queue-workers: deps ## Queue per operation, 1 and 2 worker processes, vs bare aiohttp (k6)
	$(PY) -m perf.harness queue-ops

bench-sse: deps ## Fans following their place over Server-Sent Events: memory per stream, fan-out time
	$(PY) -m perf.harness sse

bench-reservation: perf-reservation ## = perf-reservation (with the raw aiokafka ceiling)

perf: deps ## Every load-test scenario (queue, queue-ops, reservation, spike, soak, sse) and the report
	$(PY) -m perf.harness all

perf-queue: deps ## Load test: queue at 1,000 flows/s, then a ramp to its maximum
	$(PY) -m perf.harness queue

perf-reservation: deps ## Load test: reserve+pay at 500 flows/s, then a ramp to the maximum
	$(PY) -m perf.harness reservation

perf-spike: deps ## Load test: 50,000 fans in 10 s for 5,000 seats
	$(PY) -m perf.harness spike

perf-soak: deps ## Load test: 10 minutes at half the maximum
	$(PY) -m perf.harness reservation soak

perf-idle: deps ## Idle CPU of every process of the stack (goal: a Faust worker under 2 % of a core)
	$(PY) -m perf.idle

perf-smoke: deps ## Every scenario at tiny rates (~1 min): the harness works, the report is sane
	$(PY) -m perf.harness --smoke all
	$(PY) -m perf.check_report perf/reports/latest-smoke

chaos: deps ## The failure matrix at full size (~15 min): figures in perf/reports/<ts>-chaos/
	$(PY) -m perf.chaos

chaos-smoke: deps ## Every failure case at smoke size, as tests (~8 min; CI runs it)
	$(PYTEST) tests/chaos

clean: ## Remove the virtualenv, the Kafka download, caches and run data
	rm -rf $(VENV) .run .cache .mypy_cache .ruff_cache .pytest_cache
