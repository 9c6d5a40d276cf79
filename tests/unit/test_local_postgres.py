"""The checkout's PostgreSQL (scripts/pg.py) explains in one line why it cannot start, and deletes nothing."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.harness import PG

pytestmark = pytest.mark.unit


def _start(data: Path, port: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "PG_DATA": str(data), "PG_PORT": str(port)}
    return subprocess.run([sys.executable, str(PG), "start"], capture_output=True, text=True, env=env, timeout=60)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_data_directory_of_another_major_version_is_refused_and_left_as_it_is(tmp_path):
    data = tmp_path / "pg"
    data.mkdir()
    (data / "PG_VERSION").write_text("15\n")
    (data / "base").mkdir()
    result = _start(data, _free_port())
    assert result.returncode != 0
    message = result.stderr.strip()
    assert message.count("\n") == 0 and "PostgreSQL 15" in message and "move it away" in message
    assert sorted(p.name for p in data.iterdir()) == ["PG_VERSION", "base"]


def test_a_port_taken_by_another_program_is_named_with_what_to_do(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _start(tmp_path / "pg", port)
    assert result.returncode != 0
    assert f"port {port}" in result.stderr and "PG_PORT" in result.stderr
    assert not (tmp_path / "pg").exists()


def test_a_folder_that_is_not_a_data_directory_is_never_initialised_over(tmp_path):
    data = tmp_path / "pg"
    data.mkdir()
    (data / "notes.txt").write_text("mine")
    result = _start(data, _free_port())
    assert result.returncode != 0 and "not a PostgreSQL data directory" in result.stderr
    assert (data / "notes.txt").read_text() == "mine"
