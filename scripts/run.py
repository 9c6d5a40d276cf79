#!/usr/bin/env python3
"""`make run`: the broker plus the four services, each on its port; Ctrl-C stops everything cleanly.

Ports: REGISTRY_PORT (8001), MATCHING_PORT (8002), EVENTS_PORT (8003), NOTIFY_PORT (8004), KAFKA_PORT (9092).
Databases: SQLite files under .local/db (override with <SERVICE>_DATABASE_URL). With KAFKA_BOOTSTRAP_SERVERS set,
that broker is used and none is started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

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
    kafka_port = int(env.get("KAFKA_PORT", "9092"))
    if not env.get("KAFKA_BOOTSTRAP_SERVERS"):
        subprocess.run([sys.executable, "scripts/broker.py", "start", "--port", str(kafka_port)], check=True)
        env["KAFKA_BOOTSTRAP_SERVERS"] = f"127.0.0.1:{kafka_port}"
        started_broker = True
    env.setdefault("LOG_JSON", "false")
    env.setdefault("CORS_ORIGINS", DEV_PORTAL_ORIGINS)  # a portal under development on its own port may call the APIs
    procs: list[tuple[str, int, subprocess.Popen]] = []
    (ROOT / ".local" / "logs").mkdir(parents=True, exist_ok=True)
    for name, default_port in SERVICES:
        port = int(env.get(f"{name.upper()}_PORT", default_port))
        log = open(ROOT / ".local" / "logs" / f"{name}.log", "ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", f"{name}.main:create_app", "--host", "127.0.0.1",
             "--port", str(port), "--no-access-log"],
            env=env, stdout=log, stderr=subprocess.STDOUT,
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
        sys.exit(0)

    signal.signal(signal.SIGINT, shutdown)
    signal.signal(signal.SIGTERM, shutdown)
    print(f"broker    {env['KAFKA_BOOTSTRAP_SERVERS']}")
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
