"""The development broker's data folder: never deleted, even when it no longer fits the security setup."""

from __future__ import annotations

import importlib.util

import pytest

from tests.support.harness import ROOT

pytestmark = pytest.mark.integration


def _broker_script():
    spec = importlib.util.spec_from_file_location("cjrh_broker_for_data", ROOT / "scripts" / "broker.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_data_of_another_security_setup_is_moved_aside_with_a_line_saying_where(tmp_path, capsys):
    broker = _broker_script()
    broker.fetch()
    data = tmp_path / "kafka"
    (data / "logs").mkdir(parents=True)
    (data / "logs" / "meta.properties").write_text("version=1\n")
    (data / "logs" / "registry.institution.v1-0").mkdir()  # a topic's data, formatted for another setup
    (data / "security.marker").write_text("another-fingerprint")
    props = data / "server.properties"
    props.write_text(broker._properties(data, 19999, 20000, 1, None))

    broker._format(data, props, None)

    [aside] = data.glob("logs.other-security-*")
    assert (aside / "registry.institution.v1-0").is_dir(), "the old data is kept"
    assert (data / "logs" / "meta.properties").exists(), "and a fresh folder is formatted"
    assert str(aside) in capsys.readouterr().out
