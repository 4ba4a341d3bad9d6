"""`r1ranker eval` end to end, the SIMULATED judge through the real prompt/parse path, resume and compare."""

from __future__ import annotations

import json
from pathlib import Path

import ir_measures
import pytest

from r1ranker_plugins import DRanker, IRanker
from r1ranker_plugins.cli import main
from r1ranker_plugins.datasets import load_dataset
from r1ranker_plugins.evaluation import compare, evaluate
from r1ranker_plugins.parsing import extract_answer
from r1ranker_plugins.runs import run_docids
from r1ranker_plugins.simulated import SimulatedJudge, judge_labels, query_key
from r1ranker_plugins.types import Question, Request


def eval_cli(out: Path, *args: str) -> dict:
    assert main(["eval", *args, "--out", str(out)]) == 0
    return json.loads((out / "metrics.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def dl19():
    return load_dataset("dl19")


def ideal_top(dl19, depth: int, k: int) -> float:
    """NDCG@k of the best reordering of each query's top-`depth` (the tail keeps BM25 order)."""
    run = {}
    for query in dl19.queries:
        head = sorted(query.candidates[:depth], key=lambda c: -query.qrels.get(c.id, 0))
        docs = [c.id for c in head + query.candidates[depth:]]
        run[query.qid] = {d: float(len(docs) - i) for i, d in enumerate(docs)}
    qrels = {q.qid: q.qrels for q in dl19.queries}
    return ir_measures.calc_aggregate([ir_measures.nDCG @ k], qrels, run)[ir_measures.nDCG @ k]


def test_first_stage_dl19_reports_0_5058(tmp_path):
    report = eval_cli(tmp_path, "--dataset", "dl19", "--strategy", "none")
    assert report["queries"] == 43 and round(report["mean"]["NDCG@10"], 4) == 0.5058
    assert len(report["per_query"]) == 43
    assert (tmp_path / "metrics.md").read_text(encoding="utf-8").count("| NDCG@10 | 0.5058 |") == 1
    assert (tmp_path / "metrics.png").read_bytes()[:4] == b"\x89PNG"
    assert len(run_docids(tmp_path / "run.trec")) == 43


@pytest.mark.parametrize(("strategy", "requests_per_query"), [("iranker", 19), ("dranker", 1), ("setwise", None)])
def test_perfect_simulated_judge_reaches_the_ideal_top20(tmp_path, dl19, strategy, requests_per_query):
    report = eval_cli(tmp_path, "--dataset", "dl19", "--strategy", strategy, "--judge", "simulated", "--depth", "20")
    assert report["mean"]["NDCG@10"] == pytest.approx(ideal_top(dl19, 20, 10), abs=1e-12)
    if strategy != "setwise":  # setwise (k=10) sorts only the top 10
        assert report["mean"]["NDCG@20"] == pytest.approx(ideal_top(dl19, 20, 20), abs=1e-12)
    assert report["judge"]["simulated"] and "Simulated judge" in (tmp_path / "metrics.md").read_text(encoding="utf-8")
    engine = report["engine"]
    assert engine["forced_answers"] == 0 and engine["prompt_tokens"] > 0 and engine["completion_tokens"] > 0
    if requests_per_query:
        assert engine["requests"] == requests_per_query * 43


def test_errors_lower_quality_and_are_reproducible(tmp_path, dl19):
    args = ["--dataset", "dl19", "--strategy", "iranker", "--judge", "simulated", "--depth", "20", "--limit", "10"]
    noisy = eval_cli(tmp_path / "a", *args, "--error-rate", "0.3", "--eval-seed", "1")
    again = eval_cli(tmp_path / "b", *args, "--error-rate", "0.3", "--eval-seed", "1")
    other = eval_cli(tmp_path / "c", *args, "--error-rate", "0.3", "--eval-seed", "2")
    perfect = eval_cli(tmp_path / "d", *args)
    assert (tmp_path / "a/run.trec").read_text() == (tmp_path / "b/run.trec").read_text()
    assert (tmp_path / "a/run.trec").read_text() != (tmp_path / "c/run.trec").read_text()
    assert noisy["mean"]["NDCG@10"] < perfect["mean"]["NDCG@10"]
    assert noisy["mean"] == again["mean"] != other["mean"]


def test_judge_answers_do_not_depend_on_batching(dl19):
    queries = dl19.queries[:4]
    orders = []
    for batch_size in (1, 1024):
        judge = SimulatedJudge(judge_labels(dl19), error_rate=0.3, seed=5)
        ranker = IRanker(engine=judge, depth=8, batch_size=batch_size)
        orders.append([r.order for r in ranker.rank_many([q.query for q in queries], [q.candidates for q in queries])])
    assert orders[0] == orders[1]


def test_resume_skips_finished_queries_and_redoes_partial_ones(tmp_path):
    args = ["--dataset", "dl19", "--strategy", "dranker", "--judge", "simulated", "--depth", "10"]
    eval_cli(tmp_path, *args, "--limit", "3")
    run = tmp_path / "run.trec"
    lines = run.read_text(encoding="utf-8").splitlines()
    run.write_text("\n".join(lines[:-5]) + "\n", encoding="utf-8")  # the third query was cut off mid-write
    report = eval_cli(tmp_path, *args, "--limit", "6")
    sessions = json.loads((tmp_path / "sessions.json").read_text(encoding="utf-8"))
    assert [s["queries"] for s in sessions] == [3, 4] and report["sessions"] == 2
    assert report["engine"]["requests"] == 7 and report["queries"] == 6
    assert all(len(docs) == 100 for docs in run_docids(run).values()) and len(run_docids(run)) == 6


@pytest.mark.parametrize(
    ("name", "strategy"), [("rec-movie", "iranker"), ("router-cost", "dranker"), ("passage-9", "setwise")]
)
def test_perfect_judge_puts_the_target_first_in_every_domain(tmp_path, name, strategy):
    report = eval_cli(tmp_path, "--dataset", name, "--strategy", strategy, "--judge", "simulated", "--limit", "5")
    assert report["mean"]["MRRx100"] == 100.0 and report["queries"] == 5


def test_compare_writes_a_table_and_a_plot(tmp_path):
    evalset = load_dataset("passage-5", limit=6)
    evaluate(evalset, tmp_path / "none", progress=False)
    judge = SimulatedJudge(judge_labels(evalset), error_rate=0.2)
    evaluate(evalset, tmp_path / "judge", DRanker(engine=judge), info={"judge": {"error_rate": 0.2}}, progress=False)
    dirs = [str(tmp_path / "none"), str(tmp_path / "judge")]
    assert main(["eval", "compare", *dirs, "--out", str(tmp_path / "cmp")]) == 0
    table = (tmp_path / "cmp.md").read_text(encoding="utf-8")
    assert table.count("\n") == 4 and "SIMULATED judge, error 0.2" in table and "MRRx100" in table
    assert (tmp_path / "cmp.png").read_bytes()[:4] == b"\x89PNG"
    assert compare([tmp_path / "none"], tmp_path / "one.md").count("passage-5 · none") == 1


def test_simulated_judge_decisions_and_format(tokenizer):
    judge = SimulatedJudge({query_key(["A", "B"]): {"x": 2, "y": 1}}, tokenizer=tokenizer)

    def ask(kind: str, query=("A", "B")) -> Question:
        return Question(kind, list(query), ("z", "x", "y", "w"), ("Z", "X", "Y", "W"))

    assert judge.decide(ask("most")) == [1]
    assert judge.decide(ask("least")) == [3]  # z and w tie at 0 (unknown ids): the last shown goes
    assert judge.decide(ask("order")) == [1, 2, 0, 3]
    forced = Request("p <answer>", 8, question=ask("most"), forced=True)
    [completion] = judge.generate([forced, Request("p <think>", 8, question=ask("least"))])[:1]
    assert completion.text == "X</answer>"
    asked = Question("most", "q", ("a",), ("passage 0",))
    opened = Request("p <answer>passage ", 8, question=asked, forced=True, label_start="passage ")
    judge.labels["q"] = {"a": 1}
    assert judge.generate([opened])[0].text == "0</answer>"  # the label's opening is the prompt's
    normal = judge.generate([Request("prompt\n<think>", 8, question=ask("order"))])[0]
    assert extract_answer(normal.text) == "X\nY\nZ\nW" and "</think>" in normal.text
    assert normal.prompt_tokens == len(tokenizer.encode("prompt\n<think>", add_special_tokens=False))
    assert normal.completion_tokens == len(tokenizer.encode(normal.text, add_special_tokens=False))
    assert judge.stats()["backend"] == "simulated"
    with pytest.raises(KeyError, match="no labels"):
        judge.decide(ask("most", query="unknown"))
    with pytest.raises(ValueError, match="error_rate"):
        SimulatedJudge({}, error_rate=1.5)


@pytest.mark.parametrize("model", ["uniform", "local"])
def test_judge_error_models(tokenizer, model):
    """Both models err at about the error rate; only uniform errors reach far from the right answer."""
    grades = {str(i): 20 - i for i in range(20)}  # shown in grade order: the right "least" is the last
    judge = SimulatedJudge({"q": grades}, error_rate=0.2, tokenizer=tokenizer, error_model=model)
    picks, kept_lost = [], 0
    for trial in range(400):
        ids = tuple(str(i) for i in range(20))
        judge.seed = trial  # a fresh draw per trial
        picks.append(judge.decide(Question("least", "q", ids, ids))[0])
        kept_lost += min(judge.decide(Question("least", "q", ids, ids, count=15))) < 4  # a top-4 item eliminated
    wrong = [p for p in picks if p != 19]
    assert 0.12 < len(wrong) / len(picks) < 0.28
    if model == "local":
        assert min(wrong) >= 14 and kept_lost < 40  # a wrong item can bubble a few places, rarely
    else:
        assert min(wrong) < 10 and kept_lost > 100


def test_uniform_multi_name_answer_errs_like_one_name_calls(tokenizer):
    """Naming 15 of 20 at once is 15 one-name decisions in a row, each over those not yet named:
    a wrong name is often another of the least relevant, so the named set is right far more
    often than (1 - e)^15, the rate if every wrong name dropped a candidate that should stay."""
    grades = {str(i): 20 - i for i in range(20)}
    judge = SimulatedJudge({"q": grades}, error_rate=0.2, tokenizer=tokenizer)
    ids = tuple(str(i) for i in range(20))
    right = 0
    for trial in range(400):
        judge.seed = trial
        named = judge.decide(Question("least", "q", ids, ids, count=15))
        assert len(set(named)) == 15
        right += set(named) == set(range(5, 20))
    assert right / 400 > 3 * 0.8**15  # expected 4/19 = 0.21 against 0.035


def test_eval_cli_records_the_error_model(tmp_path):
    args = ["--dataset", "dl19", "--strategy", "iranker", "--judge", "simulated", "--depth", "10", "--limit", "4"]
    args += ["--error-rate", "0.5"]
    local = eval_cli(tmp_path / "local", *args, "--error-model", "local")
    uniform = eval_cli(tmp_path / "uniform", *args)
    assert local["judge"]["error_model"] == "local" and uniform["judge"]["error_model"] == "uniform"
    assert local["mean"] != uniform["mean"]


def test_judge_rejects_an_unknown_error_model():
    with pytest.raises(ValueError, match="error_model"):
        SimulatedJudge({}, error_model="gaussian")


def test_judge_matches_a_truncated_query(tokenizer):
    judge = SimulatedJudge({"a long question about routing": {"m1": 1}, "another": {}}, tokenizer=tokenizer)
    assert judge.resolve("a long question") == "a long question about routing"
