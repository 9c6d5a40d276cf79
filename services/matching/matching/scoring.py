"""Explainable recommendation scores: Chinese segmentation (jieba), a vectorised index and its per-candidate twin.

A candidate's score is a weighted sum of six components in [0, 1], each shown to the user:
industry overlap (Jaccard), text relevance (IDF-weighted share of the request's tokens the candidate covers), district
(same 1, neighbouring 0.5), certification (certified industry-education enterprise 1), capacity left (seats left over
seats needed, capped at 1) and past outcomes (Laplace-smoothed completion rate). IDF weights are integers and the sums
are integer sums, so the numpy path and the straightforward Python loop produce bit-identical scores and rankings.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from matching.domain import DISTRICT_NEIGHBOURS, district_affinity, outcome_success_rate

WEIGHTS: dict[str, float] = {
    "industry": 0.25, "text": 0.30, "district": 0.15, "certification": 0.10, "capacity": 0.10, "outcomes": 0.10,
}
COMPONENTS = tuple(WEIGHTS)
DEFAULT_CONCURRENT_COLLABORATIONS = 10  # an institution without a declared capacity: its budget of live matches

_jieba_lock = threading.Lock()
_jieba = None
_WORD = re.compile(r"[\w\u4e00-\u9fff]+")
_STOP = frozenset(["的", "了", "和", "与", "及", "等", "在", "对", "为", "是", "或", "并", "其", "有", "我们", "进行", "相关", "以及", "能力", "具有", "需要", "负责", "熟悉", "优先", "以上"])  # noqa: E501


def init_segmenter() -> None:
    """Load jieba's dictionary once (it takes about a second); safe to call again."""
    global _jieba
    with _jieba_lock:
        if _jieba is None:
            import logging

            import jieba

            jieba.setLogLevel(logging.WARNING)
            jieba.initialize()
            _jieba = jieba


def tokenize(*texts: str | None) -> list[str]:
    """Distinct, sorted search tokens of Chinese/English text: jieba words, lower-cased, without stop words."""
    if _jieba is None:
        init_segmenter()
    out: set[str] = set()
    for text in texts:
        if not text:
            continue
        for word in _jieba.cut_for_search(text):
            w = word.strip().lower()
            if not w or w in _STOP or not _WORD.fullmatch(w):
                continue
            if len(w) == 1 and not w.isascii():
                continue  # single Chinese characters carry little meaning on their own
            out.add(w)
    return sorted(out)


@dataclass(frozen=True)
class Candidate:
    """Something that can be recommended: an institution from the projection, or an open offer."""

    id: str
    kind: str  # "institution" or "offer"
    name: str
    institution_id: str
    industries: tuple[str, ...]
    tokens: tuple[str, ...]
    district: str | None
    certified: bool
    capacity_left: int
    completed: int = 0
    cancelled: int = 0


@dataclass(frozen=True)
class Query:
    """What a recommendation is for: an opportunity's industries, tokens, district and seats needed."""

    industries: tuple[str, ...]
    tokens: tuple[str, ...]
    district: str | None
    needed: int = 1
    exclude_institution: str | None = None


@dataclass
class Recommendation:
    """One ranked candidate with its score, components and the evidence behind them."""

    candidate: Candidate
    score: float
    components: dict[str, float]
    shared_industries: list[str] = field(default_factory=list)
    shared_tokens: list[str] = field(default_factory=list)


def _idf(df: int, n: int) -> int:
    """Smoothed inverse document frequency as an integer (milli-units), so sums are exact."""
    return round(1000 * (math.log((1 + n) / (1 + df)) + 1))


