"""Ranking logic of every strategy, driven by scripted answers (real tokenizer and engine plumbing)."""

from __future__ import annotations

import asyncio
import random

import pytest

from r1ranker_plugins import Candidate, DRanker, IRanker, SetwiseRanker
from r1ranker_plugins.steps import ask
from r1ranker_plugins.types import Completion, Request

RELEVANCE = {f"d{i}": (i * 7919) % 101 for i in range(100)}  # distinct grades in scrambled order


def candidates(n: int) -> list[Candidate]:
    return [Candidate(f"d{i}", f"text of document {i}") for i in range(n)]


def ideal(n: int) -> list[int]:
    return sorted(range(n), key=lambda i: -RELEVANCE[f"d{i}"])


def judge(request) -> str:
    """A perfect judge reading the request's question (its structured content)."""
    question = request.question
    grades = [RELEVANCE[i] for i in question.ids]
    if question.kind == "least" and question.count > 1:
        worst = sorted(range(len(grades)), key=lambda i: grades[i])[: question.count]
        answer = "\n".join(question.labels[i] for i in worst)
    elif question.kind == "least":
        answer = question.labels[grades.index(min(grades))]
    elif question.kind == "most":
        answer = question.labels[grades.index(max(grades))]
    else:
        answer = "\n".join(question.labels[i] for i in sorted(range(len(grades)), key=lambda i: -grades[i]))
    if request.forced:  # the prompt opened the answer with the labels' common start
        return f"{answer.removeprefix(request.label_start)}</answer>"
    return f" thinking about it\n</think>\n<answer>{answer}</answer>"


def rambler(request) -> str:
    """Never writes an answer block; forced answers are valid."""
    if request.forced:
        return judge(request)
    return " the reasoning goes on and on and runs out of tokens"


def garbage(request) -> str:
    return "<answer>¯\\_(ツ)_/¯</answer>" if not request.forced else "???</answer>"


def test_iranker_perfect_judge_gives_the_ideal_order(scripted):
    engine = scripted(judge)
    ranking = IRanker(engine=engine).rank("q", candidates(12))
    assert ranking.order == ideal(12)
    assert len(ranking.trace) == 11
    assert all(step.match == "exact" and step.fallback is None for step in ranking.trace)
    assert ranking.scores == sorted(ranking.scores, reverse=True) and len(set(ranking.scores)) == 12
    assert [c.id for c in ranking.ranked] == [f"d{i}" for i in ideal(12)]


def test_iranker_survivor_then_eliminations_reversed(scripted):
    answers = iter(["passage 0", "passage 1", "passage 0"])  # eliminate d0, then d2, then d1
    engine = scripted(lambda r: f"</think>\n<answer>{next(answers)}</answer>")
    ranking = IRanker(engine=engine).rank("q", candidates(4))
    assert ranking.order == [3, 1, 2, 0]


def test_iranker_forces_an_answer_when_reasoning_runs_out(scripted):
    engine = scripted(rambler)
    ranking = IRanker(engine=engine).rank("q", candidates(6))
    assert ranking.order == ideal(6)
    assert all(step.forced and step.fallback is None for step in ranking.trace)
    assert engine.stats()["forced_answers"] == 5
    forced = [r for r in engine.seen if r.forced]
    assert forced[0].prompt.endswith("runs out of tokens\n</think>\n<answer>passage ")  # the label opened


def test_forced_answer_continues_from_the_tokens_the_engine_reported():
    """Cut off with its tokens known: the forced prompt starts with them. A partial answer is
    dropped from the prompt, so its tokens no longer fit and the prompt goes as text."""
    requests = [Request("P1", 4), Request("P2", 4), Request("P3", 4)]
    machine = ask(requests, parse=lambda answer: answer or None)
    next(machine)
    forced = machine.send(
        [
            Completion(" ran out", "length", 2, 3, sequence_ids=(1, 2, 7, 8, 9)),
            Completion(" ran out <answer>", "length", 2, 3, sequence_ids=(1, 2, 7, 8, 9)),
            Completion(" stopped", "stop", 2, 3),
        ]
    )
    assert [r.prompt for r in forced] == [
        "P1 ran out\n</think>\n<answer>",
        "P2 ran out\n</think>\n<answer>",
        "P3 stopped\n</think>\n<answer>",
    ]
    assert forced[0].prefix_ids == (1, 2, 7, 8, 9) and forced[0].prefix_chars == len("P1 ran out")
    assert [r.prefix_ids for r in forced[1:]] == [(), ()]


