"""`make load` (LOAD_SECONDS, LOAD_RATE; `make load LOAD_ARGS=--with-faults`): the platform under a mixed workload.

Starts a broker (unless KAFKA_BOOTSTRAP_SERVERS is set), fresh PostgreSQL databases and the four services as real
uvicorn processes; seeds institutions, a certification pool, open activities and opportunities; then sends an
open-loop mix at LOAD_RATE requests/s for LOAD_SECONDS, sampling consumer lag and RSS every second. Prints the
figures and writes load/results/load.json and load/results/latency.png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import httpx

from load import report
from load.faults import read_windows, run_schedule
from load.measure import Sampler, end_to_end
from load.platform import start_platform
from load.seed import seed
from load.workload import MIX, Workload

HERE = Path(__file__).resolve().parent
DRAIN_SECONDS = 45.0


def _args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m load", description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=float(os.environ.get("LOAD_SECONDS", "60")),
                   help="how long to send (LOAD_SECONDS, default 60)")
    p.add_argument("--rate", type=float, default=float(os.environ.get("LOAD_RATE", "100")),
                   help="total requests per second offered (LOAD_RATE, default 100)")
    p.add_argument("--faults", type=Path, help='JSON file of windows to mark: [{"label", "start", "end"}] (seconds)')
    p.add_argument("--with-faults", action="store_true",
                   help="stop the broker for 20 s and kill -9 one service during the load, and mark both")
    p.add_argument("--seed", type=int, default=1, help="random seed of the mix")
    p.add_argument("--out", type=Path, default=HERE / "results")
    return p.parse_args(argv)


async def _drain(sampler: Sampler, limit: float) -> None:
    """After the load: keep sampling until every consumer has caught up (or `limit` seconds pass)."""
    deadline = time.monotonic() + limit
    zero_since = None
    while time.monotonic() < deadline:
        await asyncio.sleep(1.0)
        if sampler.lag_now() == 0:
            zero_since = zero_since or time.monotonic()
            if time.monotonic() - zero_since >= 3:  # outboxes sweep every 0.5 s: wait for a quiet moment
                return
        else:
            zero_since = None


async def main(argv: list[str]) -> int:
    """Run the load and report it."""
    args = _args(argv)
    os.environ.setdefault("DEV_MODE", "true")  # development tokens (public secret); services refuse them otherwise
    marked = read_windows(args.faults) if args.faults else []
    args.out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="load-") as tmp:
        print("load: starting the broker, databases and the four services ...", flush=True)
        (args.out / "logs").mkdir(exist_ok=True)
        platform = await start_platform(Path(tmp), args.out / "logs")
        try:
            urls = {s: platform.url(s) for s in platform.procs}
            print(f"load: up in {time.monotonic() - started:.0f}s ({platform.broker.bootstrap}, "
                  + ", ".join(f"{s} {u}" for s, u in urls.items()) + "); seeding ...", flush=True)
            async with httpx.AsyncClient(timeout=30) as http:
                seeded = await seed(http, urls, rng)
            print(f"load: seeded in {time.monotonic() - started:.0f}s; sending {args.rate:g} req/s for "
                  f"{args.seconds:g}s{' with faults' if args.with_faults else ''} ...", flush=True)

            loadavg_before = round(os.getloadavg()[0], 2)
            workload = Workload(urls=urls, seeded=seeded, bootstrap=platform.broker.bootstrap, rng=rng)
            t0 = time.perf_counter()
            sampler = Sampler(platform, t0)
            sampling = asyncio.create_task(sampler.run())
            injected: list[dict] = []
            schedule = (asyncio.create_task(run_schedule(platform, t0, args.seconds, injected))
                        if args.with_faults else None)
            await workload.run(args.rate, args.seconds)
            if schedule:
                await schedule
            print("load: load over; waiting for the consumers to catch up ...", flush=True)
            await _drain(sampler, DRAIN_SECONDS)
            sampler.stop()
            await sampling
            e2e = await end_to_end(platform, workload)
        finally:
            print("load: stopping ...", flush=True)
            await platform.stop()

    result = {
        "config": {"rate_per_s": args.rate, "seconds": args.seconds, "seed": args.seed, "cpus": os.cpu_count(),
                   "loadavg_before": loadavg_before, "with_faults": args.with_faults,
                   "mix_percent": {n: w for n, (_, w, _) in MIX.items()},
                   "services": "one uvicorn process per service (API and consumers), PostgreSQL, one Kafka broker"},
        "endpoints": report.endpoints(workload.samples, args.seconds),
        "end_to_end": report.end_to_end_summary(e2e),
        "generator": report.generator(workload.late),
        "resources": report.resources(sampler.rows, args.seconds),
        "faults": sorted(marked + injected, key=lambda w: w["start"]),
        "per_second": report.per_second(workload.samples, args.seconds),
        "e2e_per_second": report.e2e_per_second(e2e, args.seconds),
        "samples": sampler.rows,
        "elapsed_seconds": round(time.monotonic() - started, 1),
    }
    report.print_tables(result)
    (args.out / "load.json").write_text(json.dumps(result, indent=1, ensure_ascii=False))
    report.plot(result, args.out / "latency.png")
    print(f"\nload: {result['elapsed_seconds']:.0f}s in all; results in {args.out / 'load.json'} and "
          f"{args.out / 'latency.png'}", flush=True)
    return 0


if __name__ == "__main__":
    try:  # the generator shares the machine with what it measures: the cheaper its event loop, the better
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    sys.exit(asyncio.run(main(sys.argv[1:])))
