"""The engine contract, run against every backend with the tiny model: transformers, in-process vLLM,
and the OpenAI-compatible client talking to a real vLLM server on loopback.

What every engine promises the rankers: one completion per request, in order; stop strings end a
completion (and are kept); a completion cut by its budget says so and reports its tokens, so a forced
answer can continue from them; counters in `stats()`; concurrent async callers share batches; and,
under greedy decoding, the same rankings as the transformers reference, batched or one at a time.
"""

from __future__ import annotations

import asyncio

import pytest
from helpers import QUERY, SMALL, TEXTS

from r1ranker_plugins import DRanker, IRanker, SetwiseRanker, get_engine
from r1ranker_plugins.types import Request

BACKENDS = [
    "transformers",
    pytest.param("vllm", marks=pytest.mark.vllm),
    pytest.param("openai", marks=pytest.mark.vllm),
]
STRATEGIES = [IRanker, DRanker, SetwiseRanker]


SHARED_ENGINES = True  # one engine per backend serves the whole module (see conftest)


@pytest.fixture
def engine(request, tiny_model_path):
    backend = request.param
    if backend == "vllm":
        pytest.importorskip("vllm")
        # float32: vLLM's "auto" picks bfloat16 on CPU, which would not match transformers' float32
        return get_engine(tiny_model_path, "vllm", max_model_len=4096, dtype="float32")
    if backend == "openai":
        return get_engine(tiny_model_path, "openai", base_url=request.getfixturevalue("tiny_server").url)
    return get_engine(tiny_model_path, "transformers")


def reference(tiny_model_path, cls):
    return cls(engine=get_engine(tiny_model_path, "transformers"), **SMALL)


@pytest.mark.parametrize("engine", BACKENDS, indirect=True)
def test_completions_stops_budgets_and_counts(engine, tokenizer):
    before = engine.stats()
    prompt = "<answer>1</answer>\n<answer>2</answer>\n<answer>3"
    requests = [Request(prompt, 12, stop=("</answer>",)), Request(QUERY, 6), Request("Once", 3, ignore_eos=True)]
    completions = engine.generate(requests)
    assert len(completions) == 3 and engine.generate([]) == []
    for request, completion in zip(requests, completions, strict=True):
        assert completion.completion_tokens <= request.max_tokens
        assert completion.finish_reason in ("stop", "length")
        stop = [s for s in request.stop if s in completion.text]
        assert not stop or completion.text.endswith(stop[0])  # cut at the stop string, which is kept
        if completion.finish_reason == "length":
            assert completion.completion_tokens == request.max_tokens
    cut = completions[2]  # ignore_eos: exactly its budget, with the tokens a continuation reuses
    assert cut.finish_reason == "length" and cut.completion_tokens == 3
    if cut.sequence_ids:
        prompt_ids = tokenizer("Once", add_special_tokens=False).input_ids
        assert list(cut.sequence_ids[: len(prompt_ids)]) == prompt_ids and len(cut.sequence_ids) == len(prompt_ids) + 3
    stats = engine.stats()
    assert stats["requests"] - before["requests"] == 3 and stats["calls"] - before["calls"] == 1
    assert stats["prompt_tokens"] > before["prompt_tokens"] and stats["completion_tokens"] > before["completion_tokens"]


@pytest.mark.parametrize("engine", BACKENDS, indirect=True)
def test_a_continuation_starts_from_the_reported_tokens(engine, tiny_model_path):
    """A forced answer continues from the tokens the model wrote (re-encoding the text could split
    it otherwise); every backend generates from exactly those tokens, as the reference does."""
    [cut] = engine.generate([Request(QUERY, 5, ignore_eos=True)])
    if not cut.sequence_ids:
        pytest.skip(f"{engine.backend} does not report token ids")
    text = QUERY + cut.text + "\n</think>\n<answer>"
    by_ids = Request(text, 4, prefix_ids=cut.sequence_ids, prefix_chars=len(QUERY + cut.text))
    expected = get_engine(tiny_model_path, "transformers").generate([by_ids])[0].text
    assert engine.generate([by_ids])[0].text == expected


@pytest.mark.parametrize("engine", BACKENDS, indirect=True)
@pytest.mark.parametrize("cls", STRATEGIES)
def test_every_strategy_ranks_like_the_reference_batched_or_alone(engine, cls, tiny_model_path):
    queries = [QUERY, "potassium in fruit", "what converts current"]
    lists = [TEXTS, TEXTS[::-1], TEXTS[1:]]
    ranker = cls(engine=engine, **SMALL)
    together = ranker.rank_many(queries, lists)
    alone = [ranker.rank(q, c) for q, c in zip(queries, lists, strict=True)]
    expected = reference(tiny_model_path, cls).rank_many(queries, lists)
    for mine, single, theirs, texts in zip(together, alone, expected, lists, strict=True):
        assert sorted(mine.order) == list(range(len(texts)))
        assert mine.order == single.order == theirs.order
        assert [s.completion for s in mine.trace] == [s.completion for s in theirs.trace]
    # random weights never close </answer> within 8 tokens: steps were cut and forced
    stats = engine.stats()
    assert stats["truncated"] >= 1 and stats["forced_answers"] >= 1


@pytest.mark.parametrize("engine", BACKENDS, indirect=True)
def test_concurrent_async_callers_share_batches(engine):
    ranker = IRanker(engine=engine, **SMALL)
    queries = [f"{QUERY} {i}" for i in range(5)]

    async def main():
        return await asyncio.gather(*(ranker.arank(q, TEXTS) for q in queries))

    calls = engine.stats()["calls"]
    concurrent = asyncio.run(main())
    calls_concurrent = engine.stats()["calls"] - calls
    sequential = [ranker.rank(q, TEXTS) for q in queries]
    assert [r.order for r in concurrent] == [r.order for r in sequential]
    if engine.backend != "openai":  # the server batches what the client sends at once
        assert calls_concurrent < engine.stats()["calls"] - calls - calls_concurrent
