"""Fixtures of the deployment checks: offline schemas and tools, installed once into .local/ and cached there."""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOCAL = ROOT / ".local"
OPS_REQUIREMENTS = ROOT / "deploy" / "requirements-ops.txt"
OPS_PYLIB = LOCAL / "ops-pylib"
ASYNCAPI_SPECS_VERSION = "6.11.1"  # the npm package @asyncapi/specs, which ships the AsyncAPI 3.0.0 JSON Schema
ASYNCAPI_SPECS_DIR = LOCAL / "npm-asyncapi"


def _import_or_install(module: str):
    """Import a tool from deploy/requirements-ops.txt, installing that file into .local/ops-pylib when missing."""
    try:
        return importlib.import_module(module)
    except ImportError:
        pass
    if str(OPS_PYLIB) not in sys.path:
        sys.path.append(str(OPS_PYLIB))
    try:
        return importlib.import_module(module)
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        "--target", str(OPS_PYLIB), "-r", str(OPS_REQUIREMENTS)], check=True)
        importlib.invalidate_caches()
        return importlib.import_module(module)


@pytest.fixture(scope="session")
def kubernetes_validate():
    """The kubernetes-validate package (Kubernetes OpenAPI schemas, offline)."""
    return _import_or_install("kubernetes_validate")


@pytest.fixture(scope="session")
def compose_spec_schema() -> dict:
    """The Compose Specification JSON Schema, as vendored by check-jsonschema."""
    mod = _import_or_install("check_jsonschema")
    path = Path(mod.__file__).parent / "builtin_schemas" / "vendor" / "compose-spec.json"
    return json.loads(path.read_text())


@pytest.fixture(scope="session")
def asyncapi_schema() -> dict:
    """The official AsyncAPI 3.0.0 JSON Schema from @asyncapi/specs (npm), installed into .local/ once."""
    path = ASYNCAPI_SPECS_DIR / "node_modules" / "@asyncapi" / "specs" / "schemas" / "3.0.0-without-$id.json"
    pkg = path.parents[1] / "package.json"
    if not path.exists() or json.loads(pkg.read_text()).get("version") != ASYNCAPI_SPECS_VERSION:
        npm = shutil.which("npm")
        assert npm, "npm is needed once to fetch @asyncapi/specs (Debian package nodejs)"
        ASYNCAPI_SPECS_DIR.mkdir(parents=True, exist_ok=True)
        subprocess.run([npm, "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(ASYNCAPI_SPECS_DIR),
                        f"@asyncapi/specs@{ASYNCAPI_SPECS_VERSION}"], check=True, capture_output=True)
    return json.loads(path.read_text())


def _tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is not installed (Debian package: see .ci/apt-packages.txt)"
    return path


@pytest.fixture(scope="session")
def promtool() -> str:
    """Path of promtool (Debian package prometheus)."""
    return _tool("promtool")


@pytest.fixture(scope="session")
def prometheus_binary() -> str:
    """Path of the Prometheus server (Debian package prometheus)."""
    return _tool("prometheus")


@pytest.fixture(scope="session")
def kustomize_builds() -> dict[str, list[dict]]:
    """`kubectl kustomize` of the base and of every overlay, parsed: name -> documents."""
    import yaml

    kubectl = _tool("kubectl")
    k8s = ROOT / "deploy" / "k8s"
    targets = {"base": k8s / "base", **{p.name: p for p in sorted((k8s / "overlays").iterdir()) if p.is_dir()}}
    out = {}
    for name, path in targets.items():
        proc = subprocess.run([kubectl, "kustomize", str(path)], capture_output=True, text=True)
        assert proc.returncode == 0, f"kustomize build of {name} failed: {proc.stderr}"
        out[name] = [d for d in yaml.safe_load_all(proc.stdout) if d]
    return out


OPENAPI_TYPESCRIPT_VERSION = "7.13.0"  # the npm package that generates portal frontends' TypeScript API types
OPENAPI_TYPESCRIPT_DIR = LOCAL / "npm"


@pytest.fixture(scope="session")
def openapi_typescript() -> str:
    """Path of the `openapi-typescript` command (npm), installed into .local/npm once."""
    cli = OPENAPI_TYPESCRIPT_DIR / "node_modules" / ".bin" / "openapi-typescript"
    pkg = OPENAPI_TYPESCRIPT_DIR / "node_modules" / "openapi-typescript" / "package.json"
    if not cli.exists() or json.loads(pkg.read_text()).get("version") != OPENAPI_TYPESCRIPT_VERSION:
        npm = _tool("npm")
        OPENAPI_TYPESCRIPT_DIR.mkdir(parents=True, exist_ok=True)
        subprocess.run([npm, "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(OPENAPI_TYPESCRIPT_DIR),
                        f"openapi-typescript@{OPENAPI_TYPESCRIPT_VERSION}"], check=True, capture_output=True)
    return str(cli)
