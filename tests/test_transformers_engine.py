"""Every strategy on the real transformers engine with the tiny local model."""

from __future__ import annotations

import pytest
from helpers import QUERY, SMALL, TEXTS

from r1ranker_plugins import IRanker, SetwiseRanker, get_engine
from r1ranker_plugins.engines.base import prompt_ids
from r1ranker_plugins.types import Request


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
