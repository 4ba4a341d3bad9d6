"""pyserini end to end: trec_eval on the shared BM25 run, a real Lucene index, BM25, rerank, TREC out."""

from __future__ import annotations

import itertools
from collections import defaultdict

import pytest

from r1ranker_plugins.integrations import jvm
from r1ranker_plugins.integrations.pyserini import PyseriniReranker, main, searcher, trec_eval
from r1ranker_plugins.runs import read_topics

OPTIONS = {"max_new_tokens": 4, "max_candidate_tokens": 16}


@pytest.fixture(scope="module")
def dl19(shared_data):
    return shared_data / "passage" / "dl19"


def test_trec_eval_reproduces_the_published_bm25_figure(dl19):
    out = trec_eval(str(dl19 / "qrels.txt"), str(dl19 / "bm25_top100.trec"), "ndcg_cut.10", extra=("-c", "-l", "2"))
    assert out.split()[-1] == "0.5058"


def test_jvm_uses_java_21_or_newer():
    assert jvm._java_version(f"{jvm.java_home()}/bin/java") >= 21


def test_bm25_hits_reranked_through_the_adapter(lucene_index, tiny_model_path):
    from r1ranker_plugins import SetwiseRanker

    lucene = searcher(lucene_index)
    reranker = PyseriniReranker(lucene, SetwiseRanker(tiny_model_path, **OPTIONS, num_child=3, k=5), hits=8)
    top = reranker.search("what is a corporation", k=5)
    bm25 = [hit.docid for hit in lucene.search("what is a corporation", k=8)]
    assert len(top) == 5 and {c.id for c in top} <= set(bm25)
    assert all(a.score > b.score for a, b in itertools.pairwise(top))
    assert top[0].text and "first_stage_score" in top[0].metadata


def test_command_line_bm25_rerank_and_trec_eval(lucene_index, dl19, tiny_model_path, tmp_path, capsys):
    topics = read_topics(dl19 / "topics.tsv")
    qids = sorted(topics)[:4]
    (tmp_path / "topics.tsv").write_text("".join(f"{q}\t{topics[q]}\n" for q in qids))
    output = tmp_path / "reranked.trec"
    code = main(
        [
            "--index",
            lucene_index,
            "--topics",
            str(tmp_path / "topics.tsv"),
            "--output",
            str(output),
            "--strategy",
            "iranker",
            "--model",
            tiny_model_path,
            "--hits",
            "10",
            "--max-new-tokens",
            "4",
            "--max-candidate-tokens",
            "16",
            "--qrels",
            str(dl19 / "qrels.txt"),
        ]
    )
    assert code == 0
    run = defaultdict(list)
    for line in output.read_text().splitlines():
        qid, _, docid, _, score, _ = line.split()
        run[qid].append((docid, float(score)))
    lucene = searcher(lucene_index)
    assert sorted(run) == qids
    for qid, rows in run.items():
        bm25 = [hit.docid for hit in lucene.search(topics[qid], k=10)]
        assert sorted(d for d, _ in rows) == sorted(bm25)  # every docid exactly once
        assert all(a[1] > b[1] for a, b in itertools.pairwise(rows))
    assert "ndcg_cut_10" in capsys.readouterr().out  # trec_eval accepted the run


def test_rerank_an_existing_run(lucene_index, dl19, tiny_model_path, tmp_path):
    from r1ranker_plugins import IRanker
    from r1ranker_plugins.runs import read_trec_run

    run = dict(list(read_trec_run(dl19 / "bm25_top100.trec").items())[:2])
    rankings = PyseriniReranker(searcher(lucene_index), IRanker(tiny_model_path, **OPTIONS), hits=5).rerank_run(
        run, read_topics(dl19 / "topics.tsv"), progress=False
    )
    for qid, ranking in rankings.items():
        assert sorted(c.id for c in ranking.ranked) == sorted(d for d, _ in run[qid][:5])
