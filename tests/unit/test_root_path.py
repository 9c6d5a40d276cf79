"""Behind the Ingress, which strips /<service> before forwarding, the API docs name URLs a browser can reach."""

from __future__ import annotations

import importlib

import httpx
import pytest

pytestmark = pytest.mark.unit

SERVICES = ["registry", "matching", "events", "notify"]


def app_of(service: str, root_path: str):
    """The service's app as the container runs it, with <SVC>_ROOT_PATH set (no lifespan: nothing is connected)."""
    main = importlib.import_module(f"{service}.main")
    config = importlib.import_module(f"{service}.config")
    return main.create_app(config.Settings(root_path=root_path, run_migrations=False))


async def get(app, path: str) -> httpx.Response:
    """GET `path` as the Ingress forwards it: with the prefix already stripped."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cjrh.test") as client:
        return await client.get(path)


@pytest.mark.parametrize("service", SERVICES)
async def test_docs_served_under_a_root_path_load_the_prefixed_openapi_and_assets(service):
    app = app_of(service, f"/{service}")
    docs = await get(app, "/docs")
    assert docs.status_code == 200
    assert f"'/{service}/openapi.json'" in docs.text or f'"/{service}/openapi.json"' in docs.text
    assert f"/{service}/static-offline-docs/swagger-ui-bundle.js" in docs.text
    assert "'/openapi.json'" not in docs.text and '"/openapi.json"' not in docs.text
    redoc = await get(app, "/redoc")
    assert f"/{service}/openapi.json" in redoc.text
    openapi = await get(app, "/openapi.json")
    assert openapi.json()["servers"] == [{"url": f"/{service}"}]
    assert (await get(app, "/static-offline-docs/swagger-ui-bundle.js")).status_code == 200
    assert (await get(app, "/healthz")).status_code == 200
    assert (await get(app, f"/{service}/healthz")).status_code == 200  # reached without the proxy, prefix kept


async def test_without_a_root_path_the_docs_use_absolute_paths_from_the_server_root():
    app = app_of("registry", "")
    docs = await get(app, "/docs")
    assert "/openapi.json" in docs.text and "/registry/" not in docs.text
    assert "servers" not in (await get(app, "/openapi.json")).json()


async def test_a_trailing_slash_in_the_setting_does_not_double_the_separator():
    docs = await get(app_of("events", "/events/"), "/docs")
    assert "/events/openapi.json" in docs.text and "//openapi.json" not in docs.text
