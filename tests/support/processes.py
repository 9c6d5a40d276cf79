"""Services as real OS processes (uvicorn), for fault injection: start, kill -9, restart, wait until ready."""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from common.server import uvicorn_command
from tests.support.harness import (
    ROOT,
    current_group_suffix,
    free_port,
    kafka_settings,
    principal_security,
    start_groups_at_end,
)


@dataclass
class ServiceProcess:
    """One uvicorn process of a service (an API, a worker, or both at once)."""

    service: str
    role: str
    env: dict
    log: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None
    restarts: int = 0

    @property
    def url(self) -> str:
        """Base URL of the process."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the process (its output appended to `log`)."""
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                uvicorn_command(self.service, host="127.0.0.1", port=self.port),
                env=self.env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
            )

    def kill9(self) -> None:
        """SIGKILL: no shutdown hooks, no flushing, as a crash would."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def restart(self) -> None:
        """Start again after a kill."""
        self.restarts += 1
        self.start()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 20 s."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def wait_alive(self, timeout: float = 60) -> None:
        """Block until /healthz answers."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc and self.proc.poll() is not None:
                raise RuntimeError(f"{self.service}/{self.role} exited with {self.proc.returncode}; see {self.log}")
            time.sleep(0.2)
        raise TimeoutError(f"{self.service}/{self.role} not alive after {timeout}s")


async def isolate_groups(service: str, *, bootstrap: str, suffix: str) -> None:
    """Start the service's consumer groups (with `suffix`) at the topics' current ends, as in-process tests do."""
    main = importlib.import_module(f"{service}.main")
    settings_cls = importlib.import_module(f"{service}.config").Settings
    settings = settings_cls(kafka_bootstrap_servers=bootstrap, consumer_group_suffix=suffix,
                            **kafka_settings(principal_security(bootstrap, service)))
    await start_groups_at_end(main.create_app(settings), settings)


def service_env(service: str, *, db_url: str, bootstrap: str, run_workers: bool, **extra: str) -> dict:
    """Environment for one service process (its consumer groups carry the current test's suffix), connecting to
    Kafka as the service's own principal."""
    prefix = service.upper()
    env = dict(os.environ)
    env.update(principal_security(bootstrap, service).as_env())
    env.update({
        "CONSUMER_GROUP_SUFFIX": current_group_suffix.get(),
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap, f"{prefix}_DATABASE_URL": db_url,
        "RUN_WORKERS": "true" if run_workers else "false", "LOG_LEVEL": "WARNING",
        f"{prefix}_RUN_MIGRATIONS": "true", "OUTBOX_SWEEP_SECONDS": "0.5", "WRITE_RATE_PER_SECOND": "0",
        "DEV_MODE": "true",  # development tokens; a service outside development mode refuses them
    })
    env.update(extra)
    return env
