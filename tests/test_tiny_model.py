"""Tests for the offline tiny random-weight Qwen2 checkpoint used by other tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from r1ranker_plugins import testing
from r1ranker_plugins.testing import tiny_model

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return tiny_model(tmp_path_factory.mktemp("tiny"))  # an existing, empty directory


def test_builds_loadable_checkpoint(model_dir: str) -> None:
    assert (Path(model_dir) / "config.json").is_file()
    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir)
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    assert model.config.model_type == "qwen2"
    assert model.config.vocab_size >= len(tokenizer)
    assert model.config.eos_token_id == tokenizer.eos_token_id == tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert tokenizer.pad_token == "<|endoftext|>"
    assert tokenizer.padding_side == "left"


def test_chat_template_survives_reload(model_dir: str) -> None:
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "rank these"}], tokenize=False, add_generation_prompt=True
    )
    assert text.startswith("<|im_start|>system\nYou are Qwen")
    assert text.endswith("<|im_start|>user\nrank these<|im_end|>\n<|im_start|>assistant\n")


def test_tokenizer_round_trips_tags(model_dir: str) -> None:
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    text = "<think> passage 12 looks best </think>\n<answer> [3] > [1] </answer> café"
    ids = tokenizer(text, add_special_tokens=False).input_ids
    assert tokenizer.decode(ids) == text
    assert tokenizer.convert_tokens_to_ids("<|im_start|>") in tokenizer("<|im_start|>user").input_ids


def test_second_call_reuses_cache(model_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(out: Path) -> None:
        raise AssertionError("rebuilt a cached model")

    monkeypatch.setattr(testing, "_build", fail)
    assert tiny_model(model_dir) == model_dir


def test_refuses_to_overwrite_other_directory(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(FileExistsError):
        tiny_model(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "not a model"
    leftovers = {p.name for p in tmp_path.parent.glob(f".{tmp_path.name}.*")} - {f".{tmp_path.name}.lock"}
    assert not leftovers  # the temporary build directory was removed


def test_greedy_generation_batched_matches_single(model_dir: str) -> None:
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir).eval()
    prompts = ["movies", "Search engines rank passages by relevance to a query."]
    batch = tokenizer(prompts, return_tensors="pt", padding=True)
    with torch.no_grad():
        batched = model.generate(**batch, max_new_tokens=8, do_sample=False)
    new = batched[:, batch.input_ids.shape[1] :]
    assert new.shape[0] == len(prompts)
    for prompt, row in zip(prompts, new.tolist(), strict=True):
        single = tokenizer(prompt, return_tensors="pt")
        with torch.no_grad():
            out = model.generate(**single, max_new_tokens=8, do_sample=False)[0, single.input_ids.shape[1] :]
        assert row[: len(out)] == out.tolist()
