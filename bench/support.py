"""What benchmarks share: the broker and PostgreSQL, percentiles, and a table printer."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

from tests.support.harness import Broker, fresh_database, start_broker


@dataclass
class BenchContext:
    """A broker started for the whole `make bench` run, and fresh PostgreSQL databases on demand."""

    broker: Broker

    @classmethod
    def start(cls, tmp: Path) -> BenchContext:
        """Start (or reuse, with KAFKA_BOOTSTRAP_SERVERS) the broker."""
        return cls(broker=start_broker(tmp))

    def stop(self) -> None:
        """Stop the broker if this run started it."""
        if self.broker.owned:
            self.broker.stop()

    async def database(self, label: str) -> str:
        """A fresh, empty PostgreSQL database URL."""
        return await fresh_database(label)


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile (0-100) by nearest rank."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def summary_ms(samples_s: list[float]) -> dict[str, float]:
    """p50 / p95 / p99 / mean of latencies given in seconds, in milliseconds."""
    ms = [s * 1000 for s in samples_s]
    return {
        "p50_ms": round(percentile(ms, 50), 2), "p95_ms": round(percentile(ms, 95), 2),
        "p99_ms": round(percentile(ms, 99), 2), "mean_ms": round(statistics.fmean(ms), 2) if ms else float("nan"),
        "n": len(ms),
    }


def table(rows: list[tuple], headers: tuple) -> None:
    """Print rows as an aligned text table."""
    cells = [tuple(str(c) for c in headers)] + [tuple(str(c) for c in r) for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for i, r in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)), flush=True)
        if i == 0:
            print("  ".join("-" * w for w in widths), flush=True)
