"""LlamaIndex adapter: a node postprocessor for query engines and retrievers.

postprocessor = R1RankerPostprocessor(model="Qwen/Qwen2.5-3B-Instruct", strategy="iranker", top_n=5)
engine = index.as_query_engine(similarity_top_k=20, node_postprocessors=[postprocessor])
"""

from __future__ import annotations

from typing import Any

from r1ranker_plugins import make_ranker
from r1ranker_plugins.ranker import Ranker
from r1ranker_plugins.types import Ranking

from . import host_version, require

_types = require("llama_index.core.postprocessor.types", "llama-index")
_schema = require("llama_index.core.schema", "llama-index")
_bridge = require("llama_index.core.bridge.pydantic", "llama-index")
_instrumentation = require("llama_index.core.instrumentation", "llama-index")
_events = require("llama_index.core.instrumentation.events.rerank", "llama-index")

# --- llama-index-core internals: the one place this adapter leans on them ---------------------
# Not public API, checked by `host_problems()` (tests/test_compat.py fails naming the version):
# - `BaseNodePostprocessor.postprocess_nodes` / `apostprocess_nodes` call the subclass hooks
#   `_postprocess_nodes` / `_apostprocess_nodes` (the async pair first appears in 0.12.31).
# - ReRankStartEvent(query, nodes, top_n, model_name) and ReRankEndEvent(nodes), the events
#   llama-index's own rerankers send, so instrumentation handlers see ours the same way.
HOOKS = {"postprocess_nodes": "_postprocess_nodes", "apostprocess_nodes": "_apostprocess_nodes"}
EVENT_FIELDS = {"ReRankStartEvent": {"query", "nodes", "top_n", "model_name"}, "ReRankEndEvent": {"nodes"}}


def host_problems() -> list[str]:
    """What of the above the installed llama-index-core no longer provides (empty when all is there)."""
    import inspect

    base = _types.BaseNodePostprocessor
    problems = []
    for public, hook in HOOKS.items():
        method = getattr(base, public, None)
        if method is None or not hasattr(base, hook):
            problems.append(f"BaseNodePostprocessor has no {public} -> {hook} pair")
        elif hook not in inspect.getsource(method):
            problems.append(f"BaseNodePostprocessor.{public} no longer calls {hook}")
    for name, fields in EVENT_FIELDS.items():
        event = getattr(_events, name, None)
        missing = fields - set(getattr(event, "model_fields", {}))
        if event is None or missing:
            problems.append(f"{name} is gone or lacks the fields {sorted(missing)}")
    return [f"llama-index-core {host_version('llama-index-core')}: {problem}" for problem in problems]


dispatcher = _instrumentation.get_dispatcher(__name__)


class R1RankerPostprocessor(_types.BaseNodePostprocessor):
    """Rerank nodes with an r1ranker ranker and keep the best `top_n`, scored by the ranking."""

    model: str | None = _bridge.Field(default=None, description="hub id or local path of the ranking LLM")
    strategy: str = _bridge.Field(default="iranker", description="iranker | dranker | setwise")
    backend: str = _bridge.Field(default="transformers", description="transformers | vllm | openai")
    top_n: int = _bridge.Field(default=3, ge=0, description="number of nodes to return")
    options: dict[str, Any] = _bridge.Field(default_factory=dict, description="ranker options, e.g. depth")
    _ranker: Ranker = _bridge.PrivateAttr()

    def __init__(self, ranker: Ranker | None = None, **data: Any) -> None:
        super().__init__(**data)
        self._ranker = ranker or make_ranker(self.strategy, self.model, self.backend, **self.options)

    @classmethod
    def class_name(cls) -> str:
        return "R1RankerPostprocessor"

    @property
    def ranker(self) -> Ranker:
        return self._ranker

    def _postprocess_nodes(self, nodes: list[Any], query_bundle: Any = None) -> list[Any]:
        query, texts = self._start(nodes, query_bundle)
        if not nodes:
            return self._end([])
        return self._end(self._select(nodes, self._ranker.rank(query, texts)))

    async def _apostprocess_nodes(self, nodes: list[Any], query_bundle: Any = None) -> list[Any]:
        query, texts = self._start(nodes, query_bundle)
        if not nodes:
            return self._end([])
        return self._end(self._select(nodes, await self._ranker.arank(query, texts)))

    def _start(self, nodes: list[Any], query_bundle: Any) -> tuple[str, list[str]]:
        if query_bundle is None:
            raise ValueError("R1RankerPostprocessor needs a query (query_bundle or query_str)")
        dispatcher.event(
            _events.ReRankStartEvent(
                query=query_bundle, nodes=nodes, top_n=self.top_n, model_name=self._ranker.engine.model
            )
        )
        mode = _schema.MetadataMode.EMBED
        return query_bundle.query_str, [n.node.get_content(metadata_mode=mode) for n in nodes]

    def _select(self, nodes: list[Any], ranking: Ranking) -> list[Any]:
        return [
            _schema.NodeWithScore(node=nodes[i].node, score=score)
            for i, score in list(zip(ranking.order, ranking.scores, strict=True))[: self.top_n]
        ]

    def _end(self, nodes: list[Any]) -> list[Any]:
        dispatcher.event(_events.ReRankEndEvent(nodes=nodes))
        return nodes


__all__ = ["R1RankerPostprocessor", "host_problems"]
