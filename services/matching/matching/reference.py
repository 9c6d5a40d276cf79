"""The PyPI `matching` package (1.4.x) as a reference solver for tests and benchmarks.

Its import name collides with this service's package, so it is installed into a private folder (`.local/ref-matching`,
with `pip install --target` on first use) and imported there under a swapped `sys.modules`, then kept apart.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

REQUIREMENT = "matching>=1.4,<1.5"
TARGET = Path(__file__).resolve().parents[3] / ".local" / "ref-matching"
_loaded: SimpleNamespace | None = None


def load() -> SimpleNamespace:
    """The reference package's `HospitalResident`, `StableMarriage` and version, installed privately if needed."""
    global _loaded
    if _loaded is not None:
        return _loaded
    if not (TARGET / "matching" / "__init__.py").exists():
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(TARGET),
                        REQUIREMENT], check=True)
    ours = {k: v for k, v in sys.modules.items() if k == "matching" or k.startswith("matching.")}
    for k in ours:
        del sys.modules[k]
    sys.path.insert(0, str(TARGET))
    filters = warnings.filters[:]
    try:
        ref = importlib.import_module("matching")
        games = importlib.import_module("matching.games")
        _loaded = SimpleNamespace(HospitalResident=games.HospitalResident, StableMarriage=games.StableMarriage,
                                  version=ref.__version__, file=ref.__file__)
    finally:
        warnings.filters[:] = filters  # the package turns every warning on at import; undo that
        sys.path.remove(str(TARGET))
        for k in [k for k in sys.modules if k == "matching" or k.startswith("matching.")]:
            del sys.modules[k]
        sys.modules.update(ours)
    return _loaded


def solve_hospital_resident(unit_prefs: dict[str, list[str]], position_prefs: dict[str, list[str]],
                            capacities: dict[str, int]) -> dict[str, str]:
    """Resident-optimal HR with the reference package; returns unit id -> position id for placed units."""
    ref = load()
    # the reference chokes on residents whose lists its own cleaning empties: hand it a clean instance
    live = {p for p, cap in capacities.items() if cap > 0}
    unit_prefs = {u: [p for p in ps if p in live] for u, ps in unit_prefs.items()}
    unit_prefs = {u: ps for u, ps in unit_prefs.items() if ps}
    position_prefs = {p: [u for u in us if u in unit_prefs and p in unit_prefs[u]]
                      for p, us in position_prefs.items() if p in live}
    position_prefs = {p: us for p, us in position_prefs.items() if us}
    unit_prefs = {u: [p for p in ps if p in position_prefs] for u, ps in unit_prefs.items()}
    unit_prefs = {u: ps for u, ps in unit_prefs.items() if ps}
    capacities = {p: capacities[p] for p in position_prefs}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        game = ref.HospitalResident.create_from_dictionaries(unit_prefs, position_prefs, capacities, clean=True)
        result = game.solve(optimal="resident")
    return {r.name: h.name for h, rs in result.items() for r in rs}