def test_iranker_garbage_falls_back_visibly_and_loses_nothing(scripted):
    ranking = IRanker(engine=scripted(garbage)).rank("q", candidates(8))
    assert sorted(ranking.order) == list(range(8))
    assert ranking.fallbacks == 7
    assert ranking.order == list(range(8))  # the last candidate goes first each time


def test_depth_reranks_the_head_and_keeps_the_tail(scripted):
    ranking = IRanker(engine=scripted(judge), depth=5).rank("q", candidates(9))
    assert ranking.order[:5] == ideal(5)
    assert ranking.order[5:] == [5, 6, 7, 8]


@pytest.mark.parametrize("task", ["recommendation", "routing"])
def test_iranker_names_for_other_domains(scripted, task):
    items = [Candidate(f"d{i}", f"Title number {i}", {"description": f"model {i}"}) for i in range(7)]
    query = ["Seen one", "Seen two"] if task == "recommendation" else "route me"
    ranker = IRanker(engine=scripted(judge), task=task, scenario="balance", item_type="item")
    ranking = ranker.rank(query, items)
    assert ranking.order == ideal(7)
    if task == "routing":
        assert "# Title number 0: model 0" in ranking.trace[0].prompt
        assert "least BALANCED" in ranking.trace[0].prompt


@pytest.mark.parametrize("strategy", [IRanker, DRanker])
def test_routing_keeps_names_whole_and_cuts_descriptions(scripted, strategy):
    names = ["llama-3.1-nemotron-51b-instruct", "llama-3.1-nemotron-70b-instruct"]  # alike for 20+ tokens
    items = [Candidate(f"d{i}", n, {"description": f"{n} is a model. " + "word " * 400}) for i, n in enumerate(names)]
    ranker = strategy(engine=scripted(judge), task="routing", max_candidate_tokens=8)
    prompt = ranker.rank("route me", items).trace[0].prompt
    assert all(f"# {n}: " in prompt for n in names) and prompt.count("word") < 20


def test_dranker_perfect_partial_and_garbage(scripted):
    assert DRanker(engine=scripted(judge)).rank("q", candidates(10)).order == ideal(10)
    partial = DRanker(engine=scripted(lambda r: "</think><answer>passage 4\npassage 4\npassage 99\npassage 2</answer>"))
    ranking = partial.rank("q", candidates(6))
    assert ranking.order == [4, 2, 0, 1, 3, 5]
    assert "4 candidates not listed" in ranking.trace[0].fallback
    bad = DRanker(engine=scripted(garbage)).rank("q", candidates(5))
    assert bad.order == [0, 1, 2, 3, 4] and bad.trace[0].forced and bad.trace[0].match == "none"


@pytest.mark.parametrize(("n", "num_child", "k"), [(5, 19, 10), (20, 19, 10), (45, 3, 10), (100, 19, 10), (30, 4, 30)])
def test_setwise_heapsort_finds_the_top_k(scripted, n, num_child, k):
    engine = scripted(judge)
    ranking = SetwiseRanker(engine=engine, num_child=num_child, k=k).rank("q", candidates(n))
    top = min(k, n)
    assert ranking.order[:top] == ideal(n)[:top]
    assert sorted(ranking.order) == list(range(n))
    assert sorted(ranking.order[top:]) == ranking.order[top:]  # the rest keeps first-stage order


def test_setwise_builds_heap_levels_in_one_batch(scripted):
    engine = scripted(judge)
    SetwiseRanker(engine=engine).rank("q", candidates(100))
    stats = engine.stats()
    assert stats["calls"] < stats["requests"]  # nodes 1-5 were compared together
    assert 15 <= stats["requests"] <= 25


def test_setwise_unparseable_is_forced_then_recorded(scripted):
    ranking = SetwiseRanker(engine=scripted(garbage), k=3).rank("q", candidates(6))
    assert sorted(ranking.order) == list(range(6))
    assert all(step.forced and "kept the parent" in step.fallback for step in ranking.trace)


def test_setwise_prompt_uses_the_chat_template(scripted):
    engine = scripted(judge)
    SetwiseRanker(engine=engine).rank("why?", candidates(3))
    prompt = engine.seen[0].prompt
    assert prompt.startswith("<|im_start|>system\nA conversation between User and Assistant.")
    question = 'Given the query: "why?", which of the following documents is most relevant?\n'
    assert question + "[1] text of document 0\n" in prompt
    assert prompt.endswith("<|im_start|>assistant\n")


