"""A trained checkpoint's r1ranker.json picks the rankers' prompt settings and strategy."""

from __future__ import annotations

import shutil

import pytest

from r1ranker_plugins import DRanker, IRanker, SetwiseRanker, make_ranker
from r1ranker_plugins.checkpoint import write_ranker_config


@pytest.fixture
def checkpoint(tiny_model_path, tmp_path):
    path = tmp_path / "ckpt"
    shutil.copytree(tiny_model_path, path)
    write_ranker_config(
        path,
        {
            "config_version": 1,
            "prompt_version": 1,
            "strategy": "iranker",
            "task": "routing",
            "system_verb": "think",
            "scenario": "cost",
        },
    )
    return str(path)


def test_settings_come_from_the_checkpoint(checkpoint):
    ranker = IRanker(checkpoint)
    assert (ranker.settings.task, ranker.settings.system_verb, ranker.settings.scenario) == ("routing", "think", "cost")
    explicit = IRanker(checkpoint, task="passage", scenario="balance")
    assert (explicit.settings.task, explicit.settings.scenario, explicit.settings.system_verb) == (
        "passage",
        "balance",
        "think",
    )


def test_auto_strategy_and_mismatch_warning(checkpoint, tiny_model_path):
    assert type(make_ranker("auto", checkpoint)) is IRanker
    with pytest.warns(UserWarning, match="trained as a iranker ranker, not dranker"):
        DRanker(checkpoint)
    with pytest.raises(ValueError, match="has none"):
        make_ranker("auto", tiny_model_path)
    plain = IRanker(tiny_model_path)
    assert (plain.settings.task, plain.settings.system_verb, plain.settings.scenario) == (
        "passage",
        "thinks",
        "performance",
    )


def test_setwise_adapter_config_sets_the_label_format(tiny_model_path, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    adapter = tmp_path / "adapter"
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"])).save_pretrained(adapter)
    write_ranker_config(
        adapter,
        {
            "config_version": 1,
            "prompt_version": 1,
            "strategy": "setwise",
            "task": "passage",
            "label_colon": True,
            "adapter": True,
        },
    )
    ranker = SetwiseRanker(tiny_model_path, lora=str(adapter), max_new_tokens=4)
    assert ranker.settings.label_colon is True
    ranking = ranker.rank("q", ["first", "second", "third"])
    assert "\n[1]: first\n" in ranking.trace[0].prompt and sorted(ranking.order) == [0, 1, 2]
    assert SetwiseRanker(tiny_model_path).settings.label_colon is False
