"""Every strategy on the real transformers engine with the tiny local model."""

from __future__ import annotations

import asyncio

import pytest

from r1ranker_plugins import DRanker, IRanker, SetwiseRanker, get_engine
from r1ranker_plugins.engines.base import prompt_ids
from r1ranker_plugins.types import Request

QUERY = "how do solar panels produce electricity"
TEXTS = [
    "Solar panels contain photovoltaic cells that turn sunlight into electricity.",
    "The stock market closed higher on Friday.",
    "An inverter converts direct current into alternating current.",
    "Bananas are rich in potassium.",
    "Silicon releases electrons when photons strike it.",
    "A recipe for rice with vegetables.",
]
SMALL = {"max_new_tokens": 8, "max_candidate_tokens": 16}


@pytest.mark.parametrize("cls", [IRanker, DRanker, SetwiseRanker])
def test_strategy_ranks_with_the_tiny_model(tiny_model_path, cls):
    ranker = cls(tiny_model_path, "transformers", **SMALL)
    ranking = ranker.rank(QUERY, TEXTS)
    assert sorted(ranking.order) == list(range(len(TEXTS)))
    assert ranking.trace and all(step.prompt and step.completion for step in ranking.trace)
    stats = ranker.engine.stats()
    assert stats["model_loads"] == 1
    assert stats["prompt_tokens"] > 0 and stats["completion_tokens"] > 0
    # random weights never close </answer> within 8 tokens: each step was forced
    assert stats["truncated"] >= 1 and stats["forced_answers"] >= 1


@pytest.mark.parametrize("cls", [IRanker, DRanker, SetwiseRanker])
def test_rank_many_equals_one_at_a_time(tiny_model_path, cls):
    queries = [QUERY, "potassium in fruit", "what converts current"]
    lists = [TEXTS, TEXTS[::-1], TEXTS[1:]]
    ranker = cls(tiny_model_path, "transformers", **SMALL)
    together = ranker.rank_many(queries, lists)
    alone = [ranker.rank(q, c) for q, c in zip(queries, lists, strict=True)]
    assert [r.order for r in together] == [r.order for r in alone]
    assert [[s.completion for s in r.trace] for r in together] == [[s.completion for s in r.trace] for r in alone]


def test_concurrent_arank_matches_sequential_greedy(tiny_model_path):
    ranker = IRanker(tiny_model_path, "transformers", **SMALL)
    queries = [f"{QUERY} {i}" for i in range(5)]

    async def main():
        return await asyncio.gather(*(ranker.arank(q, TEXTS) for q in queries))

    concurrent = asyncio.run(main())
    calls_concurrent = ranker.engine.stats()["calls"]
    sequential = [ranker.rank(q, TEXTS) for q in queries]
    assert [r.order for r in concurrent] == [r.order for r in sequential]
    assert calls_concurrent < ranker.engine.stats()["calls"] - calls_concurrent  # shared batches


def test_rankers_share_one_engine_and_one_model_load(tiny_model_path):
    first = IRanker(tiny_model_path, "transformers", **SMALL)
    second = SetwiseRanker(tiny_model_path, "transformers", **SMALL)
    assert first.engine is second.engine is get_engine(tiny_model_path, "transformers")
    first.rank(QUERY, TEXTS[:3])
    second.rank(QUERY, TEXTS[:3])
    assert first.engine.stats()["model_loads"] == 1


def test_setwise_chat_template_comes_from_the_tokenizer(tiny_model_path):
    ranking = SetwiseRanker(tiny_model_path, "transformers", **SMALL).rank(QUERY, TEXTS[:3])
    assert ranking.trace[0].prompt.startswith("<|im_start|>system\nA conversation between User and Assistant.")


def test_missing_local_model_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"model path .* does not exist"):
        IRanker(str(tmp_path / "nope"), "transformers")


def test_prompt_ids_encode_a_batch_as_each_prompt_alone(tokenizer):
    """Engines send prompts as ids from one batched encode: the same ids as encoding each alone."""
    continuation = Request("Query: café</think>\n<answer>", max_tokens=4, prefix_ids=(7, 8, 9), prefix_chars=11)
    batch = [Request("Zürich passage " * 40, max_tokens=4), Request("", max_tokens=4), continuation]
    assert prompt_ids(tokenizer, batch) == [
        tokenizer.encode(batch[0].prompt, add_special_tokens=False),
        [],
        [7, 8, 9, *tokenizer.encode("</think>\n<answer>", add_special_tokens=False)],
    ]
    assert prompt_ids(tokenizer, []) == []
