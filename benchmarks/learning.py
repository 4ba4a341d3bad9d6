"""Does training make a real model a better ranker? SmolLM2-135M-Instruct before and after a recipe,
on held-out sets of three domains, paired query by query with bootstrap intervals.

    python benchmarks/learning.py --config training/configs/smollm2-iranker.yaml --out runs/learning

1. Train the recipe (`r1ranker train`'s code) into OUT/train, or take `--checkpoint DIR` as trained.
2. Evaluate the zero-shot model and the trained one with IRanker (the paper's loop, through
   `r1ranker eval`'s `evaluate`, into OUT/eval/MODEL-SET): passages (DL20, NovelEval, a fixed
   SciFact sample: NDCG@10 of the full ranking at depth 20), routing (Router-Performance test:
   NDCG@1 and MRR of the best LLM) and recommendation (Rec-Movie test users: MRR of the next movie),
   with how often the model's own answer was usable. Content-blind references: the order of the
   LLMs by training accuracy, movies by training popularity, and the random expectation.
3. The curve: every checkpoint the recipe saved, and the zero-shot model, scored on held-out single
   elimination steps (the exclusion reward of the greedy answer, forced answers not allowed).
4. Paired differences (trained - zero-shot) per query with 95% bootstrap intervals.

Prints JSON rows and a table; writes OUT/learning.json, OUT/learning.md and OUT/learning.png.
Every step resumes where it stopped (a re-run only scores).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from r1ranker_plugins import IRanker, get_engine
from r1ranker_plugins.datasets import EvalSet, build_passage_n, load_dataset, select, split_of
from r1ranker_plugins.engines import close_all
from r1ranker_plugins.evaluation import evaluate
from r1ranker_plugins.metrics import single_relevant_metrics
from r1ranker_plugins.runs import data_dir
from r1ranker_plugins.testing import model_description
from r1ranker_plugins.training.data import DataConfig, build_examples, held_out_keys
from r1ranker_plugins.training.rewards import exclusion_reward
from r1ranker_plugins.training.trainer import load_config, resolve_model, train
from r1ranker_plugins.types import Request

# (name, set, sample, primary metric): what "a better ranker" is measured on, per domain
HELD_OUT = [
    ("dl20", "passage", None, "NDCG@10"),
    ("noveleval", "passage", None, "NDCG@10"),
    ("scifact", "passage", 30, "NDCG@10"),
    ("router-performance", "routing", 80, "NDCG@1"),
    ("rec-movie", "recommendation", 80, "MRRx100"),
]
SETTINGS = {"depth": 20, "max_new_tokens": 64, "max_candidate_tokens": 48, "max_query_tokens": 96}


def evalset(name: str, sample: int | None) -> EvalSet:
    return select(load_dataset(name), sample=sample, seed=0)


def references(evalsets: dict[str, EvalSet]) -> dict[str, dict[str, Any]]:
    """Content-blind orders, learned from the training splits only: the LLMs by their mean quality on
    LLMRouter's training questions, the movies by how many training users rated them; and random."""
    held_out = held_out_keys(["router-performance"])
    train = [q for q in load_dataset("router-performance", split="train").queries if q.query not in held_out]
    quality: Counter[str] = Counter()
    for query in train:
        for candidate in query.candidates:
            quality[candidate.id] += candidate.metadata["quality"] / len(train)
    popularity: Counter[str] = Counter()
    with open(data_dir() / "rec" / "ml-100k" / "ml-100k.inter", encoding="utf-8") as lines:
        next(lines)
        for line in lines:
            user, item, *_ = line.split("\t")
            if split_of(f"user-{user}") == "train":
                popularity[item] += 1
    out: dict[str, dict[str, Any]] = {}
    for name, scores, ks in (("router-performance", quality, (1, 5)), ("rec-movie", popularity, (10,))):
        rows = []
        for query in evalsets[name].queries:
            order = [c.id for c in sorted(query.candidates, key=lambda c: -scores[c.id])]
            rows.append(single_relevant_metrics(order.index(query.target) + 1, ks))
        n = len(evalsets[name].queries[0].candidates)
        out[name] = {
            "content-blind": {key: statistics.mean(r[key] for r in rows) for key in rows[0]},
            "random": {"MRRx100": 100 * sum(1 / i for i in range(1, n + 1)) / n, "NDCG@1": 1 / n},
        }
    return out


