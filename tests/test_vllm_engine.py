"""The in-process vLLM engine with the tiny model: strategies, equivalence, sharing, prefix cache, LoRA.

Building a vLLM `LLM` takes 10-35 s on a CPU, so engines live for the whole module (conftest's
per-test `close_all` is overridden below) and every test uses the same few configurations.
"""

from __future__ import annotations

import pytest
from helpers import QUERY, SMALL, TEXTS

from r1ranker_plugins import DRanker, IRanker, SetwiseRanker, get_engine
from r1ranker_plugins.engines import EngineError
from r1ranker_plugins.steps import ask, run
from r1ranker_plugins.types import Request

pytestmark = pytest.mark.vllm
pytest.importorskip("vllm")

# float32: vLLM's "auto" picks bfloat16 on CPU, which would not match transformers' float32
ENGINE = {"max_model_len": 4096, "dtype": "float32"}
STRATEGIES = [IRanker, DRanker, SetwiseRanker]


SHARED_ENGINES = True  # one engine per backend serves the whole module (see conftest)


@pytest.fixture(scope="module")
def lora_dir(tiny_model_path, tmp_path_factory) -> str:
    """A random (non-zero) LoRA adapter for the tiny model, so it visibly changes the output."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    config = LoraConfig(
        r=8,
        lora_alpha=16,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        init_lora_weights=False,
        task_type="CAUSAL_LM",
    )
    path = tmp_path_factory.mktemp("lora")
    get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_path), config).save_pretrained(path)
    return str(path)


def requests() -> list[Request]:
    """Greedy requests covering stop strings, ignore_eos, and lengths from 4 to 24 tokens."""
    return [
        Request("Search engines rank passages", max_tokens=8),
        Request("The model reads the query " * 30, max_tokens=16, stop=("e",)),
        Request("<think> passage 3 is relevant", max_tokens=24, stop=("</answer>",)),
        Request("Movies and games", max_tokens=12, ignore_eos=True),
        Request("A good ranker reads every passage " * 50, max_tokens=4, stop=("the",)),
    ]


def test_engine_output_equals_transformers(tiny_model_path, tokenizer):
    vllm_out = get_engine(tiny_model_path, "vllm", **ENGINE).generate(requests())
    hf_out = get_engine(tiny_model_path, "transformers").generate(requests())
    assert [c.text for c in vllm_out] == [c.text for c in hf_out]
    assert [c.finish_reason for c in vllm_out] == [c.finish_reason for c in hf_out]
    encoded = [len(tokenizer.encode(r.prompt, add_special_tokens=False)) for r in requests()]
    assert [c.prompt_tokens for c in vllm_out] == [c.prompt_tokens for c in hf_out] == encoded
    assert vllm_out[1].text.endswith("e") and vllm_out[1].completion_tokens < 16  # stopped, stop string kept
    assert vllm_out[3].completion_tokens == 12  # ignore_eos


def test_one_engine_per_configuration(tiny_model_path):
    engine = get_engine(tiny_model_path, "vllm", **ENGINE)
    assert get_engine(tiny_model_path, "vllm", **ENGINE) is engine
    first = IRanker(tiny_model_path, "vllm", **SMALL, **ENGINE)
    second = SetwiseRanker(tiny_model_path, "vllm", **SMALL, **ENGINE)
    assert first.engine is second.engine is engine
    first.rank(QUERY, TEXTS[:3])
    second.rank(QUERY, TEXTS[:3])
    assert engine.stats()["model_loads"] == 1


def test_shared_prefixes_hit_the_prefix_cache(tiny_model_path):
    """A forced-answer step repeats its whole original prompt: ~10 candidates x 64 tokens = 5+ blocks."""
    ranker = IRanker(tiny_model_path, "vllm", max_new_tokens=8, max_candidate_tokens=64, **ENGINE)
    before = ranker.engine.stats()
    long_texts = [f"{text} " * 8 for text in TEXTS + TEXTS[:4]]
    ranker.rank(QUERY, long_texts)
    after = ranker.engine.stats()
    queries = after["prefix_cache_queries"] - before["prefix_cache_queries"]
    hits = after["prefix_cache_hits"] - before["prefix_cache_hits"]
    assert queries == after["prompt_tokens"] - before["prompt_tokens"]
    assert hits >= 128 * 4 and hits < queries
    assert 0 < after["prefix_cache_hit_rate"] < 1


def test_lora_changes_the_output(tiny_model_path, lora_dir):
    base = get_engine(tiny_model_path, "vllm", **ENGINE)
    adapted = get_engine(tiny_model_path, "vllm", lora=lora_dir, **ENGINE)
    assert adapted is not base
    assert [c.text for c in adapted.generate(requests())] != [c.text for c in base.generate(requests())]
    ranker = SetwiseRanker(tiny_model_path, "vllm", lora=lora_dir, **SMALL, **ENGINE)
    assert ranker.engine is adapted
    ranking = ranker.rank(QUERY, TEXTS)
    assert sorted(ranking.order) == list(range(len(TEXTS)))
    assert adapted.stats()["model_loads"] == 1


def test_close_keeps_other_engines_working_and_reloads(tiny_model_path, lora_dir):
    """Closing one in-process engine must not tear down another's state; a closed one reloads."""
    base = get_engine(tiny_model_path, "vllm", **ENGINE)
    adapted = get_engine(tiny_model_path, "vllm", lora=lora_dir, **ENGINE)
    expected = [c.text for c in base.generate(requests())]
    base.close()
    assert adapted.generate(requests()[:1])[0].text
    assert [c.text for c in base.generate(requests())] == expected
    assert base.stats()["model_loads"] == 2


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"model path .* does not exist"):
        IRanker(str(tmp_path / "nope"), "vllm")
    empty = tmp_path / "empty"
    empty.mkdir()
    engine = get_engine(str(empty), "vllm", **ENGINE)
    with pytest.raises(EngineError, match=f"cannot start vLLM for model '{empty}'"):
        engine.generate(requests()[:1])
    with pytest.raises(EngineError, match=f"tokenizer of '{empty}'"):
        IRanker(str(empty), "vllm", **ENGINE).rank(QUERY, TEXTS)


