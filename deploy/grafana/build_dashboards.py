#!/usr/bin/env python3
"""Write the Grafana dashboards (deploy/grafana/dashboards/*.json): one per service and one for the event pipeline.

    python deploy/grafana/build_dashboards.py            write the JSON files
    python deploy/grafana/build_dashboards.py --check    exit 1 when the committed files differ from what this writes

The services are the folders under services/; a test checks the files are current and query only exported metrics.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(__file__).resolve().parent / "dashboards"
# Every panel queries the dashboard's `datasource` variable (any Prometheus the Grafana has, its default first), so
# the dashboards import into a Grafana whose Prometheus datasource has another uid (kube-prometheus-stack, a
# managed Grafana) as they are.
DS = {"type": "prometheus", "uid": "${datasource}"}
DATASOURCE_VARIABLE = {
    "name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus",
    "current": {}, "hide": 0, "refresh": 1, "regex": "", "includeAll": False, "multi": False, "options": [],
}
RATE = "$__rate_interval"
PROBES = 'route!~"/metrics|/healthz|/readyz"'


def services() -> list[str]:
    """The platform's services (folders under services/ with a pyproject.toml)."""
    return sorted(p.parent.name for p in (ROOT / "services").glob("*/pyproject.toml"))


class Layout:
    """Places panels on Grafana's 24-column grid, row by row, with stable ids."""

    def __init__(self) -> None:
        self.panels: list[dict] = []
        self.x = 0
        self.y = 0
        self.row_h = 0

    def row(self, title: str) -> None:
        """Start a new titled row."""
        self._newline()
        self.panels.append({"id": len(self.panels) + 1, "type": "row", "title": title, "collapsed": False,
                            "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y}, "panels": []})
        self.y += 1

    def add(self, panel: dict, w: int = 12, h: int = 8) -> None:
        """Add a panel of width w and height h."""
        if self.x + w > 24:
            self._newline()
        panel = {"id": len(self.panels) + 1, **panel, "gridPos": {"h": h, "w": w, "x": self.x, "y": self.y}}
        self.panels.append(panel)
        self.x += w
        self.row_h = max(self.row_h, h)

    def _newline(self) -> None:
        if self.x:
            self.y += self.row_h
        self.x, self.row_h = 0, 0


def timeseries(title: str, targets: list[tuple[str, str]], unit: str = "short", description: str = "",
               stack: bool = False) -> dict:
    """A time-series panel with (expr, legend) targets."""
    return {
        "type": "timeseries", "title": title, "description": description, "datasource": DS,
        "fieldConfig": {"defaults": {"unit": unit, "custom": {"drawStyle": "line", "fillOpacity": 10,
                                                              "stacking": {"mode": "normal" if stack else "none"}}},
                        "overrides": []},
        "options": {"legend": {"displayMode": "table", "placement": "bottom", "calcs": ["lastNotNull", "max"]},
                    "tooltip": {"mode": "multi"}},
        "targets": [{"refId": chr(65 + i), "datasource": DS, "expr": e, "legendFormat": lf}
                    for i, (e, lf) in enumerate(targets)],
    }


def stat(title: str, expr: str, unit: str = "short", thresholds: tuple[float, float] | None = None,
         description: str = "") -> dict:
    """A single-value panel, green/amber/red by thresholds."""
    steps = [{"color": "green", "value": None}]
    if thresholds:
        steps += [{"color": "orange", "value": thresholds[0]}, {"color": "red", "value": thresholds[1]}]
    return {
        "type": "stat", "title": title, "description": description, "datasource": DS,
        "fieldConfig": {"defaults": {"unit": unit, "thresholds": {"mode": "absolute", "steps": steps}},
                        "overrides": []},
        "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                    "colorMode": "background", "graphMode": "area"},
        "targets": [{"refId": "A", "datasource": DS, "expr": expr, "instant": False}],
    }


def dashboard(uid: str, title: str, layout: Layout, tags: list[str], description: str) -> dict:
    """The dashboard document around the panels."""
    return {
        "uid": uid, "title": title, "description": description, "tags": ["cjrh", *tags],
        "timezone": "browser", "schemaVersion": 39, "version": 1, "editable": False,
        "refresh": "30s", "time": {"from": "now-3h", "to": "now"}, "graphTooltip": 1,
        "templating": {"list": [DATASOURCE_VARIABLE]}, "annotations": {"list": []}, "links": [],
        "panels": layout.panels,
    }


def service_dashboard(svc: str) -> dict:
    """HTTP traffic, errors, latency, outbox and consumers of one service."""
    s = f'service="{svc}"'
    lay = Layout()
    lay.row("Health")
    lay.add(stat("Targets up", f'sum(up{{instance_service="{svc}"}})', thresholds=None,
                 description="API and worker processes Prometheus can scrape"), w=6, h=4)
    lay.add(stat("Request rate", f"sum(rate(http_requests_total{{{s},{PROBES}}}[{RATE}]))", "reqps"), w=6, h=4)
    lay.add(stat("5xx ratio", f'sum(rate(http_requests_total{{{s},status=~"5.."}}[{RATE}])) '
                              f"/ sum(rate(http_requests_total{{{s}}}[{RATE}]))", "percentunit", (0.01, 0.05)),
            w=6, h=4)
    lay.add(stat("Oldest unpublished event", f"max(outbox_oldest_age_seconds{{{s}}})", "s", (30, 60)), w=6, h=4)
    lay.row("HTTP")
    lay.add(timeseries("Requests by route", [
        (f"sum by (method, route) (rate(http_requests_total{{{s},{PROBES}}}[{RATE}]))", "{{method}} {{route}}")],
        "reqps"))
    lay.add(timeseries("Responses by status", [
        (f"sum by (status) (rate(http_requests_total{{{s}}}[{RATE}]))", "{{status}}")], "reqps", stack=True))
    lay.add(timeseries("Latency percentiles", [
        (f"histogram_quantile({q}, sum by (le) (rate(http_request_duration_seconds_bucket{{{s},{PROBES}}}[{RATE}])))",
         f"p{int(q * 100)}") for q in (0.5, 0.95, 0.99)], "s"))
    lay.add(timeseries("p95 latency by route", [
        (f"histogram_quantile(0.95, sum by (le, route) (rate(http_request_duration_seconds_bucket{{{s},{PROBES}}}"
         f"[{RATE}])))", "{{route}}")], "s"))
    lay.add(timeseries("Readiness failures (/readyz 503)", [
        (f'sum(rate(http_requests_total{{{s},route="/readyz",status="503"}}[{RATE}]))', "503/s")], "reqps"))
    lay.add(timeseries("Client errors by route (4xx)", [
        (f'sum by (route, status) (rate(http_requests_total{{{s},status=~"4.."}}[{RATE}]))',
         "{{status}} {{route}}")], "reqps"))
    lay.row("Outbox (events this service publishes)")
    lay.add(timeseries("Outbox backlog", [(f"max(outbox_backlog{{{s}}})", "waiting")], "short"), w=8)
    lay.add(timeseries("Oldest unpublished entry", [(f"max(outbox_oldest_age_seconds{{{s}}})", "age")], "s"), w=8)
    lay.add(timeseries("Published / failed by topic", [
        (f"sum by (topic) (rate(events_published_total{{{s}}}[{RATE}]))", "published {{topic}}"),
        (f"sum by (topic) (rate(events_publish_failed_total{{{s}}}[{RATE}]))", "failed {{topic}}")], "ops"), w=8)
    lay.row("Consumers (events this service reads)")
    lay.add(timeseries("Consumed by outcome", [
        (f"sum by (consumer, topic, outcome) (rate(events_consumed_total{{{s}}}[{RATE}]))",
         "{{consumer}} {{topic}} {{outcome}}")], "ops"), w=8)
    lay.add(timeseries("Consumer lag", [
        (f"sum by (consumer, topic) (consumer_lag{{{s}}})", "{{consumer}} {{topic}}")], "short"), w=8)
    lay.add(timeseries("Failures and dead letters", [
        (f"sum by (consumer, topic) (increase(events_failed_total{{{s}}}[{RATE}]))", "failed {{consumer}} {{topic}}"),
        (f"sum by (consumer, topic) (increase(events_dead_lettered_total{{{s}}}[{RATE}]))",
         "DLQ {{consumer}} {{topic}}")], "short"), w=8)
    if svc == "notify":
        lay.row("Deliveries (email, SMS, webhooks)")
        lay.add(timeseries("Delivery outcomes by channel", [
            (f"sum by (channel, outcome) (rate(notify_deliveries_total{{{s}}}[{RATE}]))", "{{channel}} {{outcome}}")],
            "ops", description="sent / delivered; deferred by quiet hours; failed (to be retried); dead (given up)"),
            w=8)
        lay.add(timeseries("Dead deliveries by channel", [
            (f'sum by (channel) (increase(notify_deliveries_total{{{s},outcome="dead"}}[{RATE}]))', "{{channel}}")],
            "short", description="deliveries given up on: a refused address, a relay answering 5xx, retries spent"),
            w=8)
        lay.add(timeseries("Delivery latency by channel (p50, p95)", [
            (f"histogram_quantile({q}, sum by (le, channel) (rate(notify_delivery_latency_seconds_bucket{{{s}}}"
             f"[{RATE}])))", f"p{int(q * 100)} {{{{channel}}}}") for q in (0.5, 0.95)], "s",
            description="from a delivery falling due to the outcome of its send"), w=8)
    return dashboard(f"cjrh-{svc}", f"CJRH / {svc}", lay, [svc],
                     f"The {svc} service: HTTP traffic, errors, latency percentiles, its outbox and its consumers.")


def pipeline_dashboard() -> dict:
    """The event pipeline across services: outbox, publishing, consumption, lag and dead letters."""
    lay = Layout()
    lay.row("Now")
    lay.add(stat("Events waiting in outboxes", "sum(outbox_backlog)", thresholds=(100, 1000)), w=6, h=4)
    lay.add(stat("Oldest unpublished event", "max(outbox_oldest_age_seconds)", "s", (30, 60)), w=6, h=4)
    lay.add(stat("Total consumer lag", "sum(consumer_lag)", thresholds=(100, 1000)), w=6, h=4)
    lay.add(stat("Dead letters (range)", "sum(increase(events_dead_lettered_total[$__range]))", thresholds=(1, 10)),
            w=6, h=4)
    lay.row("HTTP across services")
    lay.add(timeseries("Request rate by service", [
        (f"sum by (service) (rate(http_requests_total{{{PROBES}}}[{RATE}]))", "{{service}}")], "reqps"), w=8)
    lay.add(timeseries("5xx ratio by service", [
        (f'sum by (service) (rate(http_requests_total{{status=~"5.."}}[{RATE}])) '
         f"/ sum by (service) (rate(http_requests_total[{RATE}]))", "{{service}}")], "percentunit"), w=8)
    lay.add(timeseries("p95 latency by service", [
        (f"histogram_quantile(0.95, sum by (le, service) (rate(http_request_duration_seconds_bucket{{{PROBES}}}"
         f"[{RATE}])))", "{{service}}")], "s"), w=8)
    lay.row("Producers")
    lay.add(timeseries("Outbox backlog by service", [("max by (service) (outbox_backlog)", "{{service}}")]), w=8)
    lay.add(timeseries("Outbox age by service", [("max by (service) (outbox_oldest_age_seconds)", "{{service}}")],
                       "s"), w=8)
    lay.add(timeseries("Published by topic", [
        (f"sum by (topic) (rate(events_published_total[{RATE}]))", "{{topic}}"),
        (f"sum by (topic) (rate(events_publish_failed_total[{RATE}]))", "failed {{topic}}")], "ops"), w=8)
    lay.row("Consumers")
    lay.add(timeseries("Consumed by group and outcome", [
        (f"sum by (service, consumer, outcome) (rate(events_consumed_total[{RATE}]))",
         "{{service}}.{{consumer}} {{outcome}}")], "ops"), w=8)
    lay.add(timeseries("Lag by group and topic", [
        ("sum by (service, consumer, topic) (consumer_lag)", "{{service}}.{{consumer}} {{topic}}")]), w=8)
    lay.add(timeseries("Lag by partition", [
        ("max by (service, consumer, topic, partition) (consumer_lag)",
         "{{service}}.{{consumer}} {{topic}}[{{partition}}]")]), w=8)
    lay.row("Dead letters and failures")
    lay.add(timeseries("Dead-lettered by topic", [
        (f"sum by (service, consumer, topic) (increase(events_dead_lettered_total[{RATE}]))",
         "{{topic}}.dlq ({{service}}.{{consumer}})")]), w=12)
    lay.add(timeseries("Handler failures (retried)", [
        (f"sum by (service, consumer, topic) (rate(events_failed_total[{RATE}]))",
         "{{service}}.{{consumer}} {{topic}}")], "ops"), w=12)
    return dashboard("cjrh-event-pipeline", "CJRH / event pipeline", lay, ["events", "kafka"],
                     "HTTP rate, errors and latency per service; outboxes, publishing, consumer groups, lag and "
                     "dead letters.")


def build() -> dict[str, dict]:
    """File name -> dashboard."""
    out = {f"{svc}.json": service_dashboard(svc) for svc in services()}
    out["event-pipeline.json"] = pipeline_dashboard()
    return out


def render(doc: dict) -> str:
    """Stable JSON text."""
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write the dashboards, or check they are current."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args(argv)
    stale = []
    for name, doc in build().items():
        path = OUT / name
        if args.check:
            if not path.exists() or path.read_text() != render(doc):
                stale.append(name)
        else:
            OUT.mkdir(parents=True, exist_ok=True)
            path.write_text(render(doc))
    if stale:
        print(f"stale dashboards {stale}: run `python deploy/grafana/build_dashboards.py`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