@pytest.mark.parametrize("cls", [IRanker, DRanker, SetwiseRanker])
def test_rank_many_batches_queries_together(scripted, cls):
    engine = scripted(judge)
    lists = [candidates(n) for n in (8, 5, 8, 3)]
    rankings = cls(engine=engine).rank_many(["a", "b", "c", "d"], lists)
    for ranking, items in zip(rankings, lists, strict=True):
        assert ranking.order[: min(10, len(items))] == ideal(len(items))[: min(10, len(items))]
    alone = scripted(judge)
    cls(engine=alone).rank("a", lists[0])
    assert engine.stats()["calls"] <= alone.stats()["calls"] + 1  # not the sum over queries


@pytest.mark.parametrize("cls", [IRanker, DRanker, SetwiseRanker])
def test_concurrent_arank_shares_batches_and_matches_rank(scripted, cls):
    engine = scripted(judge)
    ranker = cls(engine=engine)
    lists = [random.Random(s).sample(candidates(9), 9) for s in range(6)]

    async def main():
        return await asyncio.gather(*(ranker.arank(f"q{s}", items) for s, items in enumerate(lists)))

    results = asyncio.run(main())
    for items, result in zip(lists, results, strict=True):
        assert result.order == ranker.rank("q", items).order
    assert max(engine.batch_sizes) >= 6  # concurrent queries' steps went out together


def test_on_result_streams_each_query(scripted):
    seen = []
    ranker = IRanker(engine=scripted(judge))
    ranker.rank_many(["a", "b"], [candidates(3), candidates(1)], on_result=lambda i, r: seen.append(i))
    assert sorted(seen) == [0, 1]


@pytest.mark.parametrize("cls", [IRanker, DRanker, SetwiseRanker])
def test_trivial_inputs_need_no_model(scripted, cls):
    engine = scripted(judge)
    ranker = cls(engine=engine)
    assert ranker.rank("q", []).order == []
    assert ranker.rank("q", ["only one"]).order == [0]
    assert engine.stats()["requests"] == 0


def test_duplicates_are_kept(scripted):
    items = [Candidate("x", "same"), Candidate("x", "same"), Candidate("y", "other")]
    ranking = IRanker(engine=scripted(garbage)).rank("q", items)
    assert sorted(ranking.order) == [0, 1, 2]


def test_bad_inputs_have_clear_errors(scripted):
    engine = scripted(judge)
    with pytest.raises(TypeError, match=r"candidate 1 .* NoneType"):
        IRanker(engine=engine).rank("q", ["a", None])
    with pytest.raises(TypeError, match="candidate 0 \\('a'\\) has text of type int"):
        IRanker(engine=engine).rank("q", [Candidate("a", 3)])
    with pytest.raises(ValueError, match="query is empty"):
        IRanker(engine=engine).rank("  ", ["a", "b"])
    with pytest.raises(TypeError, match="history"):
        IRanker(engine=engine, task="recommendation").rank("not a list", ["a", "b"])
    with pytest.raises(ValueError, match="unknown task 'music'"):
        IRanker(engine=engine, task="music")
    with pytest.raises(ValueError, match="does not support task 'routing'"):
        SetwiseRanker(engine=engine, task="routing")
    with pytest.raises(ValueError, match="depth must be >= 1"):
        IRanker(engine=engine, depth=0)
    with pytest.raises(ValueError, match="num_child must be >= 1"):
        SetwiseRanker(engine=engine, num_child=0)
    with pytest.raises(ValueError, match="unknown scenario 'cheap'"):
        IRanker(engine=engine, scenario="cheap")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        IRanker(model="./no/such/model")
    with pytest.raises(ValueError, match="unknown backend 'tgi'"):
        IRanker(model="Qwen/Qwen2.5-3B-Instruct", backend="tgi")


def test_long_candidates_are_truncated_to_the_token_budget(scripted):
    engine = scripted(garbage)
    IRanker(engine=engine, max_candidate_tokens=20).rank("q", ["word " * 50000, "short"])
    assert len(engine.seen[0].prompt) < 2000


@pytest.mark.parametrize(
    ("n", "group_size", "top_k", "margin"), [(100, 25, 10, 0), (100, 20, 10, 3), (37, 8, 5, 1), (9, 4, 10, 0)]
)
def test_tournament_finds_and_orders_the_top_k(scripted, n, group_size, top_k, margin):
    engine = scripted(judge)
    ranker = IRanker(engine=engine, mode="tournament", group_size=group_size, top_k=top_k, margin=margin)
    ranking = ranker.rank("q", candidates(n))
    k = min(top_k, n)
    assert ranking.order[:k] == ideal(n)[:k]
    assert sorted(ranking.order) == list(range(n))


