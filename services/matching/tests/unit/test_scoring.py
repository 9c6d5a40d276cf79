"""Recommendation scores: jieba tokens, components that explain, and the vectorised path equal to the plain loop."""

from __future__ import annotations

import random

import pytest

from matching.domain import DISTRICTS
from matching.scoring import WEIGHTS, Candidate, CandidateIndex, Query, tokenize

pytestmark = pytest.mark.unit


def cand(cid, *, industries=(), text="", district="pudong", certified=False, capacity=10, completed=0,
         cancelled=0, owner=None) -> Candidate:
    return Candidate(id=cid, kind="institution", name=cid, institution_id=owner or cid, industries=tuple(industries),
                     tokens=tuple(tokenize(text)), district=district, certified=certified, capacity_left=capacity,
                     completed=completed, cancelled=cancelled)


def test_chinese_text_is_segmented_into_words_not_characters():
    tokens = tokenize("集成电路制造订单班，培养晶圆制造技术员")
    assert "集成电路" in tokens and "晶圆" in tokens
    assert "的" not in tokens and "路" not in tokens
    assert tokenize("Python 与 FPGA") == ["fpga", "python"]


def test_each_component_explains_its_part_of_the_score():
    idx = CandidateIndex([
        cand("school", industries=["integrated_circuits", "electronics"], text="集成电路 微电子技术",
             district="fengxian", completed=3),
        cand("farm", industries=["agriculture"], text="生态农业", district="chongming", capacity=0),
        cand("cert", industries=["integrated_circuits"], district="lingang", certified=True),
    ])
    q = Query(industries=("integrated_circuits",), tokens=tuple(tokenize("集成电路订单班")), district="lingang",
              needed=2)
    recs = {r.candidate.id: r for r in idx.top(q, 3)}
    school, farm, cert = recs["school"], recs["farm"], recs["cert"]
    assert school.components["industry"] == 0.5 and school.shared_industries == ["integrated_circuits"]
    assert school.components["district"] == 0.5 and cert.components["district"] == 1.0
    assert school.components["text"] > 0 and "集成电路" in school.shared_tokens
    assert cert.components["certification"] == 1.0 and school.components["certification"] == 0.0
    assert farm.components["capacity"] == 0.0 and school.components["capacity"] == 1.0
    assert school.components["outcomes"] == 0.8 and farm.components["outcomes"] == 0.5
    for r in recs.values():
        assert r.score == pytest.approx(sum(WEIGHTS[k] * v for k, v in r.components.items()))
    assert farm.score < school.score


def test_the_owner_is_never_recommended_to_itself():
    idx = CandidateIndex([cand("a"), cand("b"), cand("offer-of-a", owner="a")])
    ids = [r.candidate.id for r in idx.top(Query(industries=(), tokens=(), district=None, exclude_institution="a"))]
    assert ids == ["b"]


@pytest.mark.parametrize("seed", range(20))
def test_vectorised_ranking_is_identical_to_the_per_candidate_loop(seed):
    rng = random.Random(seed)
    vocab = [f"词{i}" for i in range(60)]
    inds = [f"i{i}" for i in range(8)]
    cands = [Candidate(id=f"c{i:04d}", kind=rng.choice(["institution", "offer"]), name="", institution_id=f"o{i % 50}",
                       industries=tuple(rng.sample(inds, rng.randint(0, 3))),
                       tokens=tuple(sorted(set(rng.choices(vocab, k=rng.randint(0, 6))))),
                       district=rng.choice(DISTRICTS + (None,)), certified=rng.random() < 0.3,
                       capacity_left=rng.randint(0, 5), completed=rng.randint(0, 2), cancelled=rng.randint(0, 2))
             for i in range(rng.randint(1, 400))]
    idx = CandidateIndex(cands)
    q = Query(industries=tuple(rng.sample(inds, 2)), tokens=tuple(rng.sample(vocab, 4)) + ("未见词",),
              district=rng.choice(DISTRICTS), needed=rng.randint(1, 4),
              exclude_institution=rng.choice([None, "o1"]))
    fast = idx.top(q, 20)
    slow = idx.top_by_loop(q, 20)
    assert [r.candidate.id for r in fast] == [idx.candidates[i].id for i, _ in slow]
    assert [r.score for r in fast] == [s for _, s in slow]
