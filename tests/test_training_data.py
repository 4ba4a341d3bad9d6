"""Training examples: the rankers' own prompts, the reward columns, determinism, SFT completions."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from r1ranker_plugins.datasets import load_dataset, split_of
from r1ranker_plugins.engines.base import truncate_texts
from r1ranker_plugins.iranker import IRanker
from r1ranker_plugins.prompts import r1_chat, setwise_messages
from r1ranker_plugins.simulated import query_key
from r1ranker_plugins.training.data import (
    DataConfig,
    build_examples,
    dranker_examples,
    iranker_examples,
    load_evalsets,
    relevance_prior,
    setwise_examples,
    sft_examples,
    to_dataset,
)
from r1ranker_plugins.training.rewards import REWARDS, exclusion_reward, format_reward


def test_iranker_cases_follow_the_protocol(shared_data):
    evalset = load_dataset("passage-5", split="train", limit=6)
    cases = iranker_examples(evalset, seed=0)
    assert len(cases) == 6 * 4  # pools of the relevant plus k = 1..4 negatives
    assert sorted(len(c["candidates"]) for c in cases[:4]) == [2, 3, 4, 5]
    for case in cases:
        assert case["gt"] in case["candidates"]
        assert case["candidates"] == [f"passage {i}" for i in range(len(case["candidates"]))]
        assert case["prompt"].endswith("<think>") and case["task"] == "passage"
    positions = {c["candidates"].index(c["gt"]) for c in cases}
    assert len(positions) > 1  # the relevant item is not always in one place


def test_prompts_are_the_rankers_prompts(shared_data, scripted):
    """The text a trained model sees is exactly what IRanker sends at inference."""
    evalset = load_dataset("passage-5", split="train", limit=1)
    query = evalset.queries[0]
    [full] = dranker_examples(evalset)
    assert full["prompt"] == r1_chat(full["prompt"].split("user\n ", 1)[1].split(" Show your work")[0])
    case = next(c for c in iranker_examples(evalset) if len(c["candidates"]) == len(query.candidates))
    engine = scripted(lambda request: "</think>\n<answer>passage 0</answer>")
    ranker = IRanker(engine=engine, max_query_tokens=10**6, max_candidate_tokens=10**6)
    texts = {c.text: c for c in query.candidates}
    order = [texts[line.split(": ", 1)[1]] for line in case["prompt"].split("\n") if line.startswith("passage ")]
    ranker.rank(query.query, order)
    assert engine.seen[0].prompt == case["prompt"]


def test_routing_and_recommendation_cases(shared_data):
    [routing] = load_evalsets(DataConfig(builder="router-cost", limit=2))
    cases = iranker_examples(routing, system_verb="think")
    assert all(c["task"] == "routing" and c["gt"] in c["candidates"] for c in cases)
    assert "You first think about" in cases[0]["prompt"] and "least COST-EFFICIENT" in cases[0]["prompt"]
    [movies] = load_evalsets(DataConfig(builder="rec-movie", limit=1, n=6))
    assert [len(c["candidates"]) for c in iranker_examples(movies)] == [2, 3, 4, 5, 6]


def test_setwise_examples_are_chat_messages_with_bracket_labels(shared_data):
    [evalset] = load_evalsets(DataConfig(builder="dl19", n=20, limit=3))
    examples = setwise_examples(evalset)
    assert len(examples) == 3
    for example, query in zip(examples, evalset.queries, strict=True):
        assert example["candidates"] == [f"[{i}]" for i in range(1, 21)]
        assert example["prompt"] == setwise_messages(query.query, [c.text for c in query.candidates])
        position = [c.id for c in query.candidates].index(query.target)
        assert example["gt"] == f"[{position + 1}]"


def test_trec_sets_need_n_and_split_by_query(shared_data):
    with pytest.raises(ValueError, match=r"give data\.n"):
        load_evalsets(DataConfig(builder="dl19"))
    [train] = load_evalsets(DataConfig(builder="dl19", n=5, split="train"))
    assert {split_of(q.qid.rsplit("-", 1)[0]) for q in train.queries} == {"train"}


def test_examples_are_deterministic_and_seeded(shared_data):
    config = DataConfig(builder="passage-5", limit=5)
    assert build_examples(config, "iranker") == build_examples(config, "iranker")
    other = build_examples(DataConfig(builder="passage-5", limit=5, seed=1), "iranker")
    assert other != build_examples(config, "iranker")


def test_truncation_uses_the_model_tokenizer(shared_data, tokenizer):
    config = DataConfig(builder="passage-5", limit=2, max_candidate_tokens=8, max_query_tokens=4)
    with pytest.raises(ValueError, match="tokenizer"):
        load_evalsets(config)
    [evalset] = load_evalsets(config, tokenizer)
    for query in evalset.queries:
        assert len(tokenizer.encode(query.query, add_special_tokens=False)) <= 4
        assert all(len(tokenizer.encode(c.text, add_special_tokens=False)) <= 8 for c in query.candidates)


def test_batched_truncation_keeps_the_first_tokens_of_each_text(tokenizer):
    """One batched encode cuts each text exactly as encoding it alone would."""
    texts = ["", "short", "word " * 5000, "Zürich café naïve résumé " * 9, "x" * 40]
    cut = truncate_texts(tokenizer, texts, 12)
    for text, kept in zip(texts, cut, strict=True):
        ids = tokenizer.encode(text, add_special_tokens=False)
        assert kept == (text if len(ids) <= 12 else tokenizer.decode(ids[:12], skip_special_tokens=True))
    assert cut[:2] == ["", "short"] and cut[2] != texts[2] and truncate_texts(tokenizer, [], 12) == []


def test_routing_truncation_cuts_descriptions_not_names(shared_data, tokenizer, scripted):
    """Same prompt as IRanker at inference with the same limit: names whole, descriptions cut."""
    config = DataConfig(builder="router-performance", limit=1, max_candidate_tokens=6, max_query_tokens=10**6)
    [evalset] = load_evalsets(config, tokenizer)
    [whole] = load_evalsets(DataConfig(builder="router-performance", limit=1))
    query = evalset.queries[0]
    assert [c.text for c in query.candidates] == [c.text for c in whole.queries[0].candidates]
    assert all(len(tokenizer.encode(c.metadata["description"])) <= 6 for c in query.candidates)
    case = next(c for c in iranker_examples(evalset, system_verb="think") if len(c["candidates"]) == 9)
    engine = scripted(lambda request: "</think>\n<answer>nothing</answer>")
    ranker = IRanker(engine=engine, task="routing", system_verb="think", max_candidate_tokens=6, max_query_tokens=10**6)
    names = {c.text: c for c in whole.queries[0].candidates}
    order = [names[line[2:].split(": ", 1)[0]] for line in case["prompt"].split("\n") if line.startswith("# ")]
    ranker.rank(query.query, order)
    assert engine.seen[0].prompt == case["prompt"]


def test_dataset_columns_feed_the_rewards(shared_data):
    examples = build_examples(DataConfig(builder="passage-5", limit=2), "iranker")
    dataset = to_dataset(examples)
    assert set(dataset.column_names) == {"prompt", "gt", "candidates", "task", "task_name", "qid"}
    row = dataset[0]
    columns = {key: [row[key]] for key in ("gt", "candidates", "task")}
    for function in REWARDS.values():
        assert len(function([row["prompt"]], ["x"], **columns)) == 1


@pytest.mark.parametrize("strategy", ["iranker", "dranker", "setwise"])
def test_sft_completions_are_well_formed_and_correct(shared_data, strategy):
    builder = DataConfig(builder="dl19", n=5, limit=4) if strategy == "setwise" else DataConfig(builder="passage-5")
    examples = build_examples(builder, strategy)[:12]
    pairs = sft_examples(examples, strategy, seed=0)
    assert pairs == sft_examples(examples, strategy, seed=0)
    prompts = [p["prompt"] for p in pairs]
    completions = [p["completion"] for p in pairs]
    assert format_reward(prompts, completions) == [0.0] * len(pairs)
    columns = {"gt": [e["gt"] for e in examples], "candidates": [e["candidates"] for e in examples]}
    task_reward = {"iranker": "exclusion", "dranker": "ranking", "setwise": "setwise"}[strategy]
    assert REWARDS[task_reward](prompts, completions, **columns) == [1.0] * len(pairs)
    if strategy == "iranker":
        assert exclusion_reward(prompts, completions, **columns) == [1.0] * len(pairs)


def test_relevance_prior_counts_relevant_over_shown():
    examples = [
        {"gt": "a", "candidates": ["a", "b"]},
        {"gt": "b", "candidates": ["c", "a", "b"]},
        {"gt": "a", "candidates": ["b", "a"]},
    ]
    assert relevance_prior(examples) == {"a": 2 / 3, "b": 1 / 3, "c": 0.0}


def test_sft_prior_answers_eliminate_the_least_often_relevant(shared_data):
    examples = build_examples(DataConfig(builder="router-performance", limit=30), "iranker")
    prior = relevance_prior(examples)
    assert set(prior) == {c for e in examples for c in e["candidates"]}
    assert len(set(prior.values())) > 2  # names differ in how often they are the best
    pairs = sft_examples(examples, "iranker", prior=prior)
    columns = {"gt": [e["gt"] for e in examples], "candidates": [e["candidates"] for e in examples]}
    completions = [p["completion"] for p in pairs]
    assert exclusion_reward([p["prompt"] for p in pairs], completions, **columns) == [1.0] * len(pairs)
    for example, completion in zip(examples, completions, strict=True):
        named = completion.split("<answer>")[1].removesuffix("</answer>")
        others = [c for c in example["candidates"] if c != example["gt"]]
        assert prior[named] == min(prior[c] for c in others)


def test_data_config_checks():
    with pytest.raises(ValueError, match=r"data\.n"):
        DataConfig(builder="dl19", n=1)
    with pytest.raises(ValueError, match="system_verb"):
        DataConfig(builder="passage-5", system_verb="thought")
    with pytest.raises(ValueError, match="unknown strategy"):
        build_examples(DataConfig(builder="passage-5"), "listwise")


def test_the_recipe_trains_on_no_query_it_is_evaluated_on(small_model_path):
    """The split rules of training/configs/smollm2-iranker.yaml: passages from collections never
    evaluated on, LLMRouter's train split minus the test questions it repeats, MovieLens train users;
    no training example's query (by text: a question, or a user's history) is in a held-out test split."""
    from transformers import AutoTokenizer

    from r1ranker_plugins.training.data import held_out_keys
    from r1ranker_plugins.training.trainer import load_config, ranker_config, training_examples

    config = load_config(Path(__file__).resolve().parents[1] / "training/configs/smollm2-iranker.yaml")
    assert set(config.held_out) == {"dl20", "noveleval", "scifact", "router-performance", "rec-movie"}
    evalsets, examples = training_examples(config, AutoTokenizer.from_pretrained(small_model_path))
    by_set = {e.options["task_name"]: e for e in evalsets}
    assert by_set["Router-Performance"].options["held_out_dropped"] > 0  # train.json repeats test questions
    keys = held_out_keys(config.held_out)
    queries = {query_key(q.query) for e in evalsets for q in e.queries}
    assert queries and not queries & keys
    test_users = {q.qid for q in load_dataset("rec-movie", split="test").queries}
    assert not {e["qid"] for e in examples if e["task_name"] == "Rec-Movie"} & test_users
    assert Counter(e["task_name"] for e in examples) == {"Passage-8": 360, "Router-Performance": 180, "Rec-Movie": 180}
    # the checkpoint's defaults: passages (most examples; adapters pass no task), the base model's Hub id
    recorded = ranker_config(config, evalsets, examples)
    assert recorded["task"] == "passage" and recorded["tasks"] == ["passage", "recommendation", "routing"]
    assert recorded["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    # untruncated, the training router questions still avoid every test question
    raw = load_dataset("router-performance", split="train")
    assert len([q for q in raw.queries if q.query in keys]) == by_set["Router-Performance"].options["held_out_dropped"]
