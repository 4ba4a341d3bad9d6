"""`rerankers` adapter: `Reranker("<model>", model_type="r1ranker", strategy="iranker")`.

Importing this module registers `R1Ranker` in rerankers' model registry (`register()` does it
explicitly too).
"""

from __future__ import annotations

from typing import Any

from r1ranker_plugins import Candidate, make_ranker
from r1ranker_plugins.ranker import Ranker

from . import require

_base = require("rerankers.models.ranker", "rerankers")
_results = require("rerankers.results", "rerankers")
_utils = require("rerankers.utils", "rerankers")

MODEL_TYPE = "r1ranker"


class R1Ranker(_base.BaseRanker):
    """A rerankers `BaseRanker` backed by an r1ranker ranker (IRanker, DRanker or setwise).

    Scores are comparative: they order the documents of one call (best = highest) and are not
    comparable across calls.
    """

    def __init__(
        self,
        model_name_or_path: str | None = None,
        verbose: int = 1,
        *,
        strategy: str = "iranker",
        backend: str = "transformers",
        ranker: Ranker | None = None,
        **options: Any,
    ) -> None:
        self.verbose = verbose
        self.ranker = ranker or make_ranker(strategy, model_name_or_path, backend, **options)

    def rank(self, query: str, docs: Any, doc_ids: Any = None, metadata: Any = None) -> Any:
        documents = _documents(docs, doc_ids, metadata)
        return self._results(query, documents, self.ranker.rank(query, _candidates(documents)))

    async def rank_async(self, query: str, docs: Any, doc_ids: Any = None, metadata: Any = None) -> Any:
        documents = _documents(docs, doc_ids, metadata)
        return self._results(query, documents, await self.ranker.arank(query, _candidates(documents)))

    def score(self, query: str, doc: str) -> float:
        """A lone document gets the top score of a one-document ranking (scores are comparative)."""
        return self.ranker.rank(query, [doc]).scores[0]

    def as_langchain_compressor(self, k: int = 10) -> Any:
        """A LangChain compressor that works with langchain 1.x (rerankers' own does not)."""
        from .langchain import R1RankerCompressor

        return R1RankerCompressor(ranker=self.ranker, top_n=k)

    @staticmethod
    def _results(query: str, documents: list, ranking) -> Any:
        results = [
            _results.Result(document=documents[i], score=score, rank=rank)
            for rank, (i, score) in enumerate(zip(ranking.order, ranking.scores, strict=True), start=1)
        ]
        return _results.RankedResults(results=results, query=query, has_scores=True)


def _documents(docs: Any, doc_ids: Any, metadata: Any) -> list:
    if isinstance(docs, list) and not docs:
        return []
    return _utils.prep_docs(docs, doc_ids, metadata)


def _candidates(documents: list) -> list[Candidate]:
    return [Candidate(str(doc.doc_id), doc.text, dict(doc.metadata)) for doc in documents]


def register() -> None:
    """Make `Reranker(model, model_type="r1ranker", ...)` return an `R1Ranker`."""
    require("rerankers.models", "rerankers").AVAILABLE_RANKERS[MODEL_TYPE] = R1Ranker


register()

__all__ = ["MODEL_TYPE", "R1Ranker", "register"]
