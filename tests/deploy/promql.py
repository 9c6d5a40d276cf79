"""Which metric names a PromQL expression reads, and which ones the services export."""

from __future__ import annotations

import re

from prometheus_client import Counter, Gauge, Histogram, Summary

FUNCTIONS_AND_KEYWORDS = {
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile", "count_values", "group",
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset",
    "rate", "irate", "increase", "delta", "idelta", "deriv", "histogram_quantile", "abs", "absent", "clamp_min",
    "clamp_max", "vector", "scalar", "time", "label_replace", "label_join", "sort", "sort_desc", "inf", "nan",
}
PROMETHEUS_OWN = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (label matchers, grouping clauses, ranges and functions removed)."""
    s = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)                     # string literals
    s = re.sub(r"\{[^}]*\}", " ", s)                                   # label matchers
    s = re.sub(r"\[[^\]]*\]", " ", s)                                  # range selectors
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", s):
        word = m.group(0)
        rest = s[m.end():].lstrip()
        if word.lower() in FUNCTIONS_AND_KEYWORDS or rest.startswith("("):
            continue
        if m.start() > 0 and (s[m.start() - 1].isdigit() or s[m.start() - 1] in "$."):
            continue  # part of a number (1e3) or a Grafana variable ($__range)
        names.add(word)
    return names


def exported_names(module) -> set[str]:
    """The sample names a module's prometheus_client metrics expose (counter _total, histogram _bucket/_sum/_count)."""
    names = set()
    for obj in vars(module).values():
        if isinstance(obj, Counter):
            names.add(obj._name + "_total")
        elif isinstance(obj, Histogram):
            names |= {obj._name + suffix for suffix in ("_bucket", "_sum", "_count")}
        elif isinstance(obj, Summary):
            names |= {obj._name + suffix for suffix in ("", "_sum", "_count")}
        elif isinstance(obj, Gauge):
            names.add(obj._name)
    return names
