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
        (IRanker, {"mode": "tournament", "group_size": 4, "top_k": 1, "margin": 1, "agreement": "all"}),
        (DRanker, {"task": "passage"}),
        (DRanker, {"task": "routing"}),
        (SetwiseRanker, {"num_child": 3, "k": 4}),
    ],
    ids=[
        "iranker-passage",
        "iranker-rec",
        "iranker-routing",
        "iranker-tournament",
        "dranker-passage",
        "dranker-routing",
        "setwise",
    ],
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


@pytest.fixture(scope="module")
def lucene(tmp_path_factory):
    """A real Lucene index of ten small documents, for the pyserini adapter."""
    import json
    import subprocess
    import sys

    root = tmp_path_factory.mktemp("lucene")
    (root / "docs").mkdir()
    docs = "".join(json.dumps({"id": f"d{i}", "contents": f"document {i} text"}) + "\n" for i in range(10))
    (root / "docs" / "docs.jsonl").write_text(docs)
    subprocess.run(
        [sys.executable, "-m", "r1ranker_plugins.integrations.jvm", "pyserini.index.lucene", "--collection",
         "JsonCollection", "--input", str(root / "docs"), "--index", str(root / "index"), "--generator",
         "DefaultLuceneDocumentGenerator", "--threads", "1", "--storeRaw"],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    from r1ranker_plugins.integrations.pyserini import searcher

    return searcher(str(root / "index"))


@pytest.mark.parametrize("adapter", ["rerankers", "langchain", "llama_index", "pyserini"])
def test_any_model_output_gives_a_permutation_through_adapters(tokenizer, lucene, adapter):
    from langchain_core.documents import Document
    from llama_index.core.schema import NodeWithScore, TextNode

    from r1ranker_plugins.integrations.langchain import R1RankerCompressor
    from r1ranker_plugins.integrations.llama_index import R1RankerPostprocessor
    from r1ranker_plugins.integrations.pyserini import PyseriniReranker
    from r1ranker_plugins.integrations.rerankers import R1Ranker

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(
        replies=st.lists(completions, min_size=1, max_size=4),
        n=st.integers(0, 8),
        strategy=st.sampled_from([IRanker, DRanker, SetwiseRanker]),
        seed=st.integers(0, 100),
    )
    def check(replies, n, strategy, seed):
        ranker = strategy(engine=AdversarialEngine(replies, tokenizer, truncated=False))
        texts = [c.text for c in make_candidates(n, seed)]
        if adapter == "rerankers":
            results = R1Ranker(ranker=ranker).rank("q", texts, doc_ids=[f"x{i}" for i in range(n)])
            ids, scores = [r.doc_id for r in results], [r.score for r in results]
        elif adapter == "langchain":
            docs = [Document(page_content=t, metadata={"i": i}) for i, t in enumerate(texts)]
            out = R1RankerCompressor(ranker=ranker, top_n=n).compress_documents(docs, "q")
            ids, scores = [f"x{d.metadata['i']}" for d in out], [d.metadata.get("relevance_score") for d in out]
        elif adapter == "llama_index":
            nodes = [NodeWithScore(node=TextNode(text=t, id_=f"x{i}")) for i, t in enumerate(texts)]
            out = R1RankerPostprocessor(ranker=ranker, top_n=n).postprocess_nodes(nodes, query_str="q")
            ids, scores = [x.node.node_id for x in out], [x.score for x in out]
        else:
            hits = [(f"d{i}", float(n - i)) for i in range(n)]
            [ranking] = PyseriniReranker(lucene, ranker).rerank_run({"1": hits}, {"1": "q"}, progress=False).values()
            ids = [f"x{int(c.id[1:])}" for c in ranking.ranked]
            scores = ranking.scores
        assert sorted(ids) == sorted(f"x{i}" for i in range(n))
        assert all(a > b for a, b in itertools.pairwise(scores))

    check()