class CandidateIndex:
    """Candidates laid out in flat arrays (CSR for tokens and industries) for vectorised scoring."""

    def __init__(self, candidates: Sequence[Candidate]) -> None:
        self.candidates = sorted(candidates, key=lambda c: (c.kind, c.id))
        cs = self.candidates
        n = len(cs)
        self.n = n
        self.token_vocab: dict[str, int] = {}
        self.industry_vocab: dict[str, int] = {}
        tok_idx, tok_ptr, ind_idx, ind_ptr = [], [0], [], [0]
        for c in cs:
            for t in c.tokens:
                tok_idx.append(self.token_vocab.setdefault(t, len(self.token_vocab)))
            tok_ptr.append(len(tok_idx))
            for i in set(c.industries):
                ind_idx.append(self.industry_vocab.setdefault(i, len(self.industry_vocab)))
            ind_ptr.append(len(ind_idx))
        self.tok_idx = np.asarray(tok_idx, dtype=np.int64)
        self.tok_ptr = np.asarray(tok_ptr, dtype=np.int64)
        self.ind_idx = np.asarray(ind_idx, dtype=np.int64)
        self.ind_ptr = np.asarray(ind_ptr, dtype=np.int64)
        df = np.bincount(self.tok_idx, minlength=len(self.token_vocab)) if tok_idx else np.zeros(0, np.int64)
        self.idf = np.array([_idf(int(d), n) for d in df], dtype=np.int64)
        self.idf_unseen = _idf(0, n)
        self.ind_count = np.diff(self.ind_ptr)
        self.districts = sorted(DISTRICT_NEIGHBOURS) + sorted({c.district or "" for c in cs} - set(DISTRICT_NEIGHBOURS))
        code = {d: i for i, d in enumerate(self.districts)}
        self.district_code = np.array([code[c.district or ""] for c in cs], dtype=np.int64)
        self.certified = np.array([1.0 if c.certified else 0.0 for c in cs])
        self.capacity_left = np.array([max(0, c.capacity_left) for c in cs], dtype=np.int64)
        self.outcomes = np.array([outcome_success_rate(completed=c.completed, cancelled=c.cancelled) for c in cs])
        self.owner_code: dict[str, int] = {}
        self.owner = np.array([self.owner_code.setdefault(c.institution_id, len(self.owner_code)) for c in cs],
                              dtype=np.int64)

    def token_weight(self, token: str) -> int:
        """The integer IDF weight of a token (tokens no candidate has get the highest weight)."""
        i = self.token_vocab.get(token)
        return int(self.idf[i]) if i is not None else self.idf_unseen

    def _segment_sums(self, values: np.ndarray, ptr: np.ndarray) -> np.ndarray:
        """Per-candidate sums of a CSR value array (integer, exact)."""
        cs = np.zeros(len(values) + 1, dtype=np.int64)
        np.cumsum(values, out=cs[1:])
        return cs[ptr[1:]] - cs[ptr[:-1]]

    def components(self, q: Query) -> dict[str, np.ndarray]:
        """All six components for every candidate, vectorised."""
        q_ind = np.zeros(len(self.industry_vocab) + 1, dtype=np.int64)
        q_ind_n = len(set(q.industries))
        for i in set(q.industries):
            if i in self.industry_vocab:
                q_ind[self.industry_vocab[i]] = 1
        overlap = self._segment_sums(q_ind[self.ind_idx], self.ind_ptr)
        union = self.ind_count + q_ind_n - overlap
        industry = np.divide(overlap, union, out=np.zeros(self.n), where=union > 0)
        q_tok = np.zeros(len(self.token_vocab) + 1, dtype=np.int64)
        total = 0
        for t in set(q.tokens):
            w = self.token_weight(t)
            total += w
            if t in self.token_vocab:
                q_tok[self.token_vocab[t]] = w
        covered = self._segment_sums(q_tok[self.tok_idx], self.tok_ptr)
        text = covered / total if total else np.zeros(self.n)
        aff = np.array([district_affinity(q.district, d) for d in self.districts])
        district = aff[self.district_code]
        needed = max(1, q.needed)
        capacity = np.minimum(self.capacity_left, needed) / needed
        return {"industry": industry, "text": text, "district": district, "certification": self.certified,
                "capacity": capacity, "outcomes": self.outcomes}

    def top(self, q: Query, k: int = 20) -> list[Recommendation]:
        """The k best candidates, best first (ties by kind and id), each with its components and evidence."""
        comp = self.components(q)
        score = WEIGHTS["industry"] * comp["industry"]
        for name in COMPONENTS[1:]:
            score = score + WEIGHTS[name] * comp[name]
        if q.exclude_institution is not None and q.exclude_institution in self.owner_code:
            score = np.where(self.owner == self.owner_code[q.exclude_institution], -np.inf, score)
        k = min(k, self.n)
        if k <= 0:
            return []
        kth = np.partition(score, self.n - k)[self.n - k]
        pool = np.nonzero(score >= kth)[0]
        order = pool[np.lexsort((pool, -score[pool]))][:k]
        order = [i for i in order.tolist() if score[i] > -np.inf]
        return [self._explain(i, q, float(score[i]), {n: float(comp[n][i]) for n in COMPONENTS}) for i in order]

    def _explain(self, i: int, q: Query, score: float, components: dict[str, float]) -> Recommendation:
        c = self.candidates[i]
        shared_ind = sorted(set(c.industries) & set(q.industries))
        shared_tok = sorted(set(c.tokens) & set(q.tokens), key=lambda t: (-self.token_weight(t), t))
        return Recommendation(candidate=c, score=score, components=components, shared_industries=shared_ind,
                              shared_tokens=shared_tok[:12])

    def top_by_loop(self, q: Query, k: int = 20) -> list[tuple[int, float]]:
        """The baseline: score every candidate in a plain Python loop, then sort (same formula, same result)."""
        q_ind = set(q.industries)
        q_tok = set(q.tokens)
        weights = {t: self.token_weight(t) for t in q_tok}
        total = sum(weights.values())
        needed = max(1, q.needed)
        scored = []
        for i, c in enumerate(self.candidates):
            if q.exclude_institution is not None and c.institution_id == q.exclude_institution:
                continue
            c_ind = set(c.industries)
            overlap = len(c_ind & q_ind)
            union = len(c_ind) + len(q_ind) - overlap
            comp = {
                "industry": overlap / union if union else 0.0,
                "text": sum(weights[t] for t in c.tokens if t in q_tok) / total if total else 0.0,
                "district": district_affinity(q.district, c.district or ""),
                "certification": 1.0 if c.certified else 0.0,
                "capacity": min(max(0, c.capacity_left), needed) / needed,
                "outcomes": outcome_success_rate(completed=c.completed, cancelled=c.cancelled),
            }
            s = WEIGHTS["industry"] * comp["industry"]
            for name in COMPONENTS[1:]:
                s = s + WEIGHTS[name] * comp[name]
            scored.append((-s, i))
        scored.sort()
        return [(i, -s) for s, i in scored[:k]]


def rank_ids(recs: Iterable[Recommendation]) -> list[str]:
    """Candidate ids in ranked order (for comparisons)."""
    return [r.candidate.id for r in recs]
