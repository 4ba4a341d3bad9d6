"""`r1ranker push --dry-run` and `r1ranker.json`: model card sections, config round-trip, safe reading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from r1ranker_plugins.checkpoint import CONFIG_NAME, read_ranker_config, validate_ranker_config, write_ranker_config
from r1ranker_plugins.cli import main
from r1ranker_plugins.training.hub import CARD_SECTIONS

META = {
    "config_version": 1,
    "prompt_version": 1,
    "strategy": "iranker",
    "task": "routing",
    "tasks": ["routing"],
    "system_verb": "thinks",
    "scenario": "cost",
    "base_model": "Qwen/Qwen2.5-3B-Instruct",
    "adapter": False,
}
REPORT = {
    "dataset": "router-cost",
    "strategy": "iranker",
    "model": "ckpt",
    "queries": 367,
    "primary": "MRRx100",
    "mean": {"MRRx100": 41.25, "NDCG@5": 0.4321},
    "engine": {},
}


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    """The final/ folder of a training run: weights (a stand-in file), configs and an eval report."""
    folder = tmp_path / "final"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"\0" * 16)
    write_ranker_config(folder, META)
    summary = {
        "config": {"model": "Qwen/Qwen2.5-3B-Instruct", "strategy": "iranker", "trainer": {"beta": 0.001}},
        "task_mix": {"Router-Cost": 1200},
        "rewards": ["exclusion", "format", "tag_count"],
        "global_step": 1000,
        "minutes": 600.0,
    }
    (folder / "r1ranker-training.json").write_text(json.dumps(summary))
    (folder / "eval-router-cost").mkdir()
    (folder / "eval-router-cost" / "metrics.json").write_text(json.dumps(REPORT))
    return folder


def dry_run(checkpoint: Path, out: Path, capsys) -> Path:
    code = main(
        ["push", "--checkpoint", str(checkpoint), "--repo-id", "org/iranker-3b", "--dry-run", "--out", str(out)]
    )
    assert code == 0
    printed = Path(capsys.readouterr().out.strip())
    assert printed == out
    return printed


def test_dry_run_round_trips_the_ranker_config(checkpoint, tmp_path, capsys):
    folder = dry_run(checkpoint, tmp_path / "upload", capsys)
    assert read_ranker_config(str(folder)) == read_ranker_config(str(checkpoint)) == META
    assert {p.name for p in folder.iterdir()} >= {"config.json", "model.safetensors", CONFIG_NAME, "README.md"}
    assert (folder / "model.safetensors").read_bytes() == b"\0" * 16


def test_model_card_has_metadata_and_every_section(checkpoint, tmp_path, capsys):
    card = (dry_run(checkpoint, tmp_path / "upload", capsys) / "README.md").read_text()
    assert card.startswith("---\n")
    front = yaml.safe_load(card.split("---\n")[1])
    assert front["base_model"] == "Qwen/Qwen2.5-3B-Instruct"
    assert front["library_name"] == "transformers"
    assert front["pipeline_tag"] == "text-generation"
    assert {"r1ranker-plugins", "iranker", "routing"} <= set(front["tags"])
    positions = [card.index(section) for section in CARD_SECTIONS]
    assert positions == sorted(positions)
    assert "Router-Cost: 1200 examples" in card
    assert "| router-cost | iranker | 367 | 41.2500 | 0.4321 |" in card
    assert 'IRanker(model="org/iranker-3b")' in card
    assert "scenario=cost" in card and '"beta": 0.001' in card


def test_adapter_card_says_how_to_load_it(checkpoint, tmp_path, capsys):
    write_ranker_config(
        checkpoint,
        {**META, "strategy": "setwise", "task": "passage", "tasks": ["passage"]}
        | {"adapter": True, "label_colon": False, "system_verb": "thinks", "scenario": "cost"},
    )
    card = (dry_run(checkpoint, tmp_path / "upload", capsys) / "README.md").read_text()
    assert "library_name: peft" in card
    assert 'SetwiseRanker(model="Qwen/Qwen2.5-3B-Instruct", lora="org/iranker-3b")' in card


def test_card_without_evaluation_or_training_summary(checkpoint, tmp_path, capsys):
    (checkpoint / "r1ranker-training.json").unlink()
    (checkpoint / "eval-router-cost" / "metrics.json").unlink()
    card = (dry_run(checkpoint, tmp_path / "upload", capsys) / "README.md").read_text()
    assert "No evaluation was saved" in card
    assert all(section in card for section in CARD_SECTIONS)


def test_card_quotes_the_saved_comparison_with_the_base_model(checkpoint, tmp_path, capsys):
    """benchmarks/learning.py leaves evaluation.md (trained against zero-shot) in the checkpoint."""
    (checkpoint / "eval-router-cost" / "metrics.json").unlink()
    (checkpoint / "evaluation.md").write_text(
        "| held-out set | zero-shot | trained |\n|---|---|---|\n| dl20 | 0.3 | 0.4 |\n"
    )
    card = (dry_run(checkpoint, tmp_path / "upload", capsys) / "README.md").read_text()
    evaluation = card.split("## Evaluation")[1].split("## How to use")[0]
    assert "| dl20 | 0.3 | 0.4 |" in evaluation and "No evaluation was saved" not in evaluation


def test_push_refuses_what_it_cannot_describe(tmp_path, checkpoint, capsys):
    plain = tmp_path / "plain"
    plain.mkdir()
    assert main(["push", "--checkpoint", str(plain), "--repo-id", "org/x", "--dry-run"]) == 2
    assert CONFIG_NAME in capsys.readouterr().err
    assert main(["push", "--checkpoint", str(checkpoint), "--repo-id", "no-slash", "--dry-run"]) == 2
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file").write_text("x")
    out = str(tmp_path / "busy")
    assert main(["push", "--checkpoint", str(checkpoint), "--repo-id", "org/x", "--dry-run", "--out", out]) == 2


def test_read_ranker_config_is_none_for_plain_models(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read per call; the env var at import
    assert read_ranker_config(str(tmp_path)) is None  # a directory without the file
    assert read_ranker_config(str(tmp_path / "missing")) is None
    assert read_ranker_config("tiny") is None
    assert read_ranker_config("Qwen/Qwen2.5-3B-Instruct") is None  # hub id, offline and not cached


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"strategy": "listwise"}, "strategy must be one of"),
        ({"task": 3}, "task must be a str"),
        ({"prompt_version": True}, "prompt_version must be a int"),
        ({"shell": "rm -rf /"}, "unknown key 'shell'"),
        ({"config_version": 2}, "newer than this"),
        ({"tasks": ["passage"]}, "tasks must be a list"),  # task routing not among tasks
    ],
)
def test_invalid_ranker_configs_are_rejected(tmp_path, change, message):
    (tmp_path / CONFIG_NAME).write_text(json.dumps(META | change))
    with pytest.raises(ValueError, match=message):
        read_ranker_config(str(tmp_path))


def test_missing_key_and_bad_json(tmp_path):
    with pytest.raises(ValueError, match="missing key 'strategy'"):
        validate_ranker_config({k: v for k, v in META.items() if k != "strategy"})
    (tmp_path / CONFIG_NAME).write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_ranker_config(str(tmp_path))
