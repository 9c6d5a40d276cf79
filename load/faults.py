"""A small fault schedule during the load (broker stopped for a while, one service killed with SIGKILL), and the
windows it actually produced, for the plot."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from load.platform import Platform

BROKER_OUTAGE_SECONDS = 20.0
KILLED_SERVICE = "matching"


def read_windows(path: Path) -> list[dict]:
    """Fault windows from a JSON file: [{"label", "start", "end"}] in seconds from the start of the load."""
    windows = json.loads(path.read_text())
    for w in windows:
        if not {"label", "start", "end"} <= set(w) or float(w["end"]) < float(w["start"]):
            raise ValueError(f"{path}: each window needs label, start <= end; got {w}")
    return [{"label": str(w["label"]), "start": float(w["start"]), "end": float(w["end"])} for w in windows]


async def run_schedule(platform: Platform, t0: float, seconds: float, windows: list[dict]) -> None:
    """Stop the broker at 15% of the run for up to 20 s (when this run owns it), then kill -9 and restart one
    service at 65%; append each window (seconds since `t0`, a time.perf_counter() value) as it closes."""

    def now() -> float:
        return time.perf_counter() - t0

    async def at(second: float) -> None:
        await asyncio.sleep(max(0.0, second - now()))

    if platform.broker.owned:
        await at(0.15 * seconds)
        start = now()
        await asyncio.to_thread(platform.broker.stop)
        await at(start + min(BROKER_OUTAGE_SECONDS, 0.33 * seconds))
        await asyncio.to_thread(platform.broker.start)  # returns once the broker answers again
        windows.append({"label": "broker stopped", "start": round(start, 1), "end": round(now(), 1)})
    else:
        print("load: the broker is not ours (KAFKA_BOOTSTRAP_SERVERS); skipping the broker outage", flush=True)
    await at(0.65 * seconds)
    proc = platform.procs[KILLED_SERVICE]
    start = now()
    proc.kill9()
    await asyncio.sleep(1.0)
    proc.restart()
    await asyncio.to_thread(proc.wait_alive, 120)
    windows.append({"label": f"kill -9 {KILLED_SERVICE}, restarted", "start": round(start, 1), "end": round(now(), 1)})
