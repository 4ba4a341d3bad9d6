"""`r1ranker.json`: what a trained checkpoint needs at inference (strategy, prompt settings, base model).

A checkpoint only works with the prompt it was trained on, so training writes this file beside the
weights and the rankers read it to pick their defaults. It is plain JSON with a closed set of keys,
validated on read; a model without it (any plain base model) simply has no ranker config.
"""

from __future__ import annotations

import functools
import json
import os
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from .prompts import ITEM_TYPES, SCENARIOS, TASKS

CONFIG_NAME = "r1ranker.json"
CONFIG_VERSION = 1
PROMPT_VERSION = 1  # bump when a prompt constant in prompts.py changes
STRATEGY_NAMES = ("iranker", "dranker", "setwise")

# key -> (type, allowed values or None); the first four are required.
REQUIRED = ("config_version", "prompt_version", "strategy", "task")
KEYS: dict[str, tuple[type, tuple[Any, ...] | None]] = {
    "config_version": (int, None),
    "prompt_version": (int, None),
    "strategy": (str, STRATEGY_NAMES),
    "task": (str, TASKS),
    "tasks": (list, None),  # every task trained on (a Ranking-bench mix has several); `task` is the default
    "system_verb": (str, ("thinks", "think")),
    "scenario": (str, SCENARIOS),
    "item_type": (str, ITEM_TYPES),
    "label_colon": (bool, None),
    "base_model": (str, None),
    "adapter": (bool, None),  # True: the folder is a LoRA adapter for `base_model` (SetwiseRanker(lora=...))
}

_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def validate_ranker_config(config: Any, source: str = CONFIG_NAME) -> dict[str, Any]:
    """The config if every key is known and well typed; ValueError naming the problem otherwise."""
    if not isinstance(config, dict):
        raise ValueError(f"{source}: expected a JSON object, got {type(config).__name__}")
    version = config.get("config_version")
    if isinstance(version, int) and version > CONFIG_VERSION:
        raise ValueError(f"{source}: config_version {version} is newer than this r1ranker-plugins reads; upgrade it")
    missing = [key for key in REQUIRED if key not in config]
    if missing:
        raise ValueError(f"{source}: missing key {missing[0]!r}")
    for key, value in config.items():
        if key not in KEYS:
            raise ValueError(f"{source}: unknown key {key!r}; expected some of {sorted(KEYS)}")
        kind, allowed = KEYS[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ValueError(f"{source}: {key} must be a {kind.__name__}, got {value!r}")
        if allowed is not None and value not in allowed:
            raise ValueError(f"{source}: {key} must be one of {allowed}, got {value!r}")
    tasks = config.get("tasks", [config["task"]])
    if not all(isinstance(t, str) and t in TASKS for t in tasks) or config["task"] not in tasks:
        raise ValueError(f"{source}: tasks must be a list of {TASKS} that includes task, got {tasks!r}")
    return dict(config)


def write_ranker_config(directory: str | Path, config: dict[str, Any]) -> Path:
    """Validate and write `r1ranker.json` into a checkpoint directory."""
    path = Path(directory) / CONFIG_NAME
    path.write_text(json.dumps(validate_ranker_config(config), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def read_ranker_config(model_or_path: str, *, revision: str | None = None) -> dict[str, Any] | None:
    """`r1ranker.json` of a local checkpoint directory or a Hub model, or None when it has none.

    Never raises for a plain model: a missing file, an unknown repo, no network or no
    `huggingface_hub` all give None. A file that exists but is invalid raises ValueError.
    """
    local = Path(model_or_path).expanduser()
    if local.is_dir():
        path = local / CONFIG_NAME
        if not path.is_file():
            return None
        return _parse(path.read_text(encoding="utf-8"), str(path))
    if local.exists() or not _HUB_ID.match(model_or_path):
        return None
    downloaded = _hub_config_file(model_or_path, revision)
    if downloaded is None:
        return None
    return _parse(Path(downloaded).read_text(encoding="utf-8"), f"{model_or_path}/{CONFIG_NAME}")


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


@functools.lru_cache(maxsize=1)
def hub_unreachable() -> str | None:
    """Why the Hugging Face Hub cannot be reached, in a few seconds at most; None when it can.

    huggingface_hub retries a dead connection for over a minute before it gives up; one short
    probe settles it first.
    """
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    try:
        urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"), timeout=5).close()
    except urllib.error.HTTPError:
        return None  # the server answered
    except (OSError, ValueError) as error:
        return f"cannot reach {endpoint} ({getattr(error, 'reason', error)})"
    return None


def hub_cached(repo_id: str, revision: str | None = None) -> str | None:
    """The local snapshot of a Hub model when the cache holds one, else None (no network)."""
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(repo_id, revision=revision, local_files_only=True)
    except Exception:  # not cached, or huggingface_hub missing
        return None


@functools.lru_cache(maxsize=64)
def _hub_config_file(repo_id: str, revision: str | None) -> str | None:
    """Local path of a Hub model's r1ranker.json, or None; cached, so building many rankers (or
    adapters) for one model asks the Hub once per process."""
    try:
        from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache

        cached = try_to_load_from_cache(repo_id, CONFIG_NAME, revision=revision)
        if isinstance(cached, str):
            return cached
        if constants.HF_HUB_OFFLINE or cached is not None or hub_unreachable():  # offline, or known absent
            return None
        return hf_hub_download(repo_id, CONFIG_NAME, revision=revision, etag_timeout=5)
    except Exception:  # any hub, offline or missing-file error means "no ranker config"
        return None


def _parse(text: str, source: str) -> dict[str, Any]:
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{source}: not valid JSON ({error})") from error
    return validate_ranker_config(config, source)


__all__ = [
    "CONFIG_NAME",
    "CONFIG_VERSION",
    "KEYS",
    "PROMPT_VERSION",
    "read_ranker_config",
    "validate_ranker_config",
    "write_ranker_config",
]
