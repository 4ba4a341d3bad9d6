"""rerankers, LangChain and LlamaIndex adapters against the real library objects, on the tiny model."""

from __future__ import annotations

import asyncio
import importlib
import itertools
import sys

import pytest

from r1ranker_plugins import get_engine

OPTIONS = {"max_new_tokens": 4, "max_candidate_tokens": 16}
TEXTS = ["solar panels make electricity", "bananas are yellow", "inverters convert current", "rice recipe"]


@pytest.fixture
def model(tiny_model_path):
    return tiny_model_path


def is_permutation_with_decreasing_scores(ids, scores, expected_ids):
    return sorted(ids) == sorted(expected_ids) and all(a > b for a, b in itertools.pairwise(scores))


# --- rerankers ------------------------------------------------------------------------------


def test_rerankers_registry_returns_our_ranker(model):
    from rerankers import Reranker

    from r1ranker_plugins.integrations.rerankers import R1Ranker

    ranker = Reranker(model, model_type="r1ranker", strategy="dranker", verbose=0, **OPTIONS)
    assert isinstance(ranker, R1Ranker)
    results = ranker.rank(
        "how do solar panels work", TEXTS, doc_ids=["a", "b", "c", "d"], metadata=[{"n": i} for i in range(4)]
    )
    assert is_permutation_with_decreasing_scores([r.doc_id for r in results], [r.score for r in results], "abcd")
    assert [r.rank for r in results] == [1, 2, 3, 4]
    assert {r.document.metadata["n"] for r in results} == {0, 1, 2, 3}
    assert results.top_k(2) == results.results[:2]
    assert ranker.score("q", "one doc") == 1.0


def test_rerankers_async_empty_and_duplicates(model):
    from r1ranker_plugins.integrations.rerankers import R1Ranker

    ranker = R1Ranker(model, strategy="setwise", **OPTIONS)
    results = asyncio.run(ranker.rank_async("q", ["same", "same", "other"]))
    assert sorted(r.doc_id for r in results) == [0, 1, 2]
    assert ranker.rank("q", []).results == []


def test_rerankers_explicit_register_is_idempotent():
    from rerankers.models import AVAILABLE_RANKERS

    from r1ranker_plugins.integrations import rerankers as adapter

    AVAILABLE_RANKERS.pop("r1ranker", None)
    adapter.register()
    assert AVAILABLE_RANKERS["r1ranker"] is adapter.R1Ranker


# --- LangChain ------------------------------------------------------------------------------


def keyword_retriever(documents):
    from langchain_core.retrievers import BaseRetriever

    class KeywordRetriever(BaseRetriever):
        """A tiny real retriever: documents sharing a word with the query, in input order."""

        docs: list

        def _get_relevant_documents(self, query, *, run_manager):
            words = set(query.lower().split())
            return [d for d in self.docs if words & set(d.page_content.lower().split())] or list(self.docs)

    return KeywordRetriever(docs=documents)


def test_langchain_compressor_in_contextual_compression_retriever(model):
    from langchain_classic.retrievers import ContextualCompressionRetriever
    from langchain_core.documents import Document

    from r1ranker_plugins.integrations.langchain import R1RankerCompressor

    docs = [Document(page_content=t, metadata={"source": i}) for i, t in enumerate(TEXTS)]
    compressor = R1RankerCompressor(model=model, strategy="iranker", top_n=2, options=OPTIONS)
    retriever = ContextualCompressionRetriever(base_compressor=compressor, base_retriever=keyword_retriever(docs))
    found = retriever.invoke("solar bananas inverters rice")
    assert len(found) == 2
    assert [d.metadata["relevance_score"] for d in found] == [4.0, 3.0]
    assert all("relevance_score" not in d.metadata for d in docs)  # the caller's documents untouched
    again = asyncio.run(retriever.ainvoke("solar bananas inverters rice"))
    assert [d.page_content for d in again] == [d.page_content for d in found]


def test_langchain_edge_cases(model):
    from langchain_core.documents import Document

    from r1ranker_plugins.integrations.langchain import R1RankerCompressor

    compressor = R1RankerCompressor(model=model, top_n=10, options=OPTIONS)
    assert compressor.compress_documents([], "q") == []
    dupes = [Document(page_content="same"), Document(page_content="same"), Document(page_content="x")]
    out = asyncio.run(compressor.acompress_documents(dupes, "q"))
    assert len(out) == 3 and sorted(d.page_content for d in out) == ["same", "same", "x"]
    with pytest.raises(ValueError):
        R1RankerCompressor(model=model, top_n=-1)


def test_rerankers_langchain_export_works_on_langchain_1(model):
    from langchain_core.documents import Document

    from r1ranker_plugins.integrations.rerankers import R1Ranker

    compressor = R1Ranker(model, **OPTIONS).as_langchain_compressor(k=1)
    [best] = compressor.compress_documents([Document(page_content=t) for t in TEXTS], "solar")
    assert best.metadata["relevance_score"] == 4.0


# --- LlamaIndex -----------------------------------------------------------------------------


