"""A service process never closes a connection that a proxy or client in front may still reuse: it keeps idle
keep-alive connections longer than ingress-nginx (60 s upstream keep-alive) and httpx (5 s) keep theirs."""

from __future__ import annotations

import asyncio
import socket

import pytest

from common.server import KEEP_ALIVE_SECONDS
from tests.support.harness import fresh_database
from tests.support.processes import ServiceProcess, service_env

pytestmark = pytest.mark.integration

INGRESS_NGINX_UPSTREAM_KEEPALIVE_SECONDS = 60


def _get(sock: socket.socket) -> bytes:
    """One whole response to GET /healthz on an open connection (b"" if the server had closed it)."""
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: registry\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length"))
    while len(body) < length:
        body += sock.recv(65536)
    return head


def test_the_server_outlasts_every_keep_alive_in_front_of_it():
    assert KEEP_ALIVE_SECONDS > INGRESS_NGINX_UPSTREAM_KEEPALIVE_SECONDS


async def test_an_idle_connection_is_still_served_after_the_client_side_expiry(broker, tmp_path):
    db = await fresh_database("registry")
    proc = ServiceProcess("registry", "api", service_env("registry", db_url=db, bootstrap=broker.bootstrap,
                                                         run_workers=False), tmp_path / "registry.log")
    proc.start()
    try:
        await asyncio.to_thread(proc.wait_alive)
        with socket.create_connection(("127.0.0.1", proc.port), timeout=10) as sock:
            assert _get(sock).startswith(b"HTTP/1.1 200")
            await asyncio.sleep(6.5)  # longer than uvicorn's default keep-alive (5 s), which closed it here
            again = _get(sock)
            assert again.startswith(b"HTTP/1.1 200"), f"the idle connection was closed: {again[:80]!r}"
    finally:
        await asyncio.to_thread(proc.stop)
