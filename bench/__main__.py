"""`make bench`: run every bench/bench_*.py (or those named: `make bench BENCH_ARGS="pipeline registry"`).

Each module exposes `async def run(ctx: BenchContext) -> dict`; it prints its own figures (always next to a baseline
measured in the same run) and returns them. All results are written to bench/results/<name>.json.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench.support import BenchContext
from tests.support.harness import current_group_suffix, drop_created_databases

HERE = Path(__file__).resolve().parent


async def _main(selected: list[str]) -> int:
    # Benchmarks push one caller far past the per-caller write limit on purpose; the limiter has its own test.
    os.environ.setdefault("WRITE_RATE_PER_SECOND", "0")
    os.environ.setdefault("DEV_MODE", "true")  # development tokens (public secret); services refuse them otherwise
    names = sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))
    if selected:
        names = [n for n in names if n in selected]
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        ctx = BenchContext.start(Path(tmp))
        try:
            for name in names:
                print(f"\n=== bench {name} ===", flush=True)
                started = time.monotonic()
                # Each benchmark's consumer groups start at the topics' ends: no backlog from the ones before it.
                token = current_group_suffix.set(f".bench-{name}-{uuid.uuid4().hex[:6]}")
                try:
                    module = importlib.import_module(f"bench.bench_{name}")
                    result = await module.run(ctx)
                except Exception as exc:  # one failing benchmark must not hide the others' figures
                    failures += 1
                    print(f"bench {name} FAILED: {exc!r}", flush=True)
                    continue
                finally:
                    current_group_suffix.reset(token)
                result["elapsed_seconds"] = round(time.monotonic() - started, 1)
                (out / f"{name}.json").write_text(json.dumps(result, indent=2, ensure_ascii=False, default=str))
                print(f"--- {name}: results in bench/results/{name}.json", flush=True)
        finally:
            ctx.stop()
            await drop_created_databases()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(_main(sys.argv[1:])))