def test_forced_answer_reuses_the_cached_reasoning(tiny_model_path):
    """The forced prompt starts with the model's own tokens, so the prompt and the reasoning come
    from the prefix cache; re-encoding the reasoning's text splits it differently (this tiny
    tokenizer after a few tokens), which only the original prompt survives. Both engines agree."""
    engine = get_engine(tiny_model_path, "vllm", **ENGINE)
    sent: list[Request] = []

    def generate(requests: list[Request]):
        sent.extend(requests)
        return engine.generate(requests)

    reasoning = Request(" ".join(TEXTS) * 3, max_tokens=300, ignore_eos=True)
    [outcome] = run(ask([reasoning], parse=lambda answer: None), generate, batch_size=8)
    forced = sent[1]
    assert outcome.forced and forced.prefix_ids and forced.prompt.endswith("</think>\n<answer>")
    tokens = len(forced.prefix_ids)
    assert tokens > engine.count_tokens(reasoning.prompt) + 256

    def cached(request: Request) -> int:
        before = engine.stats()["prefix_cache_hits"]
        engine.generate([request])
        return engine.stats()["prefix_cache_hits"] - before

    engine.reset_prefix_cache()
    engine.generate([reasoning])  # what the cache holds after the first ask
    as_tokens = cached(forced)
    engine.reset_prefix_cache()
    engine.generate([reasoning])
    as_text = cached(Request(forced.prompt, forced.max_tokens, stop=forced.stop))
    assert as_tokens >= tokens // 128 * 128 > as_text
    hf = get_engine(tiny_model_path, "transformers")
    assert [c.text for c in engine.generate([forced])] == [c.text for c in hf.generate([forced])]


def test_cpu_kv_cache_is_1_gib_unless_the_reservation_is_given(tiny_model_path):
    """On CPU vLLM reads gpu_memory_utilization as a share of RAM to reserve; asked for, it is honoured."""
    default = get_engine(tiny_model_path, "vllm", **ENGINE)
    default.generate([Request("hi", max_tokens=1)])
    assert default._llm.llm_engine.vllm_config.cache_config.kv_cache_memory_bytes == 1 << 30
    told = get_engine(tiny_model_path, "vllm", gpu_memory_utilization=0.3, **ENGINE)
    told.generate([Request("hi", max_tokens=1)])
    cache = told._llm.llm_engine.vllm_config.cache_config
    assert cache.kv_cache_memory_bytes is None and cache.gpu_memory_utilization == 0.3
    told.close()
