"""How every process of a service is served: one uvicorn command line for containers, `make run` and the tests."""

from __future__ import annotations

import sys

# Longer than any proxy or client in front keeps an idle connection to us before reusing it: ingress-nginx's upstream
# keep-alive is 60 s, httpx's pool 5 s. With uvicorn's default of 5 s the server closed connections that a proxy was
# about to reuse, and that request failed (a 502 behind nginx; a ReadError in the cluster fault suite's client).
KEEP_ALIVE_SECONDS = 75
# Requests in flight get this long to finish after SIGTERM (inside the pods' terminationGracePeriodSeconds).
GRACEFUL_SHUTDOWN_SECONDS = 20


def uvicorn_command(service: str, *, host: str, port: int, behind_proxy: bool = False) -> list[str]:
    """The uvicorn command line serving `service`'s app factory on host:port (trusting X-Forwarded-* when
    `behind_proxy`)."""
    argv = [sys.executable, "-m", "uvicorn", "--factory", f"{service}.main:create_app", "--host", host,
            "--port", str(port), "--no-access-log", "--timeout-keep-alive", str(KEEP_ALIVE_SECONDS),
            "--timeout-graceful-shutdown", str(GRACEFUL_SHUTDOWN_SECONDS)]
    if behind_proxy:
        argv += ["--proxy-headers", "--forwarded-allow-ips", "*"]
    return argv
