"""The platform under load: a broker, fresh PostgreSQL databases and the four services as real uvicorn processes, laid
out as they are deployed: per service an API process (`<service>`) and a worker process (`<service>-worker`: outbox
relay, consumers, sweeps), so a heavy request never delays the service's consumers."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.harness import Broker, current_group_suffix, drop_created_databases, fresh_database, start_broker
from tests.support.processes import ServiceProcess, isolate_groups, service_env

SERVICES = ("registry", "matching", "events", "notify")


@dataclass
class Platform:
    """What `start_platform` started, so that `stop` can take it down again."""

    broker: Broker
    dbs: dict[str, str]
    procs: dict[str, ServiceProcess]

    def url(self, service: str) -> str:
        """Base URL of a service's process."""
        return self.procs[service].url

    def broker_pid(self) -> int | None:
        """The pid of a broker this run started (for its RSS), else None."""
        pidfile = self.broker.data / "broker.pid" if self.broker.data else None
        try:
            return int(pidfile.read_text()) if pidfile else None
        except (OSError, ValueError):
            return None

    async def stop(self) -> None:
        """Stop the services, the broker (if ours) and drop the databases."""
        await asyncio.gather(*(asyncio.to_thread(p.stop) for p in self.procs.values()))
        if self.broker.owned:
            try:
                await asyncio.to_thread(self.broker.stop)
            except Exception as exc:  # already stopped by a fault that did not finish
                print(f"load: stopping the broker: {exc!r}", flush=True)
        await drop_created_databases()


async def start_platform(tmp: Path, logs: Path) -> Platform:
    """Start (or reuse) the broker, create fresh databases and start the services; return once all are ready."""
    broker = await asyncio.to_thread(start_broker, tmp)
    # Our own consumer groups, started at the topics' ends: a shared broker's backlog is not ours to consume.
    suffix = f".load-{uuid.uuid4().hex[:8]}"
    current_group_suffix.set(suffix)
    dbs = {s: await fresh_database(f"load_{s}") for s in SERVICES}
    for s in SERVICES:
        await isolate_groups(s, bootstrap=broker.bootstrap, suffix=suffix)
    procs: dict[str, ServiceProcess] = {}
    for s in SERVICES:
        procs[s] = ServiceProcess(s, "api", service_env(s, db_url=dbs[s], bootstrap=broker.bootstrap,
                                                        run_workers=False), logs / f"{s}.log")
        procs[f"{s}-worker"] = ServiceProcess(s, "worker", service_env(
            s, db_url=dbs[s], bootstrap=broker.bootstrap, run_workers=True, **{f"{s.upper()}_RUN_MIGRATIONS": "false"}),
            logs / f"{s}-worker.log")
    platform = Platform(broker=broker, dbs=dbs, procs=procs)
    try:
        apis = [procs[s] for s in SERVICES]  # the APIs migrate their databases; the workers start after them
        for p in apis:
            p.start()
        await asyncio.gather(*(asyncio.to_thread(_alive_or_retry, p) for p in apis))
        workers = [procs[f"{s}-worker"] for s in SERVICES]
        for p in workers:
            p.start()
        await asyncio.gather(*(asyncio.to_thread(_alive_or_retry, p) for p in workers))
        await wait_ready(procs.values())
    except BaseException:
        await platform.stop()
        raise
    return platform


def _alive_or_retry(proc: ServiceProcess, attempts: int = 3) -> None:
    """Wait until the process is alive; start it again if it exited during startup (PostgreSQL restarting, say)."""
    for attempt in range(attempts):
        try:
            proc.wait_alive(120)
            return
        except RuntimeError:
            if attempt == attempts - 1:
                raise
            print(f"load: {proc.service} exited during startup; starting it again (log {proc.log})", flush=True)
            time.sleep(2)
            proc.restart()


async def wait_ready(procs, timeout: float = 120) -> None:
    """Block until every process answers /readyz with 200 (database reachable, producer started)."""
    async with httpx.AsyncClient(timeout=2) as http:
        for p in procs:
            deadline = asyncio.get_running_loop().time() + timeout
            while True:
                try:
                    if (await http.get(f"{p.url}/readyz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if asyncio.get_running_loop().time() > deadline:
                    raise TimeoutError(f"{p.service} not ready after {timeout}s; see {p.log}")
                await asyncio.sleep(0.3)