def evaluate_model(label: str, model: str, evalsets: dict[str, EvalSet], out: Path) -> dict[str, Any]:
    """IRanker with `model` on every held-out set; per set: per-query metrics, means, answer rates."""
    engine = get_engine(model, "vllm", enforce_eager=True, max_model_len=4096)
    results = {}
    for name, task, _, _ in HELD_OUT:
        options = {key: value for key, value in evalsets[name].options.items() if key in ("scenario", "item_type")}
        ranker = IRanker(engine=engine, task=task, system_verb="thinks", **SETTINGS, **options)
        report = evaluate(evalsets[name], out / f"{label}-{name}", ranker, info={"model_name": label}, progress=False)
        results[name] = {"per_query": report["per_query"], "mean": report["mean"], "answers": report["answers"]}
        print(f"== {label} · {name}: {json.dumps(report['mean'])}", file=sys.stderr, flush=True)
    close_all()
    return results


def held_out_steps(count: int = 60) -> list[dict[str, Any]]:
    """Single IRanker steps from the held-out test sets (never trained on): the curve's yardstick."""
    rng = random.Random(0)
    steps = []
    sources = [
        DataConfig(builder="router-performance", split="test", max_candidate_tokens=48, max_query_tokens=96),
        DataConfig(builder="rec-movie", split="test", n=10, max_candidate_tokens=16),
    ]
    dl20 = build_passage_n(8, load_dataset("dl20"), split="all")
    for source in sources:
        steps += rng.sample(build_examples(source, "iranker", _truncated_sets(source)), count)
    steps += rng.sample(build_examples(DataConfig(builder="dl20", n=8), "iranker", [dl20]), count)
    return steps


def _truncated_sets(source: DataConfig) -> list[EvalSet]:
    from transformers import AutoTokenizer

    from r1ranker_plugins.training.data import load_evalsets

    return load_evalsets(source, AutoTokenizer.from_pretrained(resolve_model("small")))


def step_reward(model: str, steps: list[dict[str, Any]]) -> float:
    """Mean exclusion reward of the greedy answers (32 tokens, no forced answer): -1 none, -0.5 no label."""
    engine = get_engine(model, "vllm", enforce_eager=True, max_model_len=4096)
    completions = engine.generate([Request(s["prompt"], 32, stop=("</answer>",)) for s in steps])
    rewards = exclusion_reward(
        completions=[c.text for c in completions],
        gt=[s["gt"] for s in steps],
        candidates=[s["candidates"] for s in steps],
    )
    close_all()
    return statistics.mean(rewards)


def paired(base: dict[str, dict[str, float]], trained: dict[str, dict[str, float]], metric: str) -> dict[str, float]:
    """Mean difference (trained - base) over queries and its 95% bootstrap interval (2,000 resamples)."""
    qids = sorted(base)
    diffs = [trained[q][metric] - base[q][metric] for q in qids]
    rng = random.Random(0)
    means = sorted(statistics.mean(rng.choices(diffs, k=len(diffs))) for _ in range(2000))
    return {"diff": statistics.mean(diffs), "low": means[49], "high": means[1949], "queries": len(diffs)}


def curve(train_dir: Path, base: str, steps: list[dict[str, Any]], cache: Path) -> list[dict[str, Any]]:
    """The held-out step reward of the zero-shot model, the warm start and every saved GRPO checkpoint."""
    points = json.loads(cache.read_text()) if cache.is_file() else []
    done = {p["checkpoint"] for p in points}
    sft_steps = _sft_steps(train_dir)
    checkpoints = [("zero-shot", 0, Path(base)), ("sft", sft_steps, train_dir / "sft" / "final")]
    for path in sorted(train_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1])):
        checkpoints.append((path.name, sft_steps + int(path.name.split("-")[1]), path))
    for name, step, path in checkpoints:
        if name in done or not (path / "config.json").is_file():
            continue
        points.append({"checkpoint": name, "step": step, "held_out_reward": step_reward(str(path), steps)})
        cache.write_text(json.dumps(points, indent=1))
    return sorted(points, key=lambda p: p["step"])


def _sft_steps(train_dir: Path) -> int:
    state = train_dir / "sft" / "trainer_state.json"
    return json.loads(state.read_text())["global_step"] if state.is_file() else 0


