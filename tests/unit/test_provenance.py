"""The topic owners every consumer checks an event's `source` against (common.provenance)."""

from __future__ import annotations

import pytest

from common.provenance import provenance_problem, topic_owners

pytestmark = pytest.mark.unit
OWNERS = topic_owners("//platform.cjrh.sh.cn")


def test_a_service_topic_is_owned_by_its_publishing_service_under_the_configured_source_base():
    assert OWNERS["registry.institution.v1"] == {"//platform.cjrh.sh.cn/registry"}
    assert topic_owners("//other.example")["matching.match.v1"] == {"//other.example/matching"}


def test_an_inbound_topic_is_owned_by_the_sources_its_platforms_declare():
    assert OWNERS["municipal.enterprise.v1"] == {"//scjgj.sh.gov.cn/enterprise"}
    assert OWNERS["municipal.talent-demand.v1"] == {"//rsj.sh.gov.cn/talent-demand"}


def test_an_event_from_its_owner_passes_and_from_anyone_else_is_refused_with_the_reason():
    assert provenance_problem("registry.institution.v1", "//platform.cjrh.sh.cn/registry", OWNERS) is None
    problem = provenance_problem("registry.institution.v1", "//platform.cjrh.sh.cn/matching", OWNERS)
    assert problem and "//platform.cjrh.sh.cn/matching" in problem and "//platform.cjrh.sh.cn/registry" in problem


def test_topics_that_are_not_the_platforms_are_not_checked():
    assert provenance_problem("scratch.abc.v1", "//tests", OWNERS) is None
