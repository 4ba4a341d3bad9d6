"""Typed settings: one declaration per strategy and backend, checked at construction, reachable everywhere."""

from __future__ import annotations

import dataclasses
import json

import pytest

from r1ranker_plugins import STRATEGIES, IRanker, SetwiseRanker, make_ranker
from r1ranker_plugins.cli import build_parser
from r1ranker_plugins.engines import ENGINE_OPTIONS, get_engine
from r1ranker_plugins.settings import add_ranker_flags, flag, option_fields, options_from_args


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda m: IRanker(m, depht=20), r"unknown option 'depht' for iranker .*did you mean 'depth'\?"),
        (lambda m: IRanker(m, "vllm", max_model_length=8), r"'max_model_length' .*did you mean 'max_model_len'\?"),
        (lambda m: SetwiseRanker(m, "openai", lora="a/b"), r"'lora' belongs to the transformers and vllm backend"),
        (lambda m: IRanker(m, k=3), r"'k' belongs to the setwise strategy, not iranker"),
        (lambda m: IRanker(m, group_size=1), r"group_size must be >= 2, got 1"),
        (lambda m: IRanker(m, mode="tourney"), r"unknown mode 'tourney'"),
        (lambda m: IRanker(m, depth="20"), r"depth must be int or NoneType, got '20'"),
        (lambda m: IRanker(m, max_batch_size=True), r"max_batch_size must be int, got True"),
        (lambda m: IRanker(m, "tgi"), r"unknown backend 'tgi'"),
        (lambda m: get_engine(m, "vllm", dtyp="float32"), r"unknown option 'dtyp' for the vllm backend.*'dtype'"),
        (lambda m: IRanker(m, "openai"), r"the openai backend needs base_url \(--base-url\)"),
    ],
)
def test_misspelled_and_unsupported_options_fail_at_construction(tiny_model_path, build, message):
    with pytest.raises(ValueError, match=message):
        build(tiny_model_path)


def test_engine_options_do_not_apply_to_a_given_engine(scripted):
    with pytest.raises(ValueError, match="configures an engine; it does not apply to the engine= given"):
        IRanker(engine=scripted(lambda r: ""), max_model_len=4096)


def test_every_option_has_a_flag_and_a_config_key(tiny_model_path, tmp_path):
    """Walk every strategy's settings and every backend's options: each is a flag of rerank and eval,
    and a key of --config that reaches the ranker or engine built from it."""
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    for name, (_, spec, _) in option_fields().items():
        for command in ("rerank", "eval"):
            assert flag(name) in commands[command]._option_string_actions, (command, name)
        assert spec.metadata.get("help"), name  # a line of help for every flag
    for strategy, cls in STRATEGIES.items():
        for spec in dataclasses.fields(cls.Settings):
            assert spec.name in option_fields(), (strategy, spec.name)
    for backend, options in ENGINE_OPTIONS.items():
        for spec in dataclasses.fields(options):
            assert spec.name in option_fields(), (backend, spec.name)

    config = tmp_path / "ranker.yaml"
    config.write_text(
        f"strategy: iranker\nmodel: {tiny_model_path}\nmode: tournament\ngroup_size: 50\nagreement: final\n"
        "depth: 20\nmax_batch_size: 4\n",
        encoding="utf-8",
    )
    ranker = make_ranker(config=config)
    assert (ranker.settings.mode, ranker.settings.group_size, ranker.settings.agreement) == ("tournament", 50, "final")
    assert ranker.settings.depth == 20 and ranker.engine.config.max_batch_size == 4
    args = commands["rerank"].parse_args(
        ["--input", "x", "--output", "y", "--config", str(config), "--group-size", "30", "--no-enable-prefix-caching"]
    )
    options = options_from_args(args)  # flags override the file
    assert options["group_size"] == 30 and options["mode"] == "tournament" and options["enable_prefix_caching"] is False
    overridden = make_ranker(config=config, depth=5)
    assert overridden.settings.depth == 5


def test_json_configs_and_vllm_kwargs_flags(tiny_model_path, tmp_path):
    import argparse

    config = tmp_path / "ranker.json"
    config.write_text(json.dumps({"strategy": "setwise", "model": tiny_model_path, "num_child": 3, "k": 2}))
    ranker = make_ranker(config=config)
    assert (ranker.settings.num_child, ranker.settings.k) == (3, 2)
    parser = argparse.ArgumentParser()
    add_ranker_flags(parser)
    args = parser.parse_args(["--vllm-kwargs", '{"swap_space": 1}', "--max-model-len", "2048"])
    assert options_from_args(args) == {"vllm_kwargs": {"swap_space": 1}, "max_model_len": 2048}


def test_help_shows_every_default(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["rerank", "--help"])
    text = capsys.readouterr().out
    assert "--group-size GROUP_SIZE" in text and "(default: 25)" in text and "[iranker]" in text
    assert "--base-url BASE_URL" in text and "[openai backend]" in text
    assert "--wave-size WAVE_SIZE" in text and "(default: 32)" in text
    with pytest.raises(SystemExit):
        build_parser().parse_args(["demo", "--help"])
    assert "(default: 48)" in capsys.readouterr().out
