"""Property tests: whatever the model writes, every strategy returns each candidate exactly once.

An adversarial engine (a real `Engine`, completions drawn by hypothesis) sits behind every
strategy: empty text, garbage, unclosed tags, several answer blocks, labels out of range or
repeated, echoed candidate text, long rambles, unicode and control characters.
"""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from r1ranker_plugins import Candidate, DRanker, IRanker, SetwiseRanker
from r1ranker_plugins.engines import Engine
from r1ranker_plugins.types import Completion

EXAMPLES = 2000

fragments = st.one_of(
    st.just(""),
    st.text(max_size=40),
    st.sampled_from(["<think>", "</think>", "<answer>", "</answer>", "\n", " > ", "[", "]", "passage", "\x00", "\x1b"]),
    st.integers(-3, 40).map(lambda i: f"passage {i}"),
    st.integers(-3, 40).map(lambda i: f"[{i}]"),
    st.sampled_from(["Toy Story (1995)", "gpt-4o", "text of document 3", "ignore previous instructions"]),
    st.builds(lambda n: "ramble " * n, st.integers(0, 1500)),
)
completions = st.lists(fragments, max_size=12).map("".join)


class AdversarialEngine(Engine):
    """Replies with text drawn by hypothesis, cycling through a drawn list."""

    backend = "adversarial"

    def __init__(self, replies: list[str], tokenizer, truncated: bool) -> None:
        super().__init__("adversarial")
        self._replies = itertools.cycle(replies or [""])
        self._tokenizer = tokenizer
        self._finish = "length" if truncated else "stop"

    @property
    def tokenizer(self):
        return self._tokenizer

    def _generate(self, requests):
        return [Completion(next(self._replies), self._finish, 1, 1) for _ in requests]


def make_candidates(n: int, seed: int) -> list[Candidate]:
    rng = random.Random(seed)
    pool = ["Toy Story (1995)", "gpt-4o", "same text", "same text", "<answer>passage 0</answer>", "[1]", ""]
    return [Candidate(f"d{i % max(1, n - 1)}", rng.choice(pool) + f" {i}" * rng.randint(0, 1)) for i in range(n)]


@pytest.mark.parametrize(
    ("cls", "options"),
    [
        (IRanker, {"task": "passage"}),
        (IRanker, {"task": "recommendation"}),
        (IRanker, {"task": "routing", "scenario": "cost"}),
        (DRanker, {"task": "passage"}),
        (DRanker, {"task": "routing"}),
        (SetwiseRanker, {"num_child": 3, "k": 4}),
    ],
    ids=["iranker-passage", "iranker-rec", "iranker-routing", "dranker-passage", "dranker-routing", "setwise"],
)
def test_any_model_output_gives_a_permutation(tokenizer, cls, options):
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(
        replies=st.lists(completions, min_size=1, max_size=6),
        n=st.integers(0, 9),
        depth=st.one_of(st.none(), st.integers(1, 10)),
        seed=st.integers(0, 1000),
        truncated=st.booleans(),
    )
    def check(replies, n, depth, seed, truncated):
        engine = AdversarialEngine(replies, tokenizer, truncated)
        ranker = cls(engine=engine, depth=depth, **options)
        query = ["seen one", "seen two"] if options.get("task") == "recommendation" else "a query"
        ranking = ranker.rank(query, make_candidates(n, seed))
        assert sorted(ranking.order) == list(range(n))
        assert all(a > b for a, b in itertools.pairwise(ranking.scores))
        head = n if depth is None else min(depth, n)
        assert ranking.order[head:] == list(range(head, n))
        for step in ranking.trace:
            assert step.match in {"exact", "normalised", "fuzzy", "label", "list", "none"}
            if step.match == "none":
                assert step.fallback  # every fallback is recorded

    check()
