"""Ranking metrics: TREC measures through ir_measures (pytrec_eval), and the IRanker paper's protocol.

TREC conventions: NDCG uses the graded gains; binary measures (MRR, Recall, Hit) count grades
>= `rel` as relevant (TREC DL: `rel=2`); a judged query with no results scores 0 (trec_eval -c).
The paper's protocol scores one relevant item per query from its rank alone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import ir_measures
from ir_measures import RR, R, Success, nDCG

from .datasets import EvalSet

Run = Mapping[str, Sequence[str]]  # qid -> document ids, best first
PerQuery = dict[str, dict[str, float]]  # qid -> metric name -> value


def trec_measures(ks: Sequence[int] = (5, 10, 20), rel: int = 1) -> dict[str, ir_measures.Measure]:
    """Our metric names → ir_measures measures."""
    return {
        **{f"NDCG@{k}": nDCG @ k for k in ks},
        "MRR": RR(rel=rel),
        "Hit@10": Success(rel=rel) @ 10,
        "Recall@20": R(rel=rel) @ 20,
        "Recall@100": R(rel=rel) @ 100,
    }


def trec_metrics(
    run: Run, qrels: Mapping[str, Mapping[str, int]], *, ks: Sequence[int] = (5, 10, 20), rel: int = 1
) -> PerQuery:
    """Per-query TREC measures for every judged query; queries missing from `run` score 0 (-c)."""
    measures = trec_measures(ks, rel)
    names = {measure: name for name, measure in measures.items()}
    scored = {qid: {d: float(len(docs) - i) for i, d in enumerate(docs)} for qid, docs in run.items() if docs}
    judged = {qid: dict(grades) for qid, grades in qrels.items() if grades}
    out: PerQuery = {qid: dict.fromkeys(measures, 0.0) for qid in judged}
    for metric in ir_measures.iter_calc(list(measures.values()), judged, scored):
        out[metric.query_id][names[metric.measure]] = float(metric.value)
    return out


def single_relevant_metrics(rank: int | None, ks: Sequence[int]) -> dict[str, float]:
    """The paper's definitions for one relevant item at 1-based `rank` (None: not ranked).

    MRR×100 = 100/rank, Hit@k = [rank <= k], NDCG@k = 1/log2(rank + 1) if rank <= k (the
    ideal DCG of a single relevant item is 1). Equal to ir_measures on one-document qrels.
    """
    hit = {k: rank is not None and rank <= k for k in ks}
    return {
        "MRRx100": 100.0 / rank if rank else 0.0,
        **{f"Hit@{k}": float(hit[k]) for k in ks},
        **{f"NDCG@{k}": 1.0 / math.log2(rank + 1) if hit[k] and rank else 0.0 for k in ks},
    }


def score_run(evalset: EvalSet, run: Run) -> PerQuery:
    """Per-query metrics under the set's protocol ("trec" or "single")."""
    ks = evalset.options.get("ks", (5, 10, 20))
    if evalset.options.get("protocol") == "single":
        out = {}
        for query in evalset.queries:
            docs = list(run.get(query.qid, ()))
            out[query.qid] = single_relevant_metrics(docs.index(query.target) + 1 if query.target in docs else None, ks)
        return out
    return trec_metrics(run, {q.qid: q.qrels for q in evalset.queries}, ks=ks, rel=evalset.options.get("rel", 1))


def mean_metrics(per_query: PerQuery) -> dict[str, float]:
    """Mean of each metric over the queries (every query has every metric)."""
    if not per_query:
        return {}
    names = next(iter(per_query.values()))
    return {name: sum(values[name] for values in per_query.values()) / len(per_query) for name in names}


def first_stage_run(evalset: EvalSet) -> dict[str, list[str]]:
    """The set's own candidate order as a run."""
    return {q.qid: [c.id for c in q.candidates] for q in evalset.queries}
