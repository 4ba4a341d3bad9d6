"""TREC-style passage sets: a first-stage run with texts (RankGPT JSON, or TREC run + corpus) and qrels."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..runs import read_corpus, read_rankgpt_json, read_topics, read_trec_run
from ..types import Candidate
from .types import EvalQuery, EvalSet


def read_qrels(path: str | Path) -> dict[str, dict[str, int]]:
    """TREC qrels (`qid iter docid grade`) or BEIR TSV (`query-id corpus-id score` with a header)."""
    qrels: dict[str, dict[str, int]] = defaultdict(dict)
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            fields = line.split()
            if not fields or (number == 1 and fields[0] == "query-id"):
                continue
            if len(fields) == 4:
                qid, _, docid, grade = fields
            elif len(fields) == 3:
                qid, docid, grade = fields
            else:
                raise ValueError(f"{path}:{number}: expected 'qid iter docid grade' or 'qid docid grade'")
            qrels[qid][docid] = int(float(grade))
    return dict(qrels)


def _with_first_stage(
    name: str,
    queries: dict[str, str],
    ranked: Mapping[str, Sequence[Candidate]],
    qrels: dict[str, dict[str, int]],
    rel: int,
) -> EvalSet:
    """Judged queries only; a judged query without results keeps no candidates and scores 0 (trec_eval -c)."""
    out = [EvalQuery(qid, queries.get(qid, ""), list(ranked.get(qid, [])), grades) for qid, grades in qrels.items()]
    return EvalSet(name, "passage", out, {"protocol": "trec", "rel": rel, "ks": (5, 10, 20), "primary": "NDCG@10"})


def load_rankgpt(run: str | Path, qrels: str | Path, *, name: str, rel: int = 2, hits: int | None = None) -> EvalSet:
    """A RankGPT/rank_llm JSON run (texts inside) with TREC qrels, e.g. TREC DL19/DL20 BM25 top-100."""
    runs = read_rankgpt_json(run)
    topics = {r.qid: r.query for r in runs}
    ranked = {r.qid: r.candidates[:hits] if hits else r.candidates for r in runs}
    return _with_first_stage(name, topics, ranked, read_qrels(qrels), rel)


def load_trec(
    run: str | Path,
    qrels: str | Path,
    topics: str | Path,
    corpus: str | Path,
    *,
    name: str,
    rel: int = 1,
    hits: int | None = None,
) -> EvalSet:
    """A TREC run joined with topics (TSV or BEIR queries.jsonl), a corpus and qrels (TREC or BEIR TSV)."""
    first_stage = {qid: ranked[:hits] if hits else ranked for qid, ranked in read_trec_run(run).items()}
    grades = read_qrels(qrels)
    wanted = {docid for qid in grades for docid, _ in first_stage.get(qid, [])}
    texts = read_corpus(corpus, ids=wanted)
    missing = wanted - texts.keys()
    if missing:
        raise ValueError(f"{run}: {len(missing)} documents are not in {corpus}, e.g. {sorted(missing)[0]!r}")
    ranked = {qid: [Candidate(d, texts[d], {}, s) for d, s in hits_] for qid, hits_ in first_stage.items()}
    return _with_first_stage(name, read_topics(topics), ranked, grades, rel)


def load_beir(directory: str | Path, *, name: str, run: str = "bm25_top100.trec", rel: int = 1) -> EvalSet:
    """A BEIR directory (corpus.jsonl, queries.jsonl, qrels/test.tsv) with a TREC first-stage run in it."""
    directory = Path(directory)
    return load_trec(
        directory / run, directory / "qrels" / "test.tsv", directory / "queries.jsonl", directory, name=name, rel=rel
    )
