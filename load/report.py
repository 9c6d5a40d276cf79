"""Figures from a run: per-endpoint throughput and latency, end-to-end latency, lag and memory; JSON and a plot."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from pathlib import Path

from load.workload import MIX, Sample


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile (0-100) by nearest rank; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))]


def _ms(seconds: float) -> float | None:
    return None if math.isnan(seconds) else round(seconds * 1000, 1)


def endpoints(samples: list[Sample], seconds: float) -> dict[str, dict]:
    """Per endpoint: requests, successful ones per second, p50/p99 of the successful ones, errors by outcome."""
    out = {}
    for name in MIX:
        mine = [s for s in samples if s.endpoint == name]
        ok = [s.seconds for s in mine if s.ok]
        errors = Counter(s.outcome for s in mine if not s.ok)
        out[name] = {"class": MIX[name][0], "sent": len(mine), "ok": len(ok),
                     "throughput_per_s": round(len(ok) / seconds, 2),
                     "p50_ms": _ms(percentile(ok, 50)), "p99_ms": _ms(percentile(ok, 99)),
                     "max_ms": _ms(max(ok, default=math.nan)), "errors": sum(errors.values()),
                     "errors_by_outcome": dict(errors)}
    return out


def end_to_end_summary(e2e: dict[str, dict[str, list]]) -> dict[str, dict]:
    """Per path: how many were acknowledged, applied downstream and never applied; p50/p99/max of the applied,
    from the answer (as bench/bench_pipeline.py does) and from the request."""
    out = {}
    for path, both in e2e.items():
        pairs = both["from_answer"]
        lat = [x for _, x in pairs if x is not None]
        sent = [x for _, x in both["from_request"] if x is not None]
        out[path] = {"acknowledged": len(pairs), "applied": len(lat), "not_applied": len(pairs) - len(lat),
                     "p50_ms": _ms(percentile(lat, 50)), "p99_ms": _ms(percentile(lat, 99)),
                     "max_ms": _ms(max(lat, default=math.nan)),
                     "from_request_p50_ms": _ms(percentile(sent, 50)), "from_request_p99_ms": _ms(percentile(sent, 99))}
    return out


def generator(late: list[tuple[float, float]]) -> dict:
    """How late the generator's sends left (its own event loop falling behind distorts every figure)."""
    values = [x for _, x in late]
    return {"sends": len(values), "late_p50_ms": _ms(percentile(values, 50)),
            "late_p99_ms": _ms(percentile(values, 99)), "late_max_ms": _ms(max(values, default=math.nan))}


def resources(rows: list[dict], load_seconds: float) -> dict[str, dict]:
    """Per process: max consumer lag (during the load and after it) and RSS at start, peak and end."""
    out: dict[str, dict] = {}
    names = sorted({n for r in rows for n in r["rss_mb"]})
    for n in names:
        lag = [(r["t"], r["lag"].get(n)) for r in rows if r["lag"].get(n) is not None]
        rss = [r["rss_mb"][n] for r in rows if r["rss_mb"].get(n) is not None]
        entry: dict = {"rss_mb_start": rss[0] if rss else None, "rss_mb_peak": max(rss, default=None),
                       "rss_mb_end": rss[-1] if rss else None}
        if n != "broker":
            during = [v for t, v in lag if t <= load_seconds]
            back = next((t for t, v in lag if t > load_seconds and v == 0), None)
            entry.update({"lag_max_during_load": max(during, default=None), "lag_mean_during_load":
                          round(sum(during) / len(during), 1) if during else None,
                          "lag_zero_again_at_s": back})
        out[n] = entry
    return out


def per_second(samples: list[Sample], seconds: float) -> dict[str, list]:
    """Per second of sending and per endpoint class: p50 and p99 (ms) of the successful requests, ok and errors."""
    buckets: dict[str, dict[int, list[Sample]]] = defaultdict(lambda: defaultdict(list))
    for s in samples:
        buckets[MIX[s.endpoint][0]][int(s.t)].append(s)
    out = {}
    for cls, by_sec in buckets.items():
        series = []
        for sec in range(math.ceil(seconds)):
            mine = by_sec.get(sec, [])
            ok = [s.seconds for s in mine if s.ok]
            series.append({"t": sec, "ok": len(ok), "errors": len(mine) - len(ok),
                           "p50_ms": _ms(percentile(ok, 50)), "p99_ms": _ms(percentile(ok, 99))})
        out[cls] = series
    return out


