# The front door. `make help` lists the targets.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYPROJECTS := $(wildcard libs/*/pyproject.toml services/*/pyproject.toml) requirements-dev.txt $(wildcard deploy/requirements-ops.txt)
# Every third-party package at the version `make lock` last resolved: `make install`, CI and the images install these.
CONSTRAINTS := constraints.txt
LOCK_VENV := .local/lock-venv
REQUIREMENTS = libs/common $(foreach s,$(wildcard services/*/pyproject.toml),$(dir $(s))) -r requirements-dev.txt \
	$(patsubst %,-r %,$(wildcard deploy/requirements-ops.txt))
ROLE ?= office_admin
INSTITUTION ?=

.PHONY: help install lock broker postgres cluster cluster-faults compose-secrets k8s-dev-secrets run test test-unit chaos fuzz load bench lint token seed clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): $(PYPROJECTS) $(CONSTRAINTS)
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@mkdir -p .local
	@echo "install: Python packages into $(VENV), pinned by $(CONSTRAINTS) (log in .local/pip.log) ..."
	@{ $(BIN)/pip install --upgrade pip && \
	   $(BIN)/pip install -c $(CONSTRAINTS) -e libs/common $(foreach s,$(wildcard services/*/pyproject.toml),-e $(dir $(s))) \
	     -r requirements-dev.txt $(patsubst %,-r %,$(wildcard deploy/requirements-ops.txt)); } > .local/pip.log 2>&1 \
	   || { tail -30 .local/pip.log; exit 1; }
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install the services, libs/common and the dev tools
	@$(PY) scripts/broker.py fetch

lock: ## re-resolve every dependency range into constraints.txt, from a clean install (then commit it)
	@rm -rf $(LOCK_VENV) && $(PY) -m venv $(LOCK_VENV)
	@echo "lock: resolving into a clean $(LOCK_VENV) (log in .local/lock.log) ..."
	@{ $(LOCK_VENV)/bin/pip install --upgrade pip && $(LOCK_VENV)/bin/pip install $(REQUIREMENTS); } \
	   > .local/lock.log 2>&1 || { tail -30 .local/lock.log; exit 1; }
	@{ echo "# Every third-party Python package of the platform, pinned: written by \`make lock\` (pip freeze of a clean"; \
	   echo "# install of libs/common, services/*, requirements-dev.txt and deploy/requirements-ops.txt on Python"; \
	   echo "# $$($(LOCK_VENV)/bin/python -c 'import platform; print(platform.python_version())')). Used as pip's -c by make install, CI and deploy/Dockerfile; do not edit by hand."; \
	   $(LOCK_VENV)/bin/pip freeze --all --exclude-editable | grep -vE '^(cjrh-[a-z]+ @ |pip==|setuptools==|wheel==)'; } > $(CONSTRAINTS)
	@rm -rf $(LOCK_VENV)
	@echo "lock: $$(grep -c '==' $(CONSTRAINTS)) packages pinned in $(CONSTRAINTS)"

broker: install ## start only the Kafka broker (127.0.0.1:9092, SASL_SSL; credentials in .local/kafka/security)
	@$(BIN)/python scripts/broker.py start

compose-secrets: install ## Kafka CA, keystore, passwords and ACL plan for deploy/compose.yaml (.local/compose/kafka)
	@$(BIN)/python scripts/kafka_access.py --compose-secrets

k8s-dev-secrets: install ## every Secret deploy/k8s/overlays/dev references (Kafka, JWT, PostgreSQL) in .local/k8s-dev
	@$(BIN)/python scripts/kafka_access.py --k8s-dev-secrets

postgres: install ## start only the checkout's PostgreSQL (127.0.0.1:55432, data in .local/pg) in the background
	@$(BIN)/python scripts/pg.py start

cluster: install ## a three-node Kafka cluster (SASL_SSL, ACLs, replication 3, min ISR 2) on 127.0.0.1:19092,19094,19096
	@$(BIN)/python scripts/cluster.py start

cluster-faults: install ## the full fault suite on a three-node cluster with replicated services (make test runs a short one)
	@CLUSTER_FULL=1 $(BIN)/python -m pytest -m cluster -s $(PYTEST_ARGS)

run: install ## PostgreSQL + broker + the four services (registry 8001, matching 8002, events 8003, notify 8004)
	@$(BIN)/python scripts/run.py

test: install ## the whole suite against a real Kafka broker and the embedded PostgreSQL
	@$(BIN)/python -m pytest $(PYTEST_ARGS)

test-unit: install ## pure domain tests only (no broker, no database)
	@$(BIN)/python -m pytest -m unit $(PYTEST_ARGS)

chaos: install ## fault injection under load: broker stop, kill -9, PostgreSQL restart, with a loss checker
	@$(BIN)/python -m pytest -m chaos -s $(PYTEST_ARGS)

fuzz: install ## schemathesis over the four OpenAPI documents with every role's token (FUZZ_EXAMPLES=50 by default)
	@FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-50} $(BIN)/python -m pytest -m fuzz $(PYTEST_ARGS)

load: install ## mixed open-loop load on the four services as processes (LOAD_RATE=100 req/s, LOAD_SECONDS=60); load/results
	@$(BIN)/python -m load $(LOAD_ARGS)

bench: install ## benchmarks: figures printed, JSON written to bench/results
	@$(BIN)/python -m bench $(BENCH_ARGS)

lint: install ## ruff over everything
	@$(BIN)/ruff check libs services tests bench scripts load deploy conftest.py

seed: install ## demo data into a running platform (make run first): the seeds' institutions plus GENERATED=200 more
	@DEV_MODE=$${DEV_MODE:-true} $(BIN)/python -m registry.seed --url http://127.0.0.1:$${REGISTRY_PORT:-8001} --generated $${GENERATED:-200}

token: install ## print a development JWT on the last line: make token ROLE=institution_admin INSTITUTION=<id>
	@DEV_MODE=$${DEV_MODE:-true} $(BIN)/python -m common.auth --role $(ROLE) $(if $(INSTITUTION),--institution $(INSTITUTION))

clean: ## stop PostgreSQL; remove its data, broker data and logs (keeps the fetched Kafka jars)
	-@test -x $(BIN)/python && $(BIN)/python scripts/pg.py stop
	rm -rf .local/pg .local/kafka/data .local/logs .local/kafka/security
