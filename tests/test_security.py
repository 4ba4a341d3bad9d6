"""Safe defaults: no remote code, no unsafe deserialisation, no paths taken from run files."""

from __future__ import annotations

import json

import pytest

from r1ranker_plugins import get_engine
from r1ranker_plugins.checkpoint import read_ranker_config
from r1ranker_plugins.runs import read_rankgpt_json


def test_remote_code_is_off_unless_asked(tiny_model_path):
    assert get_engine(tiny_model_path, "transformers").config.trust_remote_code is False
    from r1ranker_plugins.engines.vllm import VLLMEngine

    assert VLLMEngine(tiny_model_path).llm_args["trust_remote_code"] is False


def test_training_config_refuses_python_objects(tmp_path):
    from yaml.constructor import ConstructorError

    from r1ranker_plugins.training import load_config

    config = tmp_path / "evil.yaml"
    config.write_text("model: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConstructorError):
        load_config(config)


def test_checkpoint_config_is_json_with_known_keys_only(tmp_path):
    (tmp_path / "r1ranker.json").write_text(
        json.dumps({"config_version": 1, "prompt_version": 1, "strategy": "iranker", "task": "passage", "exec": "x"})
    )
    with pytest.raises(ValueError, match="unknown key 'exec'"):
        read_ranker_config(str(tmp_path))


def test_paths_inside_a_run_are_data_not_files(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("do not read me")
    run = tmp_path / "run.json"
    run.write_text(json.dumps([{"query": "q", "hits": [{"qid": "1", "docid": str(secret), "content": str(secret)}]}]))
    [query] = read_rankgpt_json(run)
    assert query.candidates[0].text == str(secret)  # the path is the text; the file is never opened