def e2e_per_second(e2e: dict[str, dict[str, list]], seconds: float) -> dict[str, list]:
    """Per second of origin and path: p50 and p99 (ms) of end-to-end latency (from the answer)."""
    out = {}
    for path, both in e2e.items():
        by_sec: dict[int, list[float]] = defaultdict(list)
        for t, x in both["from_answer"]:
            if x is not None:
                by_sec[int(t)].append(x)
        out[path] = [{"t": sec, "p50_ms": _ms(percentile(by_sec[sec], 50)), "p99_ms": _ms(percentile(by_sec[sec], 99)),
                      "n": len(by_sec[sec])} for sec in range(math.ceil(seconds))]
    return out


def print_tables(result: dict) -> None:
    """The figures as text tables."""
    def table(rows, headers):
        cells = [tuple(map(str, headers))] + [tuple("-" if c is None else str(c) for c in r) for r in rows]
        widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
        for i, r in enumerate(cells):
            print("  ".join(c.ljust(w) for c, w in zip(r, widths)), flush=True)
            if i == 0:
                print("  ".join("-" * w for w in widths), flush=True)

    cfg = result["config"]
    print(f"\n-- requests: {cfg['rate_per_s']} req/s offered for {cfg['seconds']} s "
          f"({cfg['cpus']} CPUs, load average {cfg['loadavg_before']} before)", flush=True)
    table([(n, e["sent"], e["throughput_per_s"], e["p50_ms"], e["p99_ms"], e["max_ms"], e["errors"],
            ", ".join(f"{k}×{v}" for k, v in e["errors_by_outcome"].items()))
           for n, e in result["endpoints"].items()],
          ("endpoint", "sent", "ok/s", "p50 ms", "p99 ms", "max ms", "errors", "error outcomes"))
    print("\n-- end-to-end", flush=True)
    table([(p, e["acknowledged"], e["applied"], e["not_applied"], e["p50_ms"], e["p99_ms"], e["max_ms"],
            e["from_request_p50_ms"], e["from_request_p99_ms"]) for p, e in result["end_to_end"].items()],
          ("path", "acked", "applied", "not applied", "p50 ms", "p99 ms", "max ms", "from request p50",
           "from request p99"))
    g = result["generator"]
    print(f"(from the answer the generator saw; its sends left late by p50 {g['late_p50_ms']} ms, "
          f"p99 {g['late_p99_ms']} ms, max {g['late_max_ms']} ms: a late generator shortens these figures)",
          flush=True)
    print("\n-- consumer lag and memory (sampled every second)", flush=True)
    table([(n, r.get("lag_max_during_load"), r.get("lag_mean_during_load"), r.get("lag_zero_again_at_s"),
            r["rss_mb_start"], r["rss_mb_peak"], r["rss_mb_end"]) for n, r in result["resources"].items()],
          ("process", "lag max", "lag mean", "lag 0 again at s", "RSS start MiB", "RSS peak MiB", "RSS end MiB"))
    if result["faults"]:
        print("\n-- fault windows", flush=True)
        for w in result["faults"]:
            print(f"  {w['start']:6.1f}s - {w['end']:6.1f}s  {w['label']}", flush=True)


PROCESS_COLOURS = {"registry": "tab:red", "matching": "tab:orange", "events": "tab:green", "notify": "tab:blue",
                   "broker": "black"}
CLASS_COLOURS = {"portal reads": "tab:blue", "registrations": "tab:green", "postings": "tab:orange",
                 "registry writes": "tab:red", "municipal inbound": "tab:purple"}


