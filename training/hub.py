"""`r1ranker push`: a trained checkpoint to the Hugging Face Hub, with a model card and `r1ranker.json`.

The upload folder holds the checkpoint's files (hard links, or copies across file systems), a
model card README.md and the checkpoint's `r1ranker.json`, which lets `IRanker(model="ORG/NAME")`
or `SetwiseRanker(lora="ORG/NAME")` pick the prompt and strategy the model was trained with.
`--dry-run` writes that folder and stops, offline.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from r1ranker_plugins.checkpoint import CONFIG_NAME, read_ranker_config, write_ranker_config

from .trainer import TRAINING_SUMMARY

EVALUATION_NOTES = "evaluation.md"  # Markdown the card quotes first (learning.py's table against the base model)
CARD_SECTIONS = (
    "## Base model",
    "## Strategy",
    "## Task mix",
    "## Reward",
    "## Training configuration",
    "## Evaluation",
    "## How to use",
    "## Intended use",
    "## Limitations",
)
_STRATEGY_TEXT = {
    "iranker": "IRanker (iterative elimination): each call names the least relevant remaining candidate.",
    "dranker": "DRanker (direct): one call lists every candidate, best first, one per line.",
    "setwise": "Rank-R1 setwise: each call picks the most relevant of up to 20 documents, inside a heapsort.",
}
_PROMPT_KEYS = ("task", "system_verb", "scenario", "item_type", "label_colon")
_RANKER_CLASS = {"iranker": "IRanker", "dranker": "DRanker", "setwise": "SetwiseRanker"}
_REWARD_TEXT = {
    "exclusion": "exclusion: +1 naming a non-relevant candidate, 0 the relevant one, -0.5 a non-candidate, "
    "-1 no answer",
    "ranking": "ranking: NDCG of the relevant item + coverage penalty (distinct valid / n - 1), -1 no answer",
    "upstream_ranking": "upstream_ranking: upstream's DRanker reward, character-iteration bug included",
    "setwise": "setwise: 1 for the think/answer shape with the relevant `[k]` label, else 0",
    "format": "format: 0 for `<think>…</think> <answer>…</answer>`, else -1",
    "tag_count": "tag_count: -0.25 per think/answer tag missing or repeated",
}


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _metrics_reports(checkpoint: Path) -> list[dict[str, Any]]:
    """`r1ranker eval` reports saved in the checkpoint folder (`metrics.json`, `*/metrics.json`)."""
    paths = [checkpoint / "metrics.json", *sorted(checkpoint.glob("*/metrics.json"))]
    return [report for report in map(_read_json, paths) if isinstance(report, dict) and "mean" in report]


def _evaluation_section(notes: str | None, reports: list[dict[str, Any]]) -> str:
    if notes and not reports:
        return notes.strip()
    return f"{notes.strip()}\n\n{_evaluation_table(reports)}" if notes else _evaluation_table(reports)


def _evaluation_table(reports: list[dict[str, Any]]) -> str:
    if not reports:
        return (
            "No evaluation was saved with this checkpoint (run `r1ranker eval --out CHECKPOINT/eval-NAME`, "
            f"or write {EVALUATION_NOTES})."
        )
    names: list[str] = []
    for report in reports:
        names += [name for name in report["mean"] if name not in names]
    lines = ["| dataset | strategy | queries | " + " | ".join(names) + " |", "|---" * (len(names) + 3) + "|"]
    for report in reports:
        cells = [f"{report['mean'][name]:.4f}" if name in report["mean"] else "" for name in names]
        row = [str(report.get("dataset", "?")), str(report.get("strategy", "?")), str(report.get("queries", "?"))]
        lines.append("| " + " | ".join(row + cells) + " |")
    if any(report.get("judge") for report in reports):
        lines.append("\nRows with a judge are SIMULATIONS answering from the labels, not this model.")
    return "\n".join(lines)


def model_card(
    meta: dict[str, Any],
    training: dict[str, Any] | None,
    reports: list[dict[str, Any]],
    repo_id: str = "ORG/NAME",
    notes: str | None = None,
) -> str:
    """README.md: YAML front matter for the Hub, then what the model is, how it was trained and scored
    (`notes`: Markdown quoted at the head of the evaluation, e.g. a comparison with the base model)."""
    import yaml

    base = meta.get("base_model", "unknown")
    front: dict[str, Any] = {
        "library_name": "peft" if meta.get("adapter") else "transformers",
        "pipeline_tag": "text-generation",
        "tags": ["r1ranker-plugins", "reranking", meta["strategy"], *meta.get("tasks", [meta["task"]]), "grpo", "trl"],
    }
    if "/" in base:  # a Hub id; local paths (e.g. the tiny test model) are not metadata
        front["base_model"] = base
    config = (training or {}).get("config", {})
    mix = (training or {}).get("task_mix", {})
    rewards = (training or {}).get("rewards", [])
    settings = {key: meta[key] for key in _PROMPT_KEYS if key in meta}
    mix_lines = [f"- {name}: {count} examples" for name, count in sorted(mix.items())] or ["- not recorded"]
    reward_lines = [f"- {_REWARD_TEXT.get(name, name)}" for name in rewards] or ["- not recorded"]
    ranker = _RANKER_CLASS[meta["strategy"]]
    if not meta.get("adapter"):
        usage = f'{ranker}(model="{repo_id}")'
    elif meta["strategy"] == "setwise":
        usage = f'SetwiseRanker(model="{base}", lora="{repo_id}")'
    else:
        usage = f"# merge the adapter into {base} (peft merge_and_unload), then {ranker}(model=MERGED_DIR)"
    body = [
        f"# {meta['strategy']} reranker on {base}",
        "",
        "Trained with [r1ranker-plugins](https://github.com/r1ranker/r1ranker-plugins) (GRPO with TRL).",
        "",
        "## Base model",
        "",
        f"{base}" + (" (this repository holds a LoRA adapter for it)" if meta.get("adapter") else ""),
        "",
        "## Strategy",
        "",
        _STRATEGY_TEXT[meta["strategy"]],
        "",
        f"Prompt settings (from `{CONFIG_NAME}`, prompt version {meta['prompt_version']}): "
        + ", ".join(f"{k}={v}" for k, v in settings.items()),
        "",
        "## Task mix",
        "",
        *mix_lines,
        "",
        "## Reward",
        "",
        *reward_lines,
        "",
        "Rewards are computed on the completion only (not prompt + completion as upstream).",
        "",
        "## Training configuration",
        "",
        "```json",
        json.dumps(
            {key: config.get(key) for key in ("model", "strategy", "data", "trainer", "lora", "sft") if key in config}
            | {"global_step": (training or {}).get("global_step"), "minutes": (training or {}).get("minutes")},
            indent=1,
            default=str,
        ),
        "```",
        "",
        "## Evaluation",
        "",
        _evaluation_section(notes, reports),
        "",
        "## How to use",
        "",
        "```python",
        "from r1ranker_plugins import IRanker, DRanker, SetwiseRanker",
        usage,
        "```",
        "",
        f"`{CONFIG_NAME}` tells the rankers which prompt and strategy this model was trained with.",
        "",
        "## Intended use",
        "",
        "Reranking first-stage candidates (passages, recommendation items or candidate LLMs) with the exact",
        "prompt it was trained on, through r1ranker-plugins. Research use.",
        "",
        "## Limitations",
        "",
        "- It only works well with its training prompt and strategy; other prompts are out of distribution.",
        "- Quality outside the task mix above is unmeasured; check the evaluation table before relying on it.",
        "- Reasoning text is not a faithful explanation of the ranking.",
        "- Training data licences (MS MARCO, MovieLens, Amazon reviews) restrict commercial use.",
    ]
    return "---\n" + yaml.safe_dump(front, sort_keys=False) + "---\n\n" + "\n".join(body) + "\n"


def stage(checkpoint: str | Path, out: str | Path | None = None, repo_id: str = "ORG/NAME") -> Path:
    """Write the folder to upload: the checkpoint's files, README.md and `r1ranker.json`."""
    checkpoint = Path(checkpoint)
    meta = read_ranker_config(str(checkpoint)) if checkpoint.is_dir() else None
    if meta is None:
        raise FileNotFoundError(f"no {CONFIG_NAME} in {checkpoint}: push the final/ or adapter/ folder of a run")
    if out is None:
        folder = Path(tempfile.mkdtemp(prefix=f"{checkpoint.name}.hub-", dir=checkpoint.parent))
    else:
        folder = Path(out)
        if folder.exists() and any(folder.iterdir()):
            raise ValueError(f"upload folder {folder} is not empty")
        folder.mkdir(parents=True, exist_ok=True)
    for source in checkpoint.iterdir():
        if source.is_file() and source.name not in ("README.md", CONFIG_NAME):
            try:
                os.link(source, folder / source.name)
            except OSError:
                shutil.copy2(source, folder / source.name)
    write_ranker_config(folder, meta)
    notes = checkpoint / EVALUATION_NOTES
    card = model_card(
        meta,
        _read_json(checkpoint / TRAINING_SUMMARY),
        _metrics_reports(checkpoint),
        repo_id,
        notes.read_text(encoding="utf-8") if notes.is_file() else None,
    )
    (folder / "README.md").write_text(card, encoding="utf-8")
    return folder


def push(
    checkpoint: str | Path, repo_id: str, *, private: bool = False, dry_run: bool = False, out: str | Path | None = None
) -> Path:
    """Stage the checkpoint and (unless `dry_run`) create the repo and upload the folder; returns the folder."""
    if repo_id.count("/") != 1:
        raise ValueError(f"--repo-id must be ORG/NAME, got {repo_id!r}")
    folder = stage(checkpoint, out, repo_id)
    if not dry_run:
        from huggingface_hub import HfApi

        api = HfApi()
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        api.upload_folder(folder_path=str(folder), repo_id=repo_id, commit_message="Upload r1ranker checkpoint")
    return folder