def nodes(texts):
    from llama_index.core.schema import NodeWithScore, TextNode

    return [NodeWithScore(node=TextNode(text=t, id_=f"n{i}"), score=1.0 / (i + 1)) for i, t in enumerate(texts)]


def test_llama_index_postprocessor_sync_async_and_events(model):
    from llama_index.core.instrumentation import get_dispatcher
    from llama_index.core.instrumentation.event_handlers import BaseEventHandler

    from r1ranker_plugins.integrations.llama_index import R1RankerPostprocessor

    seen = []

    class Collect(BaseEventHandler):
        def handle(self, event, **kwargs):
            seen.append(event.class_name())

    get_dispatcher().add_event_handler(Collect())
    post = R1RankerPostprocessor(model=model, strategy="dranker", top_n=3, options=OPTIONS)
    given = nodes(TEXTS)
    out = post.postprocess_nodes(given, query_str="solar")
    assert len(out) == 3 and [n.score for n in out] == [4.0, 3.0, 2.0]
    assert [n.score for n in given] == [1.0, 0.5, 1 / 3, 0.25]  # the caller's nodes keep their scores
    out_async = asyncio.run(post.apostprocess_nodes(given, query_str="solar"))
    assert [n.node.node_id for n in out_async] == [n.node.node_id for n in out]
    assert seen.count("ReRankStartEvent") >= 2 and seen.count("ReRankEndEvent") >= 2


def test_llama_index_edge_cases(model):
    from r1ranker_plugins.integrations.llama_index import R1RankerPostprocessor

    post = R1RankerPostprocessor(model=model, top_n=10, options=OPTIONS)
    assert post.postprocess_nodes([], query_str="q") == []
    out = post.postprocess_nodes(nodes(["same", "same", "x"]), query_str="q")
    assert sorted(n.node.node_id for n in out) == ["n0", "n1", "n2"]
    with pytest.raises(ValueError, match="needs a query"):
        post.postprocess_nodes(nodes(["a", "b"]))
    with pytest.raises(ValueError):
        R1RankerPostprocessor(model=model, top_n=-1)


def test_llama_index_query_engine(model):
    from llama_index.core import Settings, get_response_synthesizer
    from llama_index.core.query_engine import RetrieverQueryEngine
    from llama_index.core.retrievers import BaseRetriever

    from r1ranker_plugins.integrations.llama_index import R1RankerPostprocessor

    class ListRetriever(BaseRetriever):
        def _retrieve(self, query_bundle):
            return nodes(TEXTS)

    Settings.llm = None  # retrieval only: no answer synthesis
    engine = RetrieverQueryEngine(
        ListRetriever(),
        response_synthesizer=get_response_synthesizer(response_mode="no_text"),
        node_postprocessors=[R1RankerPostprocessor(model=model, top_n=2, options=OPTIONS)],
    )
    response = engine.query("solar panels")
    assert len(response.source_nodes) == 2 and response.source_nodes[0].score == 4.0


# --- all four on one engine -----------------------------------------------------------------


def test_four_adapters_share_one_engine_and_one_model_load(model, tmp_path):
    from langchain_core.documents import Document

    from r1ranker_plugins import IRanker
    from r1ranker_plugins.integrations.langchain import R1RankerCompressor
    from r1ranker_plugins.integrations.llama_index import R1RankerPostprocessor
    from r1ranker_plugins.integrations.pyserini import PyseriniReranker
    from r1ranker_plugins.integrations.rerankers import R1Ranker

    adapters = [
        R1Ranker(model, strategy="iranker", **OPTIONS),
        R1RankerCompressor(model=model, strategy="dranker", options=OPTIONS),
        R1RankerPostprocessor(model=model, strategy="setwise", options=OPTIONS),
        PyseriniReranker(searcher=None, ranker=IRanker(model, **OPTIONS)),
    ]
    engines = {id(a.ranker.engine) for a in adapters}
    assert len(engines) == 1 and adapters[0].ranker.engine is get_engine(model, "transformers")
    adapters[0].rank("q", TEXTS)
    adapters[1].compress_documents([Document(page_content=t) for t in TEXTS], "q")
    adapters[2].postprocess_nodes(nodes(TEXTS), query_str="q")
    adapters[3].ranker.rank("q", TEXTS)
    assert adapters[0].ranker.engine.stats()["model_loads"] == 1


@pytest.mark.parametrize(
    ("module", "framework", "extra"),
    [
        ("rerankers", "rerankers", "rerankers"),
        ("langchain", "langchain_core", "langchain"),
        ("llama_index", "llama_index", "llama-index"),
    ],
)
def test_missing_framework_names_the_extra(monkeypatch, module, framework, extra):
    for name in [m for m in sys.modules if m == framework or m.startswith(framework + ".")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, framework, None)
    monkeypatch.delitem(sys.modules, f"r1ranker_plugins.integrations.{module}", raising=False)
    with pytest.raises(ImportError, match=rf"pip install 'r1ranker-plugins\[{extra}\]'"):
        importlib.import_module(f"r1ranker_plugins.integrations.{module}")
