"""With LOG_JSON=true every line a service process prints is JSON, uvicorn's own included, timed with a UTC offset."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from common.observability import configure_logging

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def probe_app():
    """An app factory as the services' are: it configures logging, then uvicorn serves what it returns."""
    configure_logging(service="probe", level="INFO", json_logs=True)

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["path"] == "/boom":
            raise RuntimeError("the probe fails on purpose")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_every_line_of_a_uvicorn_served_app_is_json_with_an_offset_time():
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "tests.unit.test_json_logs:probe_app", "--host", "127.0.0.1",
         "--port", str(port)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1).read()
                break
            except OSError:
                time.sleep(0.2)
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/boom", timeout=5)
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    lines = [line for line in out.splitlines() if line.strip()]
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if not records or "exc_info" not in records[-1]:  # only a JSON record's own traceback spans lines
                pytest.fail(f"not a JSON line: {line!r}\n{out}")
    messages = " | ".join(r["message"] for r in records)
    assert "Started server process" in messages and "Application startup complete" in messages, messages
    assert "Exception in ASGI application" in messages and "Shutting down" in messages, messages
    for r in records:
        assert r["service"] == "probe" and r["logger"].startswith("uvicorn")
        assert datetime.fromisoformat(r["time"]).utcoffset() == timedelta(0), r["time"]
    assert any("the probe fails on purpose" in r.get("exc_info", "") for r in records)


def test_a_service_app_takes_over_uvicorns_loggers_when_it_is_built():
    logging.getLogger("uvicorn.error").addHandler(logging.StreamHandler())
    logging.getLogger("uvicorn").propagate = False
    from registry.config import Settings
    from registry.main import create_app

    create_app(Settings())
    for name in ("uvicorn", "uvicorn.error"):
        assert logging.getLogger(name).handlers == [] and logging.getLogger(name).propagate is True
