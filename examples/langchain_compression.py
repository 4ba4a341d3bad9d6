"""LangChain: a ContextualCompressionRetriever = BM25 retriever + r1ranker compressor, over SciFact.

python examples/langchain_compression.py                     # offline, tiny random-weight model
python examples/langchain_compression.py --model Qwen/Qwen2.5-3B-Instruct --backend vllm
"""

import json

from _common import data_dir, parse_args, ranker_options
from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_community.retrievers import BM25Retriever
from langchain_core.documents import Document

from r1ranker_plugins.integrations.langchain import R1RankerCompressor

args = parse_args(__doc__, docs={"type": int, "default": 2000, "help": "index the first N SciFact documents"})
scifact = data_dir() / "passage" / "scifact"
with open(scifact / "corpus.jsonl", encoding="utf-8") as lines:
    records = [json.loads(line) for _, line in zip(range(args.docs), lines, strict=False)]
documents = [Document(page_content=f"{r['title']} {r['text']}", metadata={"id": r["_id"]}) for r in records]

retriever = ContextualCompressionRetriever(
    base_compressor=R1RankerCompressor(
        model=args.model, strategy=args.strategy, backend=args.backend, top_n=3, options=ranker_options(args)
    ),
    base_retriever=BM25Retriever.from_documents(documents, k=10),
)
for doc in retriever.invoke("Vitamin D deficiency is associated with respiratory infections"):
    print(f"{doc.metadata['relevance_score']:.0f}  {doc.metadata['id']}  {doc.page_content[:90]}")
