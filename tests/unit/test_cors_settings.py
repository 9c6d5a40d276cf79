"""CORS_ORIGINS: no cross-origin caller is allowed unless configured; the setting reads as a list or comma-separated."""

from __future__ import annotations

import pytest

from common.config import ServiceSettings

pytestmark = pytest.mark.unit


def test_no_origin_is_allowed_by_default(monkeypatch):
    monkeypatch.delenv("CORS_ORIGINS", raising=False)
    assert ServiceSettings().cors_origins == []


@pytest.mark.parametrize("value", ["http://localhost:5173, http://127.0.0.1:5173/",
                                   '["http://localhost:5173", "http://127.0.0.1:5173"]'])
def test_origins_read_from_the_environment(monkeypatch, value):
    monkeypatch.setenv("CORS_ORIGINS", value)
    assert ServiceSettings().cors_origins == ["http://localhost:5173", "http://127.0.0.1:5173"]
