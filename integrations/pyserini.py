"""pyserini adapter: rerank BM25 hits or whole TREC runs, write TREC runs, evaluate with trec_eval.

    python -m r1ranker_plugins.integrations.pyserini --index PATH_OR_NAME --topics FILE_OR_NAME \\
        --run bm25.trec --output out.trec --strategy iranker --model M --hits 100

Without `--run`, the first stage is pyserini's BM25 over `--index`. The JVM is started for you
(see `r1ranker_plugins.integrations.jvm`), so import this module before pyserini.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from r1ranker_plugins.cli import ranker_from_args
from r1ranker_plugins.ranker import Ranker
from r1ranker_plugins.runs import read_topics, read_trec_run, trec_lines
from r1ranker_plugins.settings import add_ranker_flags
from r1ranker_plugins.types import Candidate, Ranking

from . import jvm


def searcher(index: str):
    """A `LuceneSearcher` over a local index directory or a pyserini prebuilt index name."""
    lucene = jvm.import_pyserini("pyserini.search.lucene")
    if os.path.isdir(index):
        return lucene.LuceneSearcher(index)
    return lucene.LuceneSearcher.from_prebuilt_index(index)


def topics(source: str) -> dict[str, str]:
    """Topics from a file (`qid<TAB>query`, BEIR queries.jsonl) or a pyserini topic set name."""
    if os.path.exists(source):
        return read_topics(source)
    search = jvm.import_pyserini("pyserini.search")
    return {str(qid): topic["title"] for qid, topic in search.get_topics(source).items()}


class PyseriniReranker:
    """Rerank pyserini hits with an r1ranker ranker; texts come from the searcher's index."""

    def __init__(self, searcher: Any, ranker: Ranker, hits: int = 100) -> None:
        self.searcher = searcher
        self.ranker = ranker
        self.hits = hits

    def text(self, docid: str) -> str:
        """`title` + `contents` (or `text`) of a stored document."""
        doc = self.searcher.doc(docid)
        if doc is None:
            raise KeyError(f"document {docid!r} is not in the index")
        raw = doc.raw() or ""
        try:
            fields = json.loads(raw)
        except json.JSONDecodeError:
            return doc.contents() or raw
        if not isinstance(fields, dict):
            return raw
        body = fields.get("contents", fields.get("text", ""))
        title = fields.get("title")
        return f"{title} {body}".strip() if title else str(body)

    def candidates(self, hits: Sequence[tuple[str, float]]) -> list[Candidate]:
        return [Candidate(docid, self.text(docid), {"first_stage_score": score}, score) for docid, score in hits]

    def search(self, query: str, k: int = 10) -> list[Candidate]:
        """BM25 top `hits`, reranked; the best `k` as Candidates whose `score` is the rerank score."""
        found = [(hit.docid, hit.score) for hit in self.searcher.search(query, k=self.hits)]
        ranking = self.ranker.rank(query, self.candidates(found))
        return _scored(ranking)[:k]

    def rerank_run(
        self,
        run: Mapping[str, Sequence[tuple[str, float]]],
        queries: Mapping[str, str],
        *,
        progress: bool = True,
        on_result: Callable[[str, Ranking], None] | None = None,
    ) -> dict[str, Ranking]:
        """Rerank the top `hits` of every query of a run, all queries batched together."""
        missing = [qid for qid in run if qid not in queries]
        if missing:
            raise KeyError(f"{len(missing)} run queries have no topic, e.g. {missing[0]!r}")
        qids = list(run)
        lists = [self.candidates(run[qid][: self.hits]) for qid in qids]
        callback = None if on_result is None else (lambda i, ranking: on_result(qids[i], ranking))
        rankings = self.ranker.rank_many([queries[q] for q in qids], lists, progress=progress, on_result=callback)
        return dict(zip(qids, rankings, strict=True))


def _scored(ranking: Ranking) -> list[Candidate]:
    return [Candidate(c.id, c.text, c.metadata, score) for c, score in zip(ranking.ranked, ranking.scores, strict=True)]


def trec_eval(qrels: str, run: str, *metrics: str, extra: Sequence[str] = ("-c",)) -> str:
    """pyserini's trec_eval (a Java tool), with a Java 21+ on PATH; returns its output."""
    command = [sys.executable, "-m", "pyserini.eval.trec_eval", *extra]
    for metric in metrics:
        command += ["-m", metric]
    result = subprocess.run([*command, qrels, run], capture_output=True, text=True, env=jvm.java_env())
    if result.returncode != 0:
        if "urllib.error.URLError" in result.stderr:
            raise jvm.offline_error("pyserini.eval.trec_eval", result.stderr.strip().splitlines()[-1])
        raise RuntimeError(f"trec_eval failed: {result.stderr.strip()[-500:]}")
    return result.stdout


__all__ = ["PyseriniReranker", "main", "searcher", "topics", "trec_eval"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m r1ranker_plugins.integrations.pyserini",
        description="Rerank a first-stage run (or pyserini BM25 hits) with an r1ranker ranker.",
    )
    parser.add_argument("--index", required=True, help="Lucene index directory or prebuilt index name")
    parser.add_argument("--topics", required=True, help="topics file (qid<TAB>query, queries.jsonl) or pyserini name")
    parser.add_argument("--run", help="first-stage TREC run; default: BM25 over --index")
    parser.add_argument("--output", required=True, help="TREC run to write")
    parser.add_argument("--hits", type=int, default=100, help="rerank the top N hits per query")
    parser.add_argument("--run-tag", default=None)
    parser.add_argument("--qrels", help="evaluate the output with trec_eval against these qrels")
    parser.add_argument("--metric", action="append", default=None, help="trec_eval metric (default ndcg_cut.10)")
    add_ranker_flags(parser)
    args = parser.parse_args(argv)

    index = searcher(args.index)
    queries = topics(args.topics)
    if args.run:
        run = read_trec_run(args.run)
    else:
        run = {qid: [(h.docid, h.score) for h in index.search(q, k=args.hits)] for qid, q in queries.items()}
    reranker = PyseriniReranker(index, ranker_from_args(args), hits=args.hits)
    tag = args.run_tag or f"r1ranker-{reranker.ranker.label}"
    with open(args.output, "w", encoding="utf-8") as out:

        def write(qid: str, ranking: Ranking) -> None:
            out.write("\n".join(trec_lines(qid, ranking, tag)) + "\n")
            out.flush()

        reranker.rerank_run(run, queries, on_result=write)
    if args.qrels:
        print(trec_eval(args.qrels, args.output, *(args.metric or ["ndcg_cut.10"]), extra=("-c", "-l", "2")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
