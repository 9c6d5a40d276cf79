# The front door. `make help` lists the targets.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYPROJECTS := $(wildcard libs/*/pyproject.toml services/*/pyproject.toml) requirements-dev.txt $(wildcard deploy/requirements-ops.txt)
ROLE ?= office_admin
INSTITUTION ?=

.PHONY: help install broker compose-secrets run test test-unit chaos fuzz load bench lint token seed clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): $(PYPROJECTS)
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@mkdir -p .local
	@echo "install: Python packages into $(VENV) (log in .local/pip.log) ..."
	@{ $(BIN)/pip install --upgrade pip && \
	   $(BIN)/pip install -e libs/common $(foreach s,$(wildcard services/*/pyproject.toml),-e $(dir $(s))) \
	     -r requirements-dev.txt $(patsubst %,-r %,$(wildcard deploy/requirements-ops.txt)); } > .local/pip.log 2>&1 \
	   || { tail -30 .local/pip.log; exit 1; }
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install the services, libs/common and the dev tools
	@$(PY) scripts/broker.py fetch

broker: install ## start only the Kafka broker (127.0.0.1:9092, SASL_SSL; credentials in .local/kafka/security)
	@$(BIN)/python scripts/broker.py start

compose-secrets: install ## Kafka CA, keystore, passwords and ACL plan for deploy/compose.yaml (.local/compose/kafka)
	@$(BIN)/python scripts/kafka_access.py --compose-secrets

run: install ## broker + the four services (registry 8001, matching 8002, events 8003, notify 8004)
	@$(BIN)/python scripts/run.py

test: install ## the whole suite against a real Kafka broker and PostgreSQL
	@bash scripts/postgres.sh
	@$(BIN)/python -m pytest $(PYTEST_ARGS)

test-unit: install ## pure domain tests only (no broker, no database)
	@$(BIN)/python -m pytest -m unit $(PYTEST_ARGS)

chaos: install ## fault injection under load: broker stop, kill -9, PostgreSQL restart, with a loss checker
	@bash scripts/postgres.sh
	@$(BIN)/python -m pytest -m chaos -s $(PYTEST_ARGS)

fuzz: install ## schemathesis over the four OpenAPI documents with every role's token (FUZZ_EXAMPLES=50 by default)
	@bash scripts/postgres.sh
	@FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-50} $(BIN)/python -m pytest -m fuzz $(PYTEST_ARGS)

load: install ## mixed open-loop load on the four services as processes (LOAD_RATE=100 req/s, LOAD_SECONDS=60); load/results
	@bash scripts/postgres.sh
	@$(BIN)/python -m load $(LOAD_ARGS)

bench: install ## benchmarks: figures printed, JSON written to bench/results
	@bash scripts/postgres.sh
	@$(BIN)/python -m bench $(BENCH_ARGS)

lint: install ## ruff over everything
	@$(BIN)/ruff check libs services tests bench scripts load deploy conftest.py

seed: install ## demo data into a running platform (make run first): the seeds' institutions plus GENERATED=200 more
	@$(BIN)/python -m registry.seed --url http://127.0.0.1:$${REGISTRY_PORT:-8001} --generated $${GENERATED:-200}

token: install ## print a development JWT on the last line: make token ROLE=institution_admin INSTITUTION=<id>
	@$(BIN)/python -m common.auth --role $(ROLE) $(if $(INSTITUTION),--institution $(INSTITUTION))

clean: ## remove local databases, broker data and logs (keeps the fetched Kafka jars)
	rm -rf .local/db .local/kafka/data .local/logs .local/kafka/security
