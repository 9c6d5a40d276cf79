"""The deployment scripts as importable modules (they live outside any package): the AsyncAPI generator and ops.py."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def load(name: str, path: Path) -> ModuleType:
    """Import a script by path once, under a stable module name."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


gen = load("cjrh_asyncapi_generator", ROOT / "scripts" / "asyncapi.py")
ops = load("cjrh_container_ops", ROOT / "deploy" / "docker" / "ops.py")
