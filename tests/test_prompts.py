"""Prompt strings are interface constants: compare them with the reference, character for character."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from r1ranker_plugins import prompts
from r1ranker_plugins.types import Candidate

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "protocols.md"


@pytest.fixture(scope="module")
def blocks() -> list[str]:
    text = REFERENCE.read_text(encoding="utf-8")
    return [b.replace("\\n", "\n") for b in re.findall(r"```\n(.*?)\n```", text, re.DOTALL)]


@pytest.fixture(scope="module")
def reference_text() -> str:
    return REFERENCE.read_text(encoding="utf-8")


def test_r1_chat_wrapper(blocks):
    assert prompts.r1_chat("{problem}") == blocks[0]
    assert "You first think about" in prompts.r1_chat("x", system_verb="think")


@pytest.mark.parametrize(
    ("index", "template"),
    [
        (1, prompts.IRANKER_PASSAGE),
        (2, prompts.IRANKER_MOVIE),
        (3, prompts.IRANKER_ROUTING),
        (4, prompts.DRANKER_PASSAGE),
    ],
)
def test_r1_templates(blocks, index, template):
    assert template == blocks[index]


def test_item_variant_follows_the_reference_wording(reference_text):
    for phrase in re.findall(r'"([^"]+)"', reference_text.split("Recommendation, other items")[1].split("\n")[0]):
        assert phrase in prompts.IRANKER_ITEM


def test_routing_instructions(reference_text):
    for scenario, label in (("performance", "Performance"), ("balance", "Balance"), ("cost", "Cost")):
        expected = re.search(rf"- {label}: `(.*?)`", reference_text).group(1)
        assert prompts.ROUTING_ELIMINATE[scenario] == expected


def test_setwise_messages(blocks):
    block = blocks[5]
    system = block.split("\nuser: ")[0].removeprefix("system: ")
    user = block.split("\nuser: ")[1]
    messages = prompts.setwise_messages("{query}", ["A", "B"])
    assert messages[0] == {"role": "system", "content": system}
    assert messages[1]["content"] == user.replace("{docs}", "[1] A\n[2] B")
    colon = prompts.setwise_messages("q", ["A"], label_colon=True)[1]["content"]
    assert "\n[1]: A\n" in colon


def test_rendered_passage_step_lists_candidates_from_zero():
    problem = prompts.r1_problem("iranker", "passage", "what is x", ["alpha", "beta"])
    expected = (
        "Here is a query: what is x.\nAnd here are the candidate passages:\npassage 0: alpha\npassage 1: beta\n\n"
    )
    assert expected in problem


def test_rendered_recommendation_uses_python_reprs():
    problem = prompts.r1_problem("iranker", "recommendation", ["Heat (1995)", "Up"], ["Alien", "Big"])
    assert "['0. Heat (1995)', '1. Up']" in problem
    assert "Now there are 2 candidate movies that I might watch next:\n['Alien', 'Big']" in problem


def test_rendered_routing_lists_descriptions():
    llms = [Candidate("m1", "m1", {"description": "small"}), Candidate("m2", "m2", {"description": "large"})]
    problem = prompts.r1_problem("iranker", "routing", "2+2?", llms, scenario="cost")
    assert "# m1: small\n# m2: large" in problem
    assert prompts.ROUTING_ELIMINATE["cost"] in problem


def test_unknown_task_is_named():
    with pytest.raises(ValueError, match="unknown task 'music'"):
        prompts.r1_problem("iranker", "music", "q", ["a"])
