"""LlamaIndex: a RAG query engine over SciFact whose retrieved nodes are reranked by an r1ranker.

python examples/llama_index_scifact.py                       # offline: retrieval + rerank, no answer LLM
python examples/llama_index_scifact.py --model Qwen/Qwen2.5-3B-Instruct --backend vllm --answer-llm
"""

import json

from _common import data_dir, parse_args, ranker_options
from llama_index.core import Settings
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import TextNode
from llama_index.retrievers.bm25 import BM25Retriever

from r1ranker_plugins.integrations.llama_index import R1RankerPostprocessor

args = parse_args(
    __doc__,
    docs={"type": int, "default": 2000, "help": "index the first N SciFact documents"},
    answer_llm={"action": "store_true", "help": "synthesise an answer with Settings.llm (needs a real LLM)"},
)
scifact = data_dir() / "passage" / "scifact"
with open(scifact / "corpus.jsonl", encoding="utf-8") as lines:
    records = [json.loads(line) for _, line in zip(range(args.docs), lines, strict=False)]
nodes = [TextNode(text=f"{r['title']} {r['text']}", id_=r["_id"]) for r in records]

if not args.answer_llm:
    Settings.llm = None  # LlamaIndex's switch for "no answer LLM": retrieval and reranking only
engine = RetrieverQueryEngine.from_args(
    BM25Retriever.from_defaults(nodes=nodes, similarity_top_k=10),
    node_postprocessors=[
        R1RankerPostprocessor(
            model=args.model, strategy=args.strategy, backend=args.backend, top_n=3, options=ranker_options(args)
        )
    ],
    response_mode="compact" if args.answer_llm else "no_text",
)
response = engine.query("Vitamin D deficiency is associated with respiratory infections")
for node in response.source_nodes:
    print(f"{node.score:.0f}  {node.node.node_id}  {node.node.get_content()[:90]}")
if args.answer_llm:
    print("\nanswer:", response)
