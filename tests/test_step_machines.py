"""The strategies' step machines driven by hand with `next` and `send`: no engine, no tokenizer.

A machine yields requests and is sent one completion per request; these tests play the model.
"""

from __future__ import annotations

import pytest

from r1ranker_plugins.dranker import DRankerSettings, dranker_steps
from r1ranker_plugins.iranker import IRankerSettings, iranker_steps
from r1ranker_plugins.prompts import ChatFormat
from r1ranker_plugins.setwise import SetwiseSettings, setwise_steps
from r1ranker_plugins.steps import QueryState
from r1ranker_plugins.types import Candidate, Completion


def state(n: int, query: str = "q") -> QueryState:
    return QueryState(query, [Candidate(f"d{i}", f"text {i}") for i in range(n)])


def said(*texts: str) -> list[Completion]:
    return [Completion(text, "stop") for text in texts]


def finish(machine, completions):
    with pytest.raises(StopIteration) as stop:
        machine.send(completions)
    return stop.value.value


def test_iranker_paper_loop_by_hand():
    query = state(3)
    machine = iranker_steps(IRankerSettings(), query)
    [first] = next(machine)
    assert first.question.kind == "least" and first.question.labels == ("passage 0", "passage 1", "passage 2")
    assert first.prompt.endswith("<think>") and "passage 2: text 2" in first.prompt and not first.forced
    [second] = machine.send(said("</think>\n<answer>passage 1</answer>"))  # d1 goes first
    assert second.question.ids == ("d0", "d2")
    order = finish(machine, said("<answer>passage 0</answer>"))  # then d0; d2 survives
    assert order == [2, 0, 1]
    assert [step.chosen for step in query.trace] == [[1], [0]] and all(s.kind == "own" for s in query.trace)


def test_an_unusable_answer_is_forced_with_the_label_opened_then_falls_back():
    query = state(2)
    machine = iranker_steps(IRankerSettings(), query)
    [asked] = next(machine)
    [forced] = machine.send([Completion("I list the passages and run out", "length")])
    assert forced.forced and forced.label_start == "passage " and forced.question == asked.question
    assert forced.prompt == asked.prompt + "I list the passages and run out\n</think>\n<answer>passage "
    assert forced.stop == ("</answer>",) and forced.max_tokens < asked.max_tokens
    order = finish(machine, said("???</answer>"))  # still nothing: the last in first-stage order goes
    assert order == [0, 1] and query.trace[0].kind == "fallback" and query.trace[0].forced


def test_tournament_groups_go_together_and_agreement_asks_in_reverse():
    query = state(6)
    settings = IRankerSettings(mode="tournament", top_k=2, group_size=3, agreement="final")
    machine = iranker_steps(settings, query)
    groups = next(machine)
    assert [r.question.ids for r in groups] == [("d0", "d1", "d2"), ("d3", "d4", "d5")]
    assert all(r.question.count == 1 for r in groups)  # keep 2 of 3 in each group
    final = machine.send(said("<answer>passage 2</answer>", "<answer>passage 2</answer>"))
    assert [r.question.ids for r in final] == [("d0", "d1", "d3", "d4"), ("d4", "d3", "d1", "d0")]
    halving = machine.send(said("<answer>passage 2\npassage 3</answer>", "<answer>passage 1\npassage 0</answer>"))
    assert [r.question.ids for r in halving] == [("d0", "d1")]  # both named d3 and d4
    assert finish(machine, said("<answer>passage 0</answer>")) == [1, 0, 3, 4, 2, 5]


def test_dranker_appends_what_the_answer_leaves_out():
    query = state(4)
    machine = dranker_steps(DRankerSettings(), query)
    [asked] = next(machine)
    assert asked.question.kind == "order" and asked.question.ids == ("d0", "d1", "d2", "d3")
    order = finish(machine, said("<answer>passage 2\npassage 2\npassage 9\npassage 0</answer>"))
    assert order == [2, 0, 1, 3] and query.trace[0].fallback == "2 candidates not listed; appended in first-stage order"


def test_setwise_heap_with_a_resolved_chat_format():
    chat = ChatFormat("<s>", "</s>")  # what a chat template renders around the user turn
    query = state(3)
    machine = setwise_steps(SetwiseSettings(num_child=2, k=2), chat, query)
    [root] = next(machine)
    assert root.prompt.startswith('<s>Given the query: "q"') and root.prompt.endswith("</s>")
    assert root.question.kind == "most" and root.question.labels == ("[1]", "[2]", "[3]")
    [again] = machine.send(said("<think>x</think> <answer>[3]</answer>"))  # d2 to the root
    assert again.question.ids == ("d0", "d1")  # d2 popped: the new root d0 against its child d1
    assert finish(machine, said("<answer>[2]</answer>")) == [2, 1, 0]


def test_chat_format_resolves_a_template_once():
    def template(messages):
        return "".join(f"<|{m['role']}|>{m['content']}<|end|>" for m in messages) + "<|assistant|>"

    chat = ChatFormat.resolve(template, "SYSTEM")
    assert chat.prompt("hi") == "<|system|>SYSTEM<|end|><|user|>hi<|end|><|assistant|>"
    with pytest.raises(ValueError, match="does not keep the user's text"):
        ChatFormat.resolve(lambda messages: "constant", "SYSTEM")
