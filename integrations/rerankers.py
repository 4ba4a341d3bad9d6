"""`rerankers` adapter: `Reranker("<model>", model_type="r1ranker", strategy="iranker")`.

Importing this module registers `R1Ranker` in rerankers' model registry (`register()` does it
explicitly too).
"""

from __future__ import annotations

import inspect
from typing import Any

from r1ranker_plugins import Candidate, make_ranker
from r1ranker_plugins.ranker import Ranker

from . import host_version, require

# --- rerankers internals: the one place this adapter leans on them ---------------------------
# Not public API, checked by `host_problems()` (tests/test_compat.py fails naming the version):
# - `rerankers.models.ranker.BaseRanker`: the class `Reranker()` instances derive from; abstract
#   `__init__(model_name_or_path, verbose)`, `score` and `rank`.
# - `rerankers.models.AVAILABLE_RANKERS`: the dict `Reranker(name, model_type=...)` looks the
#   class up in, then calls `cls(name, verbose=..., **kwargs)`.
# - `rerankers.utils.prep_docs(docs, doc_ids, metadata)`: turns strings / Documents into
#   `Document`s with ids, as rerankers' own rankers do.
# - `rerankers.results.Result(document, score, rank)` and `RankedResults(results, query, has_scores)`.
_base = require("rerankers.models.ranker", "rerankers")
_models = require("rerankers.models", "rerankers")
_results = require("rerankers.results", "rerankers")
_utils = require("rerankers.utils", "rerankers")


def host_problems() -> list[str]:
    """What of the above the installed rerankers no longer provides (empty when all is there)."""
    problems = []
    init = list(inspect.signature(_base.BaseRanker.__init__).parameters)
    if init[1:3] != ["model_name_or_path", "verbose"]:
        problems.append(f"BaseRanker.__init__ takes {init[1:]}, not (model_name_or_path, verbose)")
    abstract = set(getattr(_base.BaseRanker, "__abstractmethods__", ()))
    if not abstract <= {"__init__", "score", "rank"}:
        problems.append(f"BaseRanker has new abstract methods {sorted(abstract - {'__init__', 'score', 'rank'})}")
    if not isinstance(getattr(_models, "AVAILABLE_RANKERS", None), dict):
        problems.append("rerankers.models.AVAILABLE_RANKERS is gone or not a dict")
    prep = list(inspect.signature(_utils.prep_docs).parameters)
    if prep[:3] != ["docs", "doc_ids", "metadata"]:
        problems.append(f"rerankers.utils.prep_docs takes {prep}, not (docs, doc_ids, metadata)")
    expected = {"Result": {"document", "score", "rank"}, "RankedResults": {"results", "query", "has_scores"}}
    for name, fields in expected.items():
        cls = getattr(_results, name)
        missing = fields - set(getattr(cls, "model_fields", None) or inspect.signature(cls).parameters)
        if missing:
            problems.append(f"rerankers.results.{name} lacks {sorted(missing)}")
    return [f"rerankers {host_version('rerankers')}: {problem}" for problem in problems]


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
        self.ranker = ranker or make_ranker(strategy, model_name_or_path, backend, **options)
        super().__init__(model_name_or_path or self.ranker.engine.model, verbose)
        self.model_name_or_path = model_name_or_path or self.ranker.engine.model
        self.verbose = verbose

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
    _models.AVAILABLE_RANKERS[MODEL_TYPE] = R1Ranker


register()

__all__ = ["MODEL_TYPE", "R1Ranker", "host_problems", "register"]
