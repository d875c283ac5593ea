"""Evaluation: Hit@k / NDCG@k over candidate sets, and the LLM hit rule (FACTS.md §6).

* Score-based metrics (:func:`rank_metrics`): ``scores[U, C]`` with the target in column 0; the
  target's rank counts the negatives scoring **greater than or equal to** it (ties count against
  the model, so a constant scorer gets Hit@1 = 0, not 1). Hit@k = rank < k; NDCG@k =
  1/log2(rank + 2) when rank < k. Random scoring gives Hit@1 ≈ 1/C = 0.05 for C = 20.
* Generation hit (:func:`generation_hit`): the answer counts as a hit when the target title is a
  substring of the quoted part of the generated text (the text between the first pair of double
  quotes; the whole text when it holds no closing quote), after whitespace normalisation —
  A-LLMRec's rule.
"""
from __future__ import annotations

import re
from typing import Iterable, Sequence

import numpy as np

__all__ = ["target_ranks", "rank_metrics", "quoted_answer", "generation_hit", "generation_hit_rate"]


def target_ranks(scores) -> np.ndarray:
    """0-based rank of column 0 among each row (ties pessimistic)."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2 or s.shape[1] < 2:
        raise ValueError(f"scores must be [users, candidates >= 2], got shape {s.shape}")
    if np.isnan(s).any():
        raise ValueError("scores contain NaN")
    return (s[:, 1:] >= s[:, :1]).sum(axis=1)


def rank_metrics(scores, ks: Sequence[int] = (1, 5, 10)) -> dict:
    """``{"hit@k", "ndcg@k" for k in ks, "users", "random_hit@1"}`` from ``scores[U, C]``."""
    r = target_ranks(scores)
    out: dict = {"users": int(len(r)), "random_hit@1": 1.0 / np.asarray(scores).shape[1]}
    for k in ks:
        hit = r < k
        out[f"hit@{k}"] = float(hit.mean()) if len(r) else 0.0
        out[f"ndcg@{k}"] = float(np.where(hit, 1.0 / np.log2(r + 2.0), 0.0).mean()) if len(r) else 0.0
    return out


_WS = re.compile(r"\s+")


def _norm(t: str) -> str:
    return _WS.sub(" ", t).strip()


def quoted_answer(text: str) -> str:
    """The first double-quoted span of ``text`` (straight or curly quotes); the text itself when
    there is no complete quoted span."""
    t = text.replace("\u201c", '"').replace("\u201d", '"')
    a = t.find('"')
    if a >= 0:
        b = t.find('"', a + 1)
        if b > a:
            return t[a + 1:b]
    return t


def generation_hit(generated: str, target_title: str) -> bool:
    """A-LLMRec's rule: the target title is a substring of the quoted generated answer."""
    if not target_title:
        raise ValueError("empty target title")
    return _norm(target_title) in _norm(quoted_answer(generated))


def generation_hit_rate(generated: Iterable[str], targets: Iterable[str]) -> float:
    hits = [generation_hit(g, t) for g, t in zip(generated, targets, strict=True)]
    return float(np.mean(hits)) if hits else 0.0
