"""pyserini: Lucene index of the DL19 pool → BM25 run → r1ranker rerank → trec_eval.

    python examples/pyserini_dl19.py                             # offline, tiny random-weight model
    python examples/pyserini_dl19.py --model Qwen/Qwen2.5-3B-Instruct --backend vllm --queries 43 --hits 100

The same from the command line (pyserini's flags):
    python -m r1ranker_plugins.integrations.jvm pyserini.index.lucene --collection JsonCollection \\
        --input docs/ --index index/ --generator DefaultLuceneDocumentGenerator --threads 1 --storeRaw
    python -m r1ranker_plugins.integrations.pyserini --index index/ --topics topics.tsv \\
        --output runs/dl19.trec --strategy iranker --model M --hits 100 --qrels qrels.txt
"""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import data_dir, parse_args

args = parse_args(
    __doc__,
    queries={"type": int, "default": 5, "help": "first N DL19 topics"},
    hits={"type": int, "default": 20, "help": "rerank the BM25 top N"},
)
dl19 = data_dir() / "passage" / "dl19"
work = Path(tempfile.mkdtemp(prefix="r1ranker-pyserini-"))
(work / "docs").mkdir()
pool = {}
for record in json.loads((dl19 / "bm25_top100.json").read_text()):
    pool.update({hit["docid"]: hit["content"] for hit in record["hits"]})
with open(work / "docs" / "docs.jsonl", "w", encoding="utf-8") as out:
    out.writelines(json.dumps({"id": docid, "contents": text}) + "\n" for docid, text in pool.items())
topics = (dl19 / "topics.tsv").read_text().splitlines()[: args.queries]
(work / "topics.tsv").write_text("\n".join(topics) + "\n")

run = [sys.executable, "-m"]
subprocess.run(
    [
        *run,
        "r1ranker_plugins.integrations.jvm",
        "pyserini.index.lucene",
        "--collection",
        "JsonCollection",
        "--input",
        str(work / "docs"),
        "--index",
        str(work / "index"),
        "--generator",
        "DefaultLuceneDocumentGenerator",
        "--threads",
        "1",
        "--storeRaw",
    ],
    check=True,
    capture_output=True,
)
tiny = ["--max-new-tokens", "8", "--max-candidate-tokens", "48"] if args.model.endswith("tiny-qwen2") else []
subprocess.run(
    [
        *run,
        "r1ranker_plugins.integrations.pyserini",
        "--index",
        str(work / "index"),
        "--topics",
        str(work / "topics.tsv"),
        "--output",
        str(work / "reranked.trec"),
        "--strategy",
        args.strategy,
        "--model",
        args.model,
        "--backend",
        args.backend,
        "--hits",
        str(args.hits),
        "--qrels",
        str(dl19 / "qrels.txt"),
        "--metric",
        "ndcg_cut.10",
        *tiny,
    ],
    check=True,
)
print(f"run written to {work / 'reranked.trec'}")