def training_log(train_dir: Path) -> list[dict[str, Any]]:
    """GRPO's logged mean reward per step (from the final checkpoint's training summary)."""
    summary = train_dir / "final" / "r1ranker-training.json"
    if not summary.is_file():
        return []
    sft = _sft_steps(train_dir)
    history = json.loads(summary.read_text())["log_history"]
    return [{"step": sft + h["step"], "reward": h["reward"]} for h in history if "reward" in h]


def plot(log: list[dict[str, Any]], points: list[dict[str, Any]], sft_steps: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 3.6))
    if log:
        axes.plot(
            [r["step"] for r in log], [r["reward"] for r in log], color="#999999", lw=1, label="GRPO reward (train)"
        )
    axes.plot(
        [p["step"] for p in points], [p["held_out_reward"] for p in points], "o-", color="#c44e52",
        label="held-out step reward (greedy, no forcing)",
    )  # fmt: skip
    axes.axvline(sft_steps, ls=":", color="#4c72b0", label="end of the SFT warm start")
    axes.set_xlabel("training step (SFT, then GRPO)")
    axes.set_ylabel("exclusion reward")
    axes.set_title("SmolLM2-135M-Instruct, IRanker steps", fontsize=9)
    axes.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def table(rows: list[dict[str, Any]]) -> str:
    header = "| held-out set | metric | zero-shot | trained | paired difference [95% CI] | own answers |"
    lines = [header, "|---|---|---|---|---|---|"]
    for r in rows:
        interval = f"{r['diff']:+.4f} [{r['low']:+.4f}, {r['high']:+.4f}]"
        own = f"{r['own_zero_shot']:.0%} → {r['own_trained']:.0%}"
        means = f"{r['zero_shot']:.4f} | {r['trained']:.4f}"
        lines.append(f"| {r['set']} ({r['queries']}) | {r['metric']} | {means} | {interval} | {own} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="training/configs/smollm2-iranker.yaml", help="the training recipe")
    parser.add_argument("--checkpoint", help="an already trained model to evaluate instead of training")
    parser.add_argument("--out", default="runs/learning", help="directory of the run, evaluations and report")
    args = parser.parse_args()
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")  # stdout carries the JSON
    out = Path(args.out)
    config = load_config(args.config)
    base = resolve_model(config.model)
    train_dir = out / "train"
    trained = args.checkpoint or str(train_dir / "final")
    if not Path(trained, "config.json").is_file():  # train (or finish training) the recipe
        trained = str(train(config, output_dir=train_dir, resume=_resumable(train_dir)))

    evalsets = {name: evalset(name, sample) for name, _, sample, _ in HELD_OUT}
    before = evaluate_model("zero-shot", base, evalsets, out / "eval")
    after = evaluate_model("trained", trained, evalsets, out / "eval")
    rows = []
    for name, _, _, metric in HELD_OUT:
        rows.append(
            {
                "set": name,
                "metric": metric,
                "queries": len(before[name]["per_query"]),
                "zero_shot": before[name]["mean"][metric],
                "trained": after[name]["mean"][metric],
                **paired(before[name]["per_query"], after[name]["per_query"], metric),
                "own_zero_shot": before[name]["answers"]["own_rate"],
                "own_trained": after[name]["answers"]["own_rate"],
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    points = [] if args.checkpoint else curve(train_dir, base, held_out_steps(), out / "curve.json")
    report = {
        "model": model_description(base),
        "trained": trained,
        "config": args.config,
        "settings": SETTINGS,
        "rows": rows,
        "references": references(evalsets),
        "curve": points,
    }
    (out / "learning.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    text = table(rows)
    references_text = "\n".join(f"- {name}: {json.dumps(values)}" for name, values in report["references"].items())
    (out / "learning.md").write_text(f"{text}\nContent-blind and random references:\n{references_text}\n")
    if points:
        plot(training_log(train_dir), points, _sft_steps(train_dir), out / "learning.png")
    print(text)
    return 0


def _resumable(train_dir: Path) -> bool | None:
    """Resume GRPO from its newest checkpoint when a previous run left one."""
    return True if any(train_dir.glob("checkpoint-*")) else None


if __name__ == "__main__":
    raise SystemExit(main())
