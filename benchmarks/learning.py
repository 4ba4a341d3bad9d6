"""Evidence that training works: the exclusion reward of a small model on held-out IRanker cases,
before training, after an SFT warm start and after GRPO, against the random-choice expectation.

Task: Router-Performance from LLMRouter (default `--builder router-performance`): name an LLM that
is not the best one for the question. The model has the tiny test model's 2 layers and tokenizer at
twice its width (128, `--width`), fresh weights at the usual initialisation (std 0.02), and every
answer label (each LLM's name) added to the tokenizer as one token (`--labels-as-tokens`, on by
default): a real tokenizer spells a model name in a few common tokens that a pretrained reader
copies from the prompt, while this model has never read anything, and learning to spell 10-25
pieces of a toy BPE would hide what is measured here. It cannot read a question either, but which
LLMs are rarely the best is learnable from the names, as a real ranker's prior, and so is which
names the prompt lists. The warm start (`sft.eliminate: prior`) names the non-relevant candidate
least often relevant in the training examples (` </think>\n<answer>NAME</answer>`); GRPO then trains
on the exclusion reward through the real `r1ranker train` code path (`training.trainer.train`).
Held-out cases come from the test split (questions never seen in training), measured two ways:

- greedy answers through the package's transformers engine, scored with
  `rewards.exclusion_reward` (an answer that is not exactly a candidate's name scores -0.5);
- the most likely candidate (`likelihood_choice`, lm-evaluation-harness's multiple-choice
  protocol): what the model prefers to eliminate, always a valid answer.

Two content-blind references: random choice (a pool of k+1 candidates with one relevant gives
reward 1 with probability k/(k+1), so its expectation is the mean of k/(k+1) over the cases), and
the prior rule (name the shown candidate least often relevant in the training examples).

    python benchmarks/learning.py --out learning.json     # also writes learning.png
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import torch

from r1ranker_plugins.engines import close_all, get_engine
from r1ranker_plugins.training.data import (
    DataConfig,
    build_examples,
    least_often_relevant,
    load_evalsets,
    relevance_prior,
)
from r1ranker_plugins.training.rewards import exclusion_reward, format_reward
from r1ranker_plugins.training.trainer import SftSection, TrainConfig, resolve_model, train
from r1ranker_plugins.types import Request


def random_expectation(examples: list[dict[str, Any]]) -> float:
    """Mean over cases of P(a uniformly random candidate is not the relevant one) = k/(k+1)."""
    return sum(1 - 1 / len(e["candidates"]) for e in examples) / len(examples)


def prior_rule(examples: list[dict[str, Any]], prior: dict[str, float]) -> float:
    """Exclusion reward of naming the shown candidate least often relevant in training."""
    chosen = [least_often_relevant(e["candidates"], prior) for e in examples]
    return sum(c != e["gt"] for c, e in zip(chosen, examples, strict=True)) / len(examples)


def reader_model(labels: list[str], path: Path, seed: int, labels_as_tokens: bool, width: int) -> str:
    """The benchmark's model: the tiny test model's 2 layers and tokenizer (each answer label one
    more token if `labels_as_tokens`), `width` wide with heads of 32, and fresh weights at std 0.02.
    (The test model's std 0.5 keeps greedy decoding batch-invariant for tests but saturates
    attention, which slows learning.)"""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    tiny = resolve_model("tiny")
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    if labels_as_tokens:
        tokenizer.add_tokens(sorted(labels))
    config = AutoConfig.from_pretrained(tiny)
    config.vocab_size = -(-len(tokenizer) // 64) * 64
    config.initializer_range = 0.02
    config.hidden_size, config.intermediate_size, config.num_attention_heads = width, 2 * width, width // 32
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config).to(torch.float32)
    model.generation_config = GenerationConfig.from_pretrained(tiny)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def held_out_reward(model: str, examples: list[dict[str, Any]], max_tokens: int) -> dict[str, float]:
    """Greedy answers of `model` on the cases, scored with the training rewards; and the reward of
    the candidate it finds most likely (`likelihood_choice`)."""
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
        "exclusion_by_likelihood": likelihood_choice(model, examples),
    }


def likelihood_choice(model: str, examples: list[dict[str, Any]]) -> float:
    """Exclusion reward when the answer is the candidate label the model finds most likely.

    This is lm-evaluation-harness's multiple-choice protocol (sum of the label's token
    log-probabilities after ` </think>\n<answer>`): it asks what the model prefers to eliminate
    whatever it can spell, so it is always a valid answer and its random-choice expectation is the
    same as the greedy one's.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    network = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32).eval()
    rewards = []
    for example in examples:
        prefix = tokenizer.encode(example["prompt"] + " </think>\n<answer>", add_special_tokens=False)
        labels = [tokenizer.encode(f"{c}</answer>", add_special_tokens=False) for c in example["candidates"]]
        width = max(map(len, labels))
        ids = torch.tensor([prefix + label + [0] * (width - len(label)) for label in labels])
        with torch.no_grad():
            logits = network(ids).logits[:, len(prefix) - 1 : -1].log_softmax(-1)
        scores = [logits[row, range(len(label)), label].sum().item() for row, label in enumerate(labels)]
        chosen = example["candidates"][max(range(len(labels)), key=scores.__getitem__)]
        rewards.append(float(chosen != example["gt"]))
    return sum(rewards) / len(rewards)


