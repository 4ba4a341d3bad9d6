"""The shape every evaluation set takes: queries with first-stage candidates and graded qrels.

Train/test splits hash the query id alone, so changing a builder's seed (new negatives, new
shuffles) never moves a query between train and test.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from typing import Any

from ..types import Candidate

TEST_FRACTION = 0.2


@dataclass
class EvalQuery:
    """One query: its candidates in first-stage order and relevance grades by candidate id."""

    qid: str
    query: str | list[str]  # recommendation: the user's history, oldest first
    candidates: list[Candidate]
    qrels: dict[str, int]
    target: str | None = None  # the single relevant candidate id (paper protocol); None for TREC-style sets


@dataclass
class EvalSet:
    """A named set of queries for one task; `options` says how to prompt and how to score it.

    Options: `protocol` ("trec": ir_measures over graded qrels; "single": the paper's metrics from the
    relevant item's rank), `rel` (lowest relevant grade for binary measures), `ks`, and the ranker
    options the set needs (`scenario`, `item_type`), plus `task_name` (the Ranking-bench name).
    """

    name: str
    task: str
    queries: list[EvalQuery]
    options: dict[str, Any] = field(default_factory=dict)


def rng_for(*parts: Any) -> random.Random:
    """A RNG seeded from a stable hash of `parts` (Python's `hash` is salted per process)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8")).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def split_of(qid: str, test_fraction: float = TEST_FRACTION) -> str:
    """Test or train, from a hash of the query id only, so every seed sees the same split."""
    digest = hashlib.sha256(f"split\x1f{qid}".encode()).digest()
    return "test" if int.from_bytes(digest[:8], "big") / 2**64 < test_fraction else "train"


def keep_split(qid: str, split: str) -> bool:
    if split not in ("train", "test", "all"):
        raise ValueError(f"unknown split {split!r}; expected train, test or all")
    return split == "all" or split_of(qid) == split
