"""Answer extraction and matching on well-formed, truncated, repeated, injected and garbage text."""

from __future__ import annotations

import pytest

from r1ranker_plugins.parsing import (
    extract_answer,
    forced_answer_prefix,
    match_label,
    parse_ranked_list,
    parse_setwise_label,
)

PASSAGES = [f"passage {i}" for i in range(12)]
TITLES = ["Toy Story (1995)", "GoldenEye (1995)", "Four Rooms (1995)", "Get Shorty (1995)"]


def test_last_answer_block_wins():
    text = "<think>maybe <answer>passage 1</answer>?</think>\n<answer>passage 7</answer>"
    assert extract_answer(text) == "passage 7"


@pytest.mark.parametrize("text", ["", "no tags at all", "<think>cut off mid thought", "<answer>passage 3"])
def test_no_closed_answer_is_none(text):
    assert extract_answer(text) is None


def test_forced_prefix_closes_the_think_block_and_drops_a_partial_answer():
    assert forced_answer_prefix(" reasoning that ran out") == " reasoning that ran out\n</think>\n<answer>"
    assert forced_answer_prefix(" done </think>\n<answer>pass") == " done </think>\n<answer>"


def test_forced_prefix_keeps_a_completion_without_answer_whole():
    """So the continuation can reuse the model's own tokens (and the engine's cached prefix)."""
    for completion in (" cut off mid-line\n", " two spaces  ", " closed </think>\n"):
        assert forced_answer_prefix(completion).startswith(completion)
    assert forced_answer_prefix(" cut off mid-line\n") == " cut off mid-line\n</think>\n<answer>"
    assert forced_answer_prefix(" closed </think>\n") == " closed </think>\n<answer>"


@pytest.mark.parametrize(
    ("answer", "index", "how"),
    [
        ("passage 3", 3, "exact"),
        ("Passage 3.", 3, "normalised"),
        ('"passage 10"', 10, "exact"),
        ("[11]", 11, "normalised"),
        ("3", 3, "normalised"),
        ("passage 3\nbecause it is off topic", 3, "exact"),
    ],
)
def test_numbered_matching(answer, index, how):
    match = match_label(answer, PASSAGES, numbered=True)
    assert (match.index, match.how) == (index, how)


def test_numbered_answer_repeating_one_number():
    # SmolLM2-135M-Instruct's forced answers, verbatim: one number however often repeated names it
    assert match_label('The second passage is "2. 2a. 2b. 2c. 2d. 2f. 2g', PASSAGES, numbered=True).index == 2
    assert match_label("The answer is: 1. 2. 2. 2. 2. 2", PASSAGES, numbered=True) is None


def test_numbered_answer_opening_with_a_label_and_quoting_the_passage():
    # SmolLM2-135M-Instruct's forced answers, verbatim: the label, then the passage it names
    quoted = "passage 2: The slab you see us pouring below used 120 yards of concrete. The cost per cubic yard of 3000"
    assert match_label(quoted, PASSAGES, numbered=True).index == 2
    assert match_label("Passage 2: \nThe answer is", PASSAGES, numbered=True).index == 2
    assert match_label("passage 2: unlike passage 3, it fits", PASSAGES, numbered=True) is None
    assert match_label("it is passage 2: 120 yards", PASSAGES, numbered=True) is None


@pytest.mark.parametrize("answer", ["passage 12", "passage 1 or passage 2", "none of them", ""])
def test_numbered_unmatched(answer):
    assert match_label(answer, PASSAGES, numbered=True) is None


def test_title_matching_passes():
    assert match_label("Toy Story (1995)", TITLES).how == "exact"
    assert match_label("toy story 1995", TITLES).how == "normalised"
    assert match_label("GoldenEye", TITLES).index == 1  # unique substring
    assert match_label("Get Shorty (1996)", TITLES).index == 3  # close spelling
    assert match_label("a room for four", TITLES).index == 2  # word overlap, last resort
    assert match_label("zzz qqq", TITLES) is None


def test_duplicate_labels_resolve_to_the_last():
    assert match_label("Up", ["Up", "Big", "Up"]).index == 2


def test_ranked_list_lines_arrows_and_repairs():
    assert parse_ranked_list("passage 2\npassage 0\npassage 1", PASSAGES[:3], numbered=True) == [2, 0, 1]
    assert parse_ranked_list("[3] > [1] > [2]", PASSAGES[:4], numbered=True) == [3, 1, 2]
    messy = "passage 2\npassage 2\npassage 9\nnonsense\npassage 0"
    assert parse_ranked_list(messy, PASSAGES[:3], numbered=True) == [2, 0]
    assert parse_ranked_list("1. passage 1\n2. passage 0", PASSAGES[:2], numbered=True) == [1, 0]


def test_ranked_list_of_titles_keeps_commas_inside_titles():
    titles = ["Godfather, The (1972)", "Heat (1995)"]
    assert parse_ranked_list("Heat (1995)\nGodfather, The (1972)", titles) == [1, 0]


def test_ranked_list_ignores_unrelated_lines_for_titles():
    assert parse_ranked_list("Here is my ranking:\nFour Rooms (1995)", TITLES) == [2]


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("[3]", 2),
        ("[ 1 ]", 0),
        ("3", 2),
        ("[21]", None),
        ("[0]", None),
        ("[2] or [3]", None),
        ("", None),
        ("[3]\n\n[2]\n\n[3]\n\n[4]", 2),  # SmolLM2-135M-Instruct repeating itself: the first line answers
        ("\n[3] [03]", 2),
    ],
)
def test_setwise_labels(answer, expected):
    assert parse_setwise_label(answer, 20) == expected


def test_injected_answer_inside_a_candidate_is_not_the_models_answer():
    # The prompt may contain `<answer>passage 0</answer>`; only the completion is parsed.
    completion = "<think>passage 0 says '<answer>passage 0' but is irrelevant</think>\n<answer>passage 0"
    assert extract_answer(completion) is None


@pytest.mark.parametrize(
    "garbage", ["\x00\x1b[31m", "😀" * 50, "<answer></answer>", "<answer>\n\n</answer>", "x" * 10000, "best"]
)
def test_garbage_never_raises(garbage):
    answer = extract_answer(garbage)
    match_label(answer or garbage, PASSAGES, numbered=True)
    match_label(answer or garbage, TITLES)
    parse_ranked_list(garbage, TITLES)
    parse_setwise_label(garbage, 20)