def plot(result: dict, path: Path) -> None:
    """Latency over time per endpoint class, end-to-end latency, throughput, consumer lag and RSS, faults shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(5, 1, figsize=(16, 17), sharex=True,
                             gridspec_kw={"height_ratios": [3, 2.2, 1.5, 1.8, 1.8]})
    ax_lat, ax_e2e, ax_tput, ax_lag, ax_rss = axes

    def series(points, key):
        return [p["t"] + 0.5 for p in points], [p[key] if p[key] is not None else math.nan for p in points]

    for cls, points in result["per_second"].items():
        colour = CLASS_COLOURS.get(cls)
        ax_lat.plot(*series(points, "p99_ms"), color=colour, lw=1.6, label=f"{cls} p99")
        ax_lat.plot(*series(points, "p50_ms"), color=colour, lw=1.0, ls="--", label=f"{cls} p50")
        ax_tput.plot(*series(points, "ok"), color=colour, lw=1.2, label=f"{cls} ok/s")
        t, errs = series(points, "errors")
        if any(e for e in errs):
            ax_tput.bar(t, errs, width=0.9, color=colour, alpha=0.35)
    ax_lat.set_yscale("log")
    ax_lat.set_ylabel("request latency, ms (log)")
    ax_lat.set_title(f"make load: {result['config']['rate_per_s']} req/s offered for {result['config']['seconds']} s "
                     f"- per-second p99 (solid) and p50 (dashed) by endpoint class")
    ax_lat.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))

    for (path_name, points), colour in zip(result["e2e_per_second"].items(), ("tab:red", "tab:green", "tab:purple")):
        ax_e2e.plot(*series(points, "p99_ms"), color=colour, lw=1.6, label=f"{path_name} p99")
        ax_e2e.plot(*series(points, "p50_ms"), color=colour, lw=1.0, ls="--", label=f"{path_name} p50")
    ax_e2e.set_yscale("log")
    ax_e2e.set_ylabel("end-to-end, ms (log)\nby second of origin")
    ax_e2e.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))

    ax_tput.set_ylabel("ok requests/s\n(bars: errors/s)")
    ax_tput.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))

    rows = result["samples"]
    ts = [r["t"] for r in rows]
    for name in sorted({n for r in rows for n in r["lag"]}):
        ax_lag.plot(ts, [r["lag"].get(name) if r["lag"].get(name) is not None else math.nan for r in rows],
                    lw=1.3, label=name, color=PROCESS_COLOURS.get(name))
    ax_lag.set_ylabel("consumer lag\n(messages, all groups)")
    ax_load = ax_lag.twinx()
    ax_load.plot(ts, [r["loadavg_1m"] for r in rows], color="grey", ls=":", lw=1.2, label="machine load avg (1 min)")
    ax_load.set_ylabel("load average", color="grey")
    ax_load.legend(fontsize=8, loc="lower left", bbox_to_anchor=(1.06, 0.0))
    ax_lag.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.06, 1.0))
    for name in sorted({n for r in rows for n in r["rss_mb"]}):
        ax_rss.plot(ts, [r["rss_mb"].get(name) if r["rss_mb"].get(name) is not None else math.nan for r in rows],
                    lw=1.3, label=name, color=PROCESS_COLOURS.get(name))
    ax_rss.set_ylabel("RSS, MiB")
    ax_rss.set_xlabel("seconds since the load started (the load ends at the dotted line; sampling goes on)")
    ax_rss.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))

    for ax in axes:
        ax.grid(True, alpha=0.3, which="both")
        ax.axvline(result["config"]["seconds"], color="black", ls=":", lw=1)
        for w in result["faults"]:
            ax.axvspan(w["start"], w["end"], color="grey", alpha=0.2)
    for w in result["faults"]:
        ax_lat.annotate(w["label"], xy=(w["start"], 1.0), xycoords=("data", "axes fraction"), xytext=(2, -12),
                        textcoords="offset points", fontsize=8, va="top", rotation=0,
                        bbox={"boxstyle": "round", "fc": "white", "alpha": 0.8})
    fig.tight_layout()
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