def plot(rows: list[dict[str, Any]], curve: list[dict[str, float]], references: dict[str, float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    stages = range(len(rows))
    left.bar([i - 0.2 for i in stages], [r["exclusion"] for r in rows], 0.4, color="#4c72b0", label="greedy answer")
    left.bar(
        [i + 0.2 for i in stages],
        [r["exclusion_by_likelihood"] for r in rows],
        0.4,
        color="#55a868",
        label="most likely candidate",
    )
    left.set_xticks(list(stages), [r["stage"] for r in rows])
    for (name, value), color in zip(references.items(), ("#c44e52", "#8172b2"), strict=True):
        left.axhline(value, color=color, linestyle="--", label=f"{name.replace('_', ' ')} {value:.3f}")
    left.set_ylabel("held-out exclusion reward")
    left.set_ylim(-1.05, 1.05)
    left.legend(fontsize=8, loc="lower right")
    left.set_title("held-out cases", fontsize=9)
    steps = [p["step"] for p in curve]
    window = 25  # the sampled reward per step is noisy: few prompts, 8 rollouts each
    smooth = [
        sum(p["exclusion"] for p in curve[max(0, i - window + 1) : i + 1]) / min(i + 1, window)
        for i in range(len(curve))
    ]
    right.plot(steps, [p["exclusion"] for p in curve], ".", alpha=0.25, label="GRPO rollouts (per step)")
    right.plot(steps, smooth, label=f"moving mean ({window} steps)")
    for (name, value), color in zip(references.items(), ("#c44e52", "#8172b2"), strict=True):
        right.axhline(value, color=color, linestyle="--", label=name.replace("_", " "))
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
    parser.add_argument(
        "--builder", default="router-performance", help="r1ranker_plugins.datasets name with one relevant"
    )
    parser.add_argument("--sft-steps", type=int, default=600)
    parser.add_argument("--grpo-steps", type=int, default=200)
    parser.add_argument("--grpo-prompts", type=int, default=2, help="prompts per GRPO step")
    parser.add_argument("--num-generations", type=int, default=8, help="GRPO rollouts per prompt")
    parser.add_argument("--grpo-learning-rate", type=float, default=5e-4)
    parser.add_argument("--held-out-seeds", type=int, default=3, help="test-split cases drawn with data seeds 0..N-1")
    parser.add_argument("--held-out-cases", type=int, default=600, help="a seeded sample of the held-out cases")
    parser.add_argument("--max-candidate-tokens", type=int, default=16, help="cut passages, or LLM descriptions")
    parser.add_argument("--max-query-tokens", type=int, default=64)
    parser.add_argument(
        "--max-completion-length", type=int, default=16, help="48 with --no-labels-as-tokens: names take up to 25"
    )
    parser.add_argument(
        "--labels-as-tokens", action=argparse.BooleanOptionalAction, default=True, help="one token per answer label"
    )
    parser.add_argument("--width", type=int, default=128, help="hidden size (the test model's is 64)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default="runs/learning", help="training output directory")
    parser.add_argument("--out", default="learning.json")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    torch.set_num_threads(1)  # 2 threads on a shared 2-core machine run 10x slower
    from transformers import AutoTokenizer

    data = DataConfig(
        builder=args.builder,
        split="train",
        seed=args.seed,
        max_candidate_tokens=args.max_candidate_tokens,
        max_query_tokens=args.max_query_tokens,
    )
    train_examples = build_examples(
        data, "iranker", load_evalsets(data, AutoTokenizer.from_pretrained(resolve_model("tiny")))
    )
    prior = relevance_prior(train_examples)
    work = Path(args.work)
    model = reader_model(sorted(prior), work / "untrained", args.seed, args.labels_as_tokens, args.width)
    tokenizer = AutoTokenizer.from_pretrained(model)
    held_out = []
    for seed in range(args.held_out_seeds):  # same test queries, new negatives and positions: less noise
        test = DataConfig(**{**data.__dict__, "split": "test", "seed": seed})
        held_out += build_examples(test, "iranker", load_evalsets(test, tokenizer))
    held_out = random.Random(args.seed).sample(held_out, min(args.held_out_cases, len(held_out)))
    references = {"random_choice": random_expectation(held_out), "prior_rule": prior_rule(held_out, prior)}
    config = TrainConfig(
        model=model,
        strategy="iranker",
        data=data,
        output_dir=str(work / "train"),
        sft=SftSection(
            examples=args.sft_steps * 8,
            eliminate="prior",
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
            "per_device_train_batch_size": args.grpo_prompts * args.num_generations,
            "num_generations": args.num_generations,
            "max_completion_length": args.max_completion_length,
            "temperature": 1.0,
            "learning_rate": args.grpo_learning_rate,
            "beta": 0.001,
            "logging_steps": 1,
            "save_strategy": "no",
            "bf16": False,
            "seed": args.seed,
        },
    )
    stages = [("untrained", 0, model)]
    final = train(config)
    stages += [
        ("SFT", args.sft_steps, str(work / "train" / "sft" / "final")),
        ("SFT+GRPO", args.grpo_steps, str(final)),
    ]
    rows = []
    for stage, steps, checkpoint in stages:
        rows.append(
            {"stage": stage, "steps": steps, **held_out_reward(checkpoint, held_out, args.max_completion_length)}
        )
        print(json.dumps(rows[-1]), file=sys.stderr)
    history = json.loads((final / "r1ranker-training.json").read_text(encoding="utf-8"))["log_history"]
    curve = [
        {"step": h["step"], "exclusion": h["rewards/exclusion_reward/mean"]}
        for h in history
        if "rewards/exclusion_reward/mean" in h
    ]
    report = {
        "builder": args.builder,
        "model": f"Qwen2, 2 layers of width {args.width}, fresh weights"
        + (", answer labels as single tokens" if args.labels_as_tokens else ""),
        "train_cases": len(train_examples),
        "held_out_cases": len(held_out),
        **references,
        "stages": rows,
        "grpo_curve": curve,
        "minutes": round((time.perf_counter() - started) / 60, 2),
        "command": " ".join(["python", "benchmarks/learning.py", *(argv if argv is not None else sys.argv[1:])]),
    }
    out = Path(args.out)
    out.write_text(json.dumps(report, indent=1), encoding="utf-8")
    plot(rows, curve, references, out.with_suffix(".png"))
    print(json.dumps({k: v for k, v in report.items() if k != "grpo_curve"}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
