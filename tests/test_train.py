"""`r1ranker train`: config checks, and the tiny recipe end to end (train, load, rank, resume, push)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import yaml

from r1ranker_plugins import IRanker
from r1ranker_plugins.checkpoint import read_ranker_config
from r1ranker_plugins.cli import main
from r1ranker_plugins.training.trainer import config_from_dict, load_config

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "training" / "configs" / "tiny.yaml"
CONFIGS = sorted((ROOT / "training" / "configs").glob("*.yaml"))


@pytest.fixture
def one_thread():
    """Two torch threads on a busy 2-core machine run ~10x slower than one."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_example_configs_load(path):
    config = load_config(path)
    assert config.strategy in ("iranker", "dranker", "setwise")


def tiny_raw() -> dict:
    return yaml.safe_load(TINY.read_text())


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda raw: raw.update(epochs=3), "unknown key 'epochs'"),
        (lambda raw: raw["data"].update(builderr="x"), r"data\[0\]: unknown key 'builderr'"),
        (lambda raw: raw["trainer"].update(num_generation=4), "'num_generation' is not a GRPOConfig argument"),
        (lambda raw: raw["sft"]["trainer"].update(beta=0.1), "'beta' is not a SFTConfig argument"),
        (lambda raw: raw.update(lora={"rank": 8}), "lora: unknown key 'rank'"),
        (lambda raw: raw.pop("strategy"), "missing key 'strategy'"),
        (lambda raw: raw.update(strategy="listwise"), "strategy must be one of"),
        (lambda raw: raw.update(rewards=["exclusion", "vibes"]), "unknown reward 'vibes'"),
        (lambda raw: raw["trainer"].update(output_dir="x"), "top level"),
        (lambda raw: raw["sft"].update(eliminate="worst"), "sft.eliminate must be 'random' or 'prior'"),
        (lambda raw: raw.update(strategy="dranker") or raw["sft"].update(eliminate="prior"), "IRanker answers"),
    ],
)
def test_config_errors_are_clear(edit, message):
    raw = tiny_raw()
    edit(raw)
    with pytest.raises(ValueError, match=message):
        config_from_dict(raw, "tiny.yaml")


def test_cli_reports_config_errors(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: tiny\nstrategy: iranker\ndata: {builder: passage-5}\ntrainer: {warp: 9}\n")
    assert main(["train", "--config", str(bad)]) == 2
    assert "'warp' is not a GRPOConfig argument" in capsys.readouterr().err
    assert main(["train", "--config", str(tmp_path / "missing.yaml")]) == 2


def test_tiny_recipe_trains_loads_ranks_resumes_and_pushes(tmp_path, shared_data, one_thread, capsys):
    out = tmp_path / "run"
    assert main(["train", "--config", str(TINY), "--output-dir", str(out)]) == 0
    final = out / "final"
    assert final.is_dir() and (out / "checkpoint-2").is_dir() and (out / "checkpoint-4").is_dir()
    assert (out / "sft" / "final" / "config.json").is_file()
    config = read_ranker_config(str(final))
    assert config["strategy"] == "iranker" and config["task"] == "passage" and config["system_verb"] == "thinks"

    ranking = IRanker(model=str(final), max_new_tokens=8).rank("solar power", ["sun panels", "bananas", "inverters"])
    assert sorted(ranking.order) == [0, 1, 2] and len(ranking.trace) == 2

    first = json.loads((final / "r1ranker-training.json").read_text())
    assert first["global_step"] == 4 and first["rewards"] == ["exclusion", "format", "tag_count"]
    steps = [h for h in first["log_history"] if "step_time" in h]
    assert [h["step"] for h in steps] == [1, 2, 3, 4]

    checkpoint = out / "checkpoint-2"
    assert main(["train", "--config", str(TINY), "--output-dir", str(out), "--resume", str(checkpoint)]) == 0
    resumed = json.loads((final / "r1ranker-training.json").read_text())
    again = [h for h in resumed["log_history"] if "step_time" in h]
    assert [h["step"] for h in again] == [1, 2, 3, 4]
    assert again[:2] == steps[:2]  # restored from checkpoint-2 (wall-clock step times included), not rerun
    assert IRanker(model=str(final), max_new_tokens=8).rank("q", ["a", "b"]).order in ([0, 1], [1, 0])

    capsys.readouterr()
    assert main(["push", "--checkpoint", str(final), "--repo-id", "org/tiny", "--dry-run"]) == 0
    folder = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert read_ranker_config(str(folder)) == config
    assert (folder / "model.safetensors").is_file() and "## Training configuration" in (
        folder / "README.md"
    ).read_text()


def test_sft_warns_when_max_length_would_cut_the_completions():
    from r1ranker_plugins.testing import tiny_model
    from r1ranker_plugins.training.trainer import _warn_cut_completions

    pairs = [{"prompt": "word " * 300, "completion": " </think>\n<answer>passage 1</answer>"}]
    with pytest.warns(UserWarning, match="cuts 1 of 1 warm-start examples"):
        _warn_cut_completions(pairs, tiny_model(), 64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _warn_cut_completions(pairs, tiny_model(), 4096)  # long enough: silent
