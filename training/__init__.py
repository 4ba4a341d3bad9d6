"""Training data, rewards and TRL trainers for IRanker, DRanker and setwise rankers."""

from __future__ import annotations

import argparse
import sys

from .data import DataConfig, build_examples, load_evalsets, sft_examples, to_dataset
from .rewards import (
    DEFAULT_REWARDS,
    REWARDS,
    exclusion_reward,
    format_reward,
    ranking_reward,
    setwise_reward,
    tag_count_reward,
    upstream_ranking_reward,
)
from .trainer import LoraSection, SftSection, TrainConfig, load_config, train


def _cmd_train(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    resume = True if args.resume == "latest" else args.resume
    final = train(config, output_dir=args.output_dir, resume=resume)
    print(f"final checkpoint: {final}")
    return 0


def _cmd_push(args: argparse.Namespace) -> int:
    from .hub import push

    folder = push(args.checkpoint, args.repo_id, private=args.private, dry_run=args.dry_run, out=args.out)
    if args.dry_run:
        print(folder)
    else:
        print(f"uploaded {folder} to https://huggingface.co/{args.repo_id}", file=sys.stderr)
    return 0


def add_training_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register `r1ranker train` and `r1ranker push` (their libraries load only when they run)."""
    train_parser = subparsers.add_parser("train", help="GRPO (TRL) training from a YAML config")
    train_parser.add_argument("--config", required=True, help="training YAML, e.g. training/configs/tiny.yaml")
    train_parser.add_argument("--output-dir", help="override the config's output_dir")
    train_parser.add_argument(
        "--resume", nargs="?", const="latest", help="resume from the newest checkpoint-N, or from the one given"
    )
    train_parser.set_defaults(func=_cmd_train)

    push_parser = subparsers.add_parser("push", help="upload a trained checkpoint with a model card")
    push_parser.add_argument("--checkpoint", required=True, help="the final/ (or adapter/) folder of a training run")
    push_parser.add_argument("--repo-id", required=True, help="ORG/NAME on the Hugging Face Hub")
    push_parser.add_argument("--private", action="store_true")
    push_parser.add_argument("--dry-run", action="store_true", help="write the upload folder, print its path, stop")
    push_parser.add_argument("--out", help="upload folder to write (default: a new folder beside the checkpoint)")
    push_parser.set_defaults(func=_cmd_push)


__all__ = [
    "DEFAULT_REWARDS",
    "REWARDS",
    "DataConfig",
    "LoraSection",
    "SftSection",
    "TrainConfig",
    "add_training_commands",
    "build_examples",
    "exclusion_reward",
    "format_reward",
    "load_config",
    "load_evalsets",
    "ranking_reward",
    "setwise_reward",
    "sft_examples",
    "tag_count_reward",
    "to_dataset",
    "train",
    "upstream_ranking_reward",
]
