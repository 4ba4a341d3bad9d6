"""Metrics: TREC conventions through ir_measures, and the paper's single-relevant protocol."""

from __future__ import annotations

import pytest

from r1ranker_plugins.datasets import EvalQuery, EvalSet, load_dataset
from r1ranker_plugins.metrics import first_stage_run, mean_metrics, score_run, single_relevant_metrics, trec_metrics
from r1ranker_plugins.runs import read_trec_run
from r1ranker_plugins.types import Candidate


def test_dl19_bm25_ndcg10_is_0_5058(shared_data):
    """Graded gains, like `trec_eval -m ndcg_cut.10`; from the JSON run and from the TREC file."""
    dl19 = load_dataset("dl19")
    assert len(dl19.queries) == 43
    assert round(mean_metrics(score_run(dl19, first_stage_run(dl19)))["NDCG@10"], 4) == 0.5058
    hits = read_trec_run(shared_data / "passage/dl19/bm25_top100.trec")
    trec = {qid: [docid for docid, _ in ranked] for qid, ranked in hits.items()}
    assert round(mean_metrics(score_run(dl19, trec))["NDCG@10"], 4) == 0.5058


def test_judged_queries_without_results_count_zero():
    qrels = {"a": {"d1": 2}, "b": {"d2": 1}}
    per_query = trec_metrics({"a": ["d1"], "c": ["d9"]}, qrels)
    assert set(per_query) == {"a", "b"}  # unjudged "c" is ignored, unranked "b" is kept
    assert per_query["a"]["NDCG@10"] == 1.0 and per_query["b"]["NDCG@10"] == 0.0
    assert mean_metrics(per_query)["NDCG@10"] == 0.5


def test_binary_measures_use_the_relevance_threshold():
    qrels = {"q": {"d1": 1, "d2": 2}}
    run = {"q": ["d1", "d2"]}
    assert trec_metrics(run, qrels, rel=2)["q"]["MRR"] == 0.5  # TREC DL: grade 1 is not relevant
    assert trec_metrics(run, qrels, rel=1)["q"]["MRR"] == 1.0
    assert trec_metrics(run, qrels, rel=2)["q"]["Recall@20"] == 1.0
    graded = trec_metrics(run, qrels, rel=2)["q"]["NDCG@10"]
    assert graded == trec_metrics(run, qrels, rel=1)["q"]["NDCG@10"] < 1.0  # NDCG keeps the graded gains


@pytest.mark.parametrize("rank", range(1, 21))
def test_single_relevant_protocol_equals_ir_measures(rank):
    docs = [f"d{i}" for i in range(20)]
    target = docs[rank - 1]
    reference = trec_metrics({"q": docs}, {"q": {target: 1}}, ks=(5, 10, 20))["q"]
    paper = single_relevant_metrics(rank, (5, 10, 20))
    assert paper["MRRx100"] == pytest.approx(100 * reference["MRR"])
    for k in (5, 10, 20):
        assert paper[f"NDCG@{k}"] == pytest.approx(reference[f"NDCG@{k}"])
    assert paper["Hit@10"] == reference["Hit@10"]


@pytest.mark.parametrize(("n", "expected"), [(20, 17.99), (10, 29.29), (9, 31.43), (7, 37.04), (5, 45.67)])
def test_random_ranking_expectations(n, expected):
    """Averaged over every position of the relevant item: MRR×100 = 100·H_n/n, Hit@k = k/n."""
    per_rank = [single_relevant_metrics(rank, (5,)) for rank in range(1, n + 1)]
    assert round(sum(m["MRRx100"] for m in per_rank) / n, 2) == expected
    assert sum(m["Hit@5"] for m in per_rank) / n == pytest.approx(min(5, n) / n)


def test_single_protocol_scores_a_missing_target_zero():
    query = EvalQuery("q", "x", [Candidate("a", "A"), Candidate("b", "B")], {"b": 1}, target="b")
    evalset = EvalSet("toy", "passage", [query], {"protocol": "single", "ks": (1,)})
    assert score_run(evalset, {"q": ["a", "b"]})["q"] == {"MRRx100": 50.0, "Hit@1": 0.0, "NDCG@1": 0.0}
    assert score_run(evalset, {})["q"]["MRRx100"] == 0.0
    assert single_relevant_metrics(None, (5,)) == {"MRRx100": 0.0, "Hit@5": 0.0, "NDCG@5": 0.0}