def test_tournament_cost_for_top_10_of_100(scripted):
    engine = scripted(judge)
    IRanker(engine=engine, mode="tournament").rank("q", candidates(100))
    rounds = len(engine.batch_sizes)
    docs = sum(len(r.question.ids) for r in engine.seen)
    assert rounds <= 8 and docs <= 210 and len(engine.seen) <= 20


@pytest.mark.parametrize(("agreement", "second_asks"), [("final", 1), ("all", 7)])
def test_tournament_with_agreement_asks_again_in_reverse_and_finds_the_top_k(scripted, agreement, second_asks):
    engine = scripted(judge)
    ranker = IRanker(engine=engine, mode="tournament", group_size=25, agreement=agreement)
    ranking = ranker.rank("q", candidates(100))
    assert ranking.order[:10] == ideal(100)[:10] and sorted(ranking.order) == list(range(100))
    shown = [[int(i[1:]) for i in r.question.ids] for r in engine.seen]
    assert sum(ids == sorted(ids, reverse=True) for ids in shown) == second_asks  # 4 + 2 + 1 groups for "all"


def test_agreement_eliminates_what_both_asks_name_and_settles_the_dispute(scripted):
    best, second, third, *worst = ideal(6)

    def reply(request):
        ids = request.question.ids
        if ids == tuple(f"d{i}" for i in range(5, -1, -1)):  # the reversed ask slips: names the best
            named = [request.question.labels[ids.index(f"d{p}")] for p in [*worst, best]]
            return "</think>\n<answer>" + "\n".join(named) + "</answer>"
        return judge(request)

    engine = scripted(reply)
    ranker = IRanker(engine=engine, mode="tournament", group_size=10, top_k=2, agreement="final")
    ranking = ranker.rank("q", candidates(6))
    assert engine.batch_sizes == [2, 1, 1]  # both asks together, the dispute, then the top 2's order
    dispute = engine.seen[2]
    assert sorted(dispute.question.ids) == sorted([f"d{best}", f"d{third}"]) and dispute.question.count == 1
    assert ranking.order[:2] == [best, second] and sorted(ranking.order) == list(range(6))


def test_agreement_fallbacks_follow_the_first_stage_order_in_both_asks(scripted):
    engine = scripted(garbage)
    ranker = IRanker(engine=engine, mode="tournament", group_size=10, top_k=2, agreement="final")
    ranking = ranker.rank("q", candidates(6))
    assert ranking.order == list(range(6))  # both asks fall back to the same four, so they agree
    asked = [len(r.question.ids) for r in engine.seen if not r.forced]
    assert asked == [6, 6, 2] and all(step.fallback for step in ranking.trace)  # no dispute to settle


def test_agreement_with_nothing_in_common_keeps_the_first_answer(scripted):
    def reply(request):  # names the first shown: the two asks of a pair disagree completely
        return "</think>\n<answer>" + request.question.labels[0] + "</answer>"

    engine = scripted(reply)
    ranking = IRanker(engine=engine, mode="tournament", group_size=2, top_k=1, agreement="final").rank(
        "q", candidates(2)
    )
    assert engine.batch_sizes == [2] and ranking.order == [1, 0]


def test_tournament_multi_elimination_prompt_and_repair(scripted):
    answers = iter(["passage 9\npassage 9\npassage 42", "passage 0"])

    def reply(request):
        return f"</think>\n<answer>{next(answers, 'passage 0')}</answer>"

    engine = scripted(reply)
    ranking = IRanker(engine=engine, mode="tournament", group_size=10, top_k=2).rank("q", candidates(10))
    assert "Select the 8 least likely passages" in engine.seen[0].prompt
    assert sorted(ranking.order) == list(range(10))
    first = ranking.trace[0]
    assert first.chosen[0] == 9 and len(first.chosen) == 8 and "7 of 8 eliminations not matched" in first.fallback


def test_an_engine_cut_rule_applies_to_query_and_candidates_alike(tokenizer):
    """Overriding `truncate_many` alone changes every cut a ranker makes."""
    from conftest import ScriptedEngine

    class FirstWordEngine(ScriptedEngine):
        def truncate_many(self, texts, max_tokens):
            return [text.split()[0] for text in texts]

    engine = FirstWordEngine(judge, tokenizer)
    IRanker(engine=engine).rank("what ranks documents", candidates(3))
    prompt = engine.seen[0].prompt
    assert "query: what." in prompt and "ranks documents" not in prompt
    assert "passage 2: text\n" in prompt and "text of document" not in prompt
