"""Load: 64 concurrent LangChain and LlamaIndex calls on one engine share its batches."""

from __future__ import annotations

import asyncio

from langchain_core.documents import Document
from llama_index.core.schema import NodeWithScore, TextNode

from r1ranker_plugins.integrations.langchain import R1RankerCompressor
from r1ranker_plugins.integrations.llama_index import R1RankerPostprocessor

OPTIONS = {"max_new_tokens": 4, "max_candidate_tokens": 16}
TEXTS = ["solar panels make electricity", "bananas are yellow", "inverters convert current", "rice recipe"]
QUERIES = [f"question number {i} about energy" for i in range(64)]


def test_64_concurrent_calls_complete_equal_to_sequential_and_share_batches(tiny_model_path):
    compressor = R1RankerCompressor(model=tiny_model_path, top_n=4, options=OPTIONS)
    postprocessor = R1RankerPostprocessor(model=tiny_model_path, top_n=4, options=OPTIONS)
    engine = compressor.ranker.engine
    assert postprocessor.ranker.engine is engine
    docs = [Document(page_content=t) for t in TEXTS]
    nodes = [NodeWithScore(node=TextNode(text=t, id_=str(i))) for i, t in enumerate(TEXTS)]

    async def main():
        return await asyncio.gather(
            *(compressor.acompress_documents(docs, q) for q in QUERIES),
            *(postprocessor.apostprocess_nodes(nodes, query_str=q) for q in QUERIES),
        )

    before = engine.stats()
    results = asyncio.run(main())
    during = engine.stats()
    assert len(results) == 128 and all(len(r) == 4 for r in results)
    requests, calls = during["requests"] - before["requests"], during["calls"] - before["calls"]
    assert calls * 8 <= requests  # many queries per engine call, not one at a time

    # greedy decoding: a sample of the concurrent results equals the same calls made one by one
    sample = range(0, 64, 8)
    sequential_docs = [compressor.compress_documents(docs, QUERIES[i]) for i in sample]
    sequential_nodes = [postprocessor.postprocess_nodes(nodes, query_str=QUERIES[i]) for i in sample]
    texts = [[d.page_content for d in results[i]] for i in sample]
    assert texts == [[d.page_content for d in r] for r in sequential_docs]
    ids = [[n.node.node_id for n in results[64 + i]] for i in sample]
    assert ids == [[n.node.node_id for n in r] for r in sequential_nodes]
