"""What every example needs: the model to use (tiny and offline by default) and the shared data."""

from __future__ import annotations

import argparse

from r1ranker_plugins.runs import data_dir
from r1ranker_plugins.testing import tiny_model

REAL_MODEL = "Qwen/Qwen2.5-3B-Instruct"


def parse_args(description: str, **extra: dict) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--model",
        help=f"hub id or path of the ranking LLM, e.g. {REAL_MODEL}; default: a tiny RANDOM-WEIGHT local model",
    )
    parser.add_argument("--backend", default="transformers", choices=["transformers", "vllm", "openai"])
    parser.add_argument("--strategy", default="iranker", choices=["iranker", "dranker", "setwise"])
    for flag, options in extra.items():
        parser.add_argument(f"--{flag.replace('_', '-')}", **options)
    args = parser.parse_args()
    if args.model is None:
        args.model = tiny_model()
        print(f"Using a tiny RANDOM-WEIGHT model ({args.model}): rankings are not meaningful.")
        print(f"For real rankings: --model {REAL_MODEL} --backend vllm\n")
    return args


def ranker_options(args: argparse.Namespace) -> dict:
    """Small budgets for the tiny model; real models get the defaults."""
    if args.model.endswith("tiny-qwen2"):
        return {"max_new_tokens": 8, "max_candidate_tokens": 48}
    return {}


__all__ = ["data_dir", "parse_args", "ranker_options"]
