#!/usr/bin/env python3
"""`make run`: PostgreSQL, the broker and the four services, each on its port; Ctrl-C stops everything cleanly.

Ports: REGISTRY_PORT (8001), MATCHING_PORT (8002), EVENTS_PORT (8003), NOTIFY_PORT (8004), KAFKA_PORT (9092),
PG_PORT (55432). Databases: one per service on the checkout's embedded PostgreSQL (scripts/pg.py, data in .local/pg),
created on first start; <SERVICE>_DATABASE_URL points a service at any other server instead. With
KAFKA_BOOTSTRAP_SERVERS set, that broker is used (with the KAFKA_SECURITY_PROTOCOL / KAFKA_SASL_* / KAFKA_SSL_* settings
given) and none is started; otherwise the secured development broker starts and each service connects as its own
principal, with the password scripts/broker.py generated for it in .local/kafka/security/credentials.json.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from common.config import LOCAL_PG_PORT
from common.server import uvicorn_command

ROOT = Path(__file__).resolve().parent.parent
SERVICES = [("registry", 8001), ("matching", 8002), ("events", 8003), ("notify", 8004)]


def _wait_ready(url: str, proc: subprocess.Popen, timeout: float = 90) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.3)
    return False


DEV_PORTAL_ORIGINS = ",".join(f"http://{host}:{port}" for port in (3000, 5173, 8080) for host in ("localhost",
                                                                                                   "127.0.0.1"))


def main() -> None:
    """Start the broker and services, report where they listen, and supervise until interrupted."""
    os.chdir(ROOT)
    env = dict(os.environ)
    started_broker = False
    local_db = [name for name, _ in SERVICES if not env.get(f"{name.upper()}_DATABASE_URL")]
    pg_was_up = subprocess.run([sys.executable, "scripts/pg.py", "status"], capture_output=True).returncode == 0
    if local_db:
        subprocess.run([sys.executable, "scripts/pg.py", "start", "--databases", *local_db], check=True)
        port = env.get("PG_PORT", str(LOCAL_PG_PORT))
        for name in local_db:
            env[f"{name.upper()}_DATABASE_URL"] = f"postgresql://postgres:postgres@127.0.0.1:{port}/{name}"
    kafka_port = int(env.get("KAFKA_PORT", "9092"))
    if not env.get("KAFKA_BOOTSTRAP_SERVERS"):
        subprocess.run([sys.executable, "scripts/broker.py", "start", "--port", str(kafka_port)], check=True)
        env["KAFKA_BOOTSTRAP_SERVERS"] = f"127.0.0.1:{kafka_port}"
        started_broker = True
    env.setdefault("LOG_JSON", "false")
    env.setdefault("DEV_MODE", "true")  # the public development secret and `make token`'s tokens are accepted
    env.setdefault("CORS_ORIGINS", DEV_PORTAL_ORIGINS)  # a portal under development on its own port may call the APIs
    procs: list[tuple[str, int, subprocess.Popen]] = []
    (ROOT / ".local" / "logs").mkdir(parents=True, exist_ok=True)
    creds = json.loads((ROOT / ".local/kafka/security/credentials.json").read_text()) if started_broker else None
    for name, default_port in SERVICES:
        port = int(env.get(f"{name.upper()}_PORT", default_port))
        service_env = dict(env)
        if creds:  # the service's own principal: it may write only what it publishes, read only what it consumes
            service_env.update({
                "KAFKA_SECURITY_PROTOCOL": creds["protocol"], "KAFKA_SASL_MECHANISM": creds["mechanism"],
                "KAFKA_SASL_USERNAME": name, "KAFKA_SASL_PASSWORD": creds["principals"][name],
                "KAFKA_SSL_CAFILE": creds["cafile"]})
        log = open(ROOT / ".local" / "logs" / f"{name}.log", "ab")
        proc = subprocess.Popen(
            uvicorn_command(name, host="127.0.0.1", port=port),
            env=service_env, stdout=log, stderr=subprocess.STDOUT,
        )
        procs.append((name, port, proc))

    def shutdown(*_):
        print("\nstopping services ...", flush=True)
        for _, _, p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for _, _, p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        if started_broker:
            subprocess.run([sys.executable, "scripts/broker.py", "stop"], check=False)
        if local_db and not pg_was_up:
            subprocess.run([sys.executable, "scripts/pg.py", "stop"], check=False)
        sys.exit(0)

    signal.signal(signal.SIGINT, shutdown)
    signal.signal(signal.SIGTERM, shutdown)
    print(f"broker    {env['KAFKA_BOOTSTRAP_SERVERS']}"
          + ("  SASL_SSL; `python scripts/broker.py env <principal>` prints a client's settings" if creds else ""))
    if local_db:
        pg_port = env.get("PG_PORT", LOCAL_PG_PORT)
        print(f"postgres  127.0.0.1:{pg_port} (databases {', '.join(local_db)}; data .local/pg)")
    for name, port, proc in procs:
        ok = _wait_ready(f"http://127.0.0.1:{port}/readyz", proc)
        state = "ready" if ok else f"NOT READY (see .local/logs/{name}.log)"
        print(f"{name:<9} http://127.0.0.1:{port}  docs http://127.0.0.1:{port}/docs  [{state}]", flush=True)
    print("logs in .local/logs; a token: make token ROLE=office_admin; Ctrl-C stops everything", flush=True)
    while True:
        for name, _port, proc in procs:
            if proc.poll() is not None:
                print(f"{name} exited with code {proc.returncode}; see .local/logs/{name}.log", flush=True)
                shutdown()
        time.sleep(1)


if __name__ == "__main__":
    main()
