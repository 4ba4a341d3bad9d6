"""Evidence that training works: the exclusion reward of the tiny model on held-out IRanker cases,
before training, after an SFT warm start and after GRPO, against the random-choice expectation.

The tiny model (`r1ranker_plugins.testing.tiny_model`, 2 layers, random weights) cannot reason, so
the warm start teaches it the answer form on completions that eliminate a non-relevant candidate
chosen from the labels (`</think>\\n<answer>passage k</answer>`); GRPO then trains on the exclusion
reward through the real `r1ranker train` code path (`training.trainer.train`). Held-out cases come
from the test split of the same builder (queries never seen in training), scored greedily through
the package's transformers engine with `rewards.exclusion_reward`.

Random-choice expectation: a pool of k+1 candidates with one relevant gives reward 1 with
probability k/(k+1) when a valid candidate is named uniformly at random, so the expectation over
the held-out mix is the mean of k/(k+1) over its cases (0.679 for Passage-5's pools of 2..5).

    python benchmarks/learning.py --out learning.json     # also writes learning.png
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from r1ranker_plugins.engines import close_all, get_engine
from r1ranker_plugins.training.data import DataConfig, build_examples, load_evalsets
from r1ranker_plugins.training.rewards import exclusion_reward, format_reward
from r1ranker_plugins.training.trainer import SftSection, TrainConfig, resolve_model, train
from r1ranker_plugins.types import Request


def random_expectation(examples: list[dict[str, Any]]) -> float:
    """Mean over cases of P(a uniformly random candidate is not the relevant one) = k/(k+1)."""
    return sum(1 - 1 / len(e["candidates"]) for e in examples) / len(examples)


def held_out_reward(model: str, examples: list[dict[str, Any]], max_tokens: int) -> dict[str, float]:
    """Greedy answers of `model` on the cases, scored with the training rewards."""
    engine = get_engine(model, "transformers")
    requests = [Request(e["prompt"], max_tokens, 0.0, ("</answer>",)) for e in examples]
    texts = [c.text for c in engine.generate(requests)]
    close_all()
    columns = {"gt": [e["gt"] for e in examples], "candidates": [e["candidates"] for e in examples]}
    exclusion = exclusion_reward([e["prompt"] for e in examples], texts, **columns)
    shape = format_reward([e["prompt"] for e in examples], texts)
    valid = [(r, e) for r, e in zip(exclusion, examples, strict=True) if r >= 0]
    return {
        "exclusion": sum(exclusion) / len(exclusion),
        "valid_answer": len(valid) / len(exclusion),
        "format_ok": sum(r == 0 for r in shape) / len(shape),
        # among valid answers: how often a non-relevant one was named, vs k/(k+1) for a content-blind choice
        "non_relevant_among_valid": sum(r for r, _ in valid) / len(valid) if valid else 0.0,
        "content_blind_among_valid": random_expectation([e for _, e in valid]) if valid else 0.0,
    }


def plot(rows: list[dict[str, Any]], curve: list[dict[str, float]], expectation: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    left.bar([r["stage"] for r in rows], [r["exclusion"] for r in rows], color="#4c72b0")
    left.axhline(expectation, color="#c44e52", linestyle="--", label=f"random choice {expectation:.3f}")
    left.set_ylabel("held-out exclusion reward")
    left.set_ylim(-1.05, 1.05)
    left.legend(fontsize=8)
    left.set_title("held-out cases (greedy)", fontsize=9)
    right.plot([p["step"] for p in curve], [p["exclusion"] for p in curve], marker=".", label="GRPO rollouts")
    right.axhline(expectation, color="#c44e52", linestyle="--", label="random choice")
    right.set_xlabel("GRPO step")
    right.set_ylabel("train exclusion reward (sampled)")
    right.set_ylim(-1.05, 1.05)
    right.legend(fontsize=8)
    right.set_title("training curve", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--builder", default="passage-5", help="r1ranker_plugins.datasets name with one relevant")
    parser.add_argument("--sft-steps", type=int, default=300)
    parser.add_argument("--grpo-steps", type=int, default=100)
    parser.add_argument("--held-out-seeds", type=int, default=3, help="test-split cases drawn with data seeds 0..N-1")
    parser.add_argument("--max-candidate-tokens", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default="runs/learning", help="training output directory")
    parser.add_argument("--out", default="learning.json")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    torch.set_num_threads(1)  # 2 threads on a shared 2-core machine run 10x slower

    data = DataConfig(
        builder=args.builder,
        split="train",
        seed=args.seed,
        max_candidate_tokens=args.max_candidate_tokens,
        max_query_tokens=args.max_candidate_tokens,
    )
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_model("tiny"))
    held_out = []
    for seed in range(args.held_out_seeds):  # same test queries, new negatives and positions: less noise
        test = DataConfig(**{**data.__dict__, "split": "test", "seed": seed})
        held_out += build_examples(test, "iranker", load_evalsets(test, tokenizer))
    train_cases = len(build_examples(data, "iranker", load_evalsets(data, tokenizer)))
    expectation = random_expectation(held_out)
    config = TrainConfig(
        model="tiny",
        strategy="iranker",
        data=data,
        output_dir=args.work,
        sft=SftSection(
            examples=args.sft_steps * 8,
            trainer={
                "max_steps": args.sft_steps,
                "per_device_train_batch_size": 8,
                "learning_rate": 1e-3,
                "lr_scheduler_type": "constant_with_warmup",
                "warmup_steps": 10,
                "logging_steps": 10,
                "save_strategy": "no",
                "bf16": False,
                "seed": args.seed,
            },
        ),
        trainer={
            "max_steps": args.grpo_steps,
            "per_device_train_batch_size": 8,
            "num_generations": 8,
            "max_completion_length": 12,
            "temperature": 1.0,
            "learning_rate": 1e-4,
            "beta": 0.001,
            "logging_steps": 1,
            "save_strategy": "no",
            "bf16": False,
            "seed": args.seed,
        },
    )
    rows = [{"stage": "untrained", "steps": 0, **held_out_reward(resolve_model("tiny"), held_out, 12)}]
    print(json.dumps(rows[-1]), file=sys.stderr)
    final = train(config)
    work = Path(args.work)
    rows.append({"stage": "SFT", "steps": args.sft_steps, **held_out_reward(str(work / "sft" / "final"), held_out, 12)})
    print(json.dumps(rows[-1]), file=sys.stderr)
    rows.append({"stage": "SFT+GRPO", "steps": args.grpo_steps, **held_out_reward(str(final), held_out, 12)})
    print(json.dumps(rows[-1]), file=sys.stderr)
    history = json.loads((final / "r1ranker-training.json").read_text(encoding="utf-8"))["log_history"]
    curve = [
        {"step": h["step"], "exclusion": h["rewards/exclusion_reward/mean"]}
        for h in history
        if "rewards/exclusion_reward/mean" in h
    ]
    report = {
        "builder": args.builder,
        "model": "tiny (random-weight Qwen2, 2 layers)",
        "train_cases": train_cases,
        "held_out_cases": len(held_out),
        "random_expectation": expectation,
        "stages": rows,
        "grpo_curve": curve,
        "minutes": round((time.perf_counter() - started) / 60, 2),
        "command": " ".join(["python", "benchmarks/learning.py", *(argv if argv is not None else sys.argv[1:])]),
    }
    out = Path(args.out)
    out.write_text(json.dumps(report, indent=1), encoding="utf-8")
    plot(rows, curve, expectation, out.with_suffix(".png"))
    print(json.dumps({k: v for k, v in report.items() if k != "grpo_curve"}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
