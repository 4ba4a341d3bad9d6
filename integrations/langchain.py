"""LangChain adapter: a document compressor for `ContextualCompressionRetriever`.

from langchain_classic.retrievers import ContextualCompressionRetriever
compressor = R1RankerCompressor(model="Qwen/Qwen2.5-3B-Instruct", strategy="iranker", top_n=5)
retriever = ContextualCompressionRetriever(base_compressor=compressor, base_retriever=bm25)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from r1ranker_plugins import make_ranker
from r1ranker_plugins.ranker import Ranker
from r1ranker_plugins.types import Ranking

from . import require

_compressor = require("langchain_core.documents.compressor", "langchain")
_pydantic = require("pydantic", "langchain")


class R1RankerCompressor(_compressor.BaseDocumentCompressor):
    """Rerank retrieved documents and keep the best `top_n`.

    Returns copies with `metadata["relevance_score"]`; the caller's documents are untouched.
    """

    model: str | None = None
    strategy: str = "iranker"
    backend: str = "transformers"
    top_n: int = _pydantic.Field(default=3, ge=0)
    options: dict[str, Any] = _pydantic.Field(default_factory=dict, description="ranker options, e.g. depth")
    _ranker: Ranker = _pydantic.PrivateAttr()

    model_config = _pydantic.ConfigDict(arbitrary_types_allowed=True)

    def __init__(self, ranker: Ranker | None = None, **data: Any) -> None:
        super().__init__(**data)
        self._ranker = ranker or make_ranker(self.strategy, self.model, self.backend, **self.options)

    @property
    def ranker(self) -> Ranker:
        return self._ranker

    def compress_documents(self, documents: Sequence[Any], query: str, callbacks: Any = None) -> Sequence[Any]:
        if not documents:
            return []
        ranking = self._ranker.rank(query, [doc.page_content for doc in documents])
        return self._select(documents, ranking)

    async def acompress_documents(self, documents: Sequence[Any], query: str, callbacks: Any = None) -> Sequence[Any]:
        if not documents:
            return []
        ranking = await self._ranker.arank(query, [doc.page_content for doc in documents])
        return self._select(documents, ranking)

    def _select(self, documents: Sequence[Any], ranking: Ranking) -> list[Any]:
        return [
            documents[i].model_copy(update={"metadata": {**documents[i].metadata, "relevance_score": score}})
            for i, score in list(zip(ranking.order, ranking.scores, strict=True))[: self.top_n]
        ]


__all__ = ["R1RankerCompressor"]
