"""Does training make a real model a better ranker? SmolLM2-135M-Instruct before and after a recipe,
on held-out sets of three domains, paired query by query with bootstrap intervals.

    python benchmarks/learning.py --config training/configs/smollm2-iranker.yaml --out runs/learning

Fixed samples (seed 0; `--sample DATASET=N` changes them, 0 for the whole set) keep the default run
within two hours on a 2-core CPU: 30 DL20 queries, NovelEval whole (21), 30 SciFact, 80 router and 80
recommendation test queries.

1. Train the recipe (`r1ranker train`'s code) into OUT/train, or take `--checkpoint DIR` as trained.
2. Evaluate the zero-shot model and the trained one with IRanker (the paper's loop, through
   `r1ranker eval`'s `evaluate`, into OUT/eval/MODEL-SET): passages (DL20, NovelEval, a fixed
   SciFact sample: NDCG@10 of the full ranking at depth 20), routing (Router-Performance test:
   NDCG@1 and MRR of the best LLM) and recommendation (Rec-Movie test users: MRR of the next movie),
   with how often the model's own answer was usable. Content-blind references: the order of the
   LLMs by training accuracy, movies by training popularity, and the random expectation.
3. The curve: every checkpoint the recipe saved, and the zero-shot model, scored on held-out single
   elimination steps (the exclusion reward of the greedy answer, forced answers not allowed).
4. Paired differences (trained - zero-shot) per query with 95% bootstrap intervals, per set and for the
   three passage sets pooled (the passage domain).

Prints JSON rows and a table; writes OUT/learning.json, OUT/learning.md and OUT/learning.png, and the
table into the trained checkpoint as evaluation.md, which `r1ranker push` quotes in the model card.
Every step resumes where it stopped (a re-run only scores).
"""

from __future__ import annotations

import argparse
import dataclasses
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
from r1ranker_plugins.training.hub import EVALUATION_NOTES
from r1ranker_plugins.training.rewards import exclusion_reward
from r1ranker_plugins.training.trainer import TrainConfig, load_config, resolve_model, train
from r1ranker_plugins.types import Request

# (name, set, sample, primary metric): what "a better ranker" is measured on, per domain
HELD_OUT = [
    ("dl20", "passage", 30, "NDCG@10"),
    ("noveleval", "passage", None, "NDCG@10"),
    ("scifact", "passage", 30, "NDCG@10"),
    ("router-performance", "routing", 80, "NDCG@1"),
    ("rec-movie", "recommendation", 80, "MRRx100"),
]
SETTINGS = {"depth": 20, "max_new_tokens": 32, "max_candidate_tokens": 48, "max_query_tokens": 96}


def evalset(name: str, sample: int | None) -> EvalSet:
    data = select(load_dataset(name), sample=sample, seed=0)
    if data.options.get("protocol") == "single":  # NDCG@1: is the best LLM (the next movie) ranked first?
        data = dataclasses.replace(data, options={**data.options, "ks": (1, *data.options["ks"])})
    return data


def references(evalsets: dict[str, EvalSet], out: Path) -> dict[str, dict[str, Any]]:
    """What no model reads: the first-stage order of the passages (BM25; NovelEval's given order), and
    content-blind orders learned from the training splits only: the LLMs by their mean quality on
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
    found: dict[str, dict[str, Any]] = {}
    for name, task, _, _ in HELD_OUT:
        if task == "passage":
            report = evaluate(evalsets[name], out / f"first-stage-{name}", reference=("none", None, 0), progress=False)
            found[name] = {"first stage": {"NDCG@10": report["mean"]["NDCG@10"]}}
    for name, scores, ks in (("router-performance", quality, (1, 5)), ("rec-movie", popularity, (10,))):
        rows = []
        for query in evalsets[name].queries:
            order = [c.id for c in sorted(query.candidates, key=lambda c: -scores[c.id])]
            rows.append(single_relevant_metrics(order.index(query.target) + 1, ks))
        n = len(evalsets[name].queries[0].candidates)
        found[name] = {
            "content-blind": {key: statistics.mean(r[key] for r in rows) for key in rows[0]},
            "random": {"MRRx100": 100 * sum(1 / i for i in range(1, n + 1)) / n, "NDCG@1": 1 / n},
        }
    return found


def evaluate_model(
    label: str, model: str, evalsets: dict[str, EvalSet], out: Path, settings: dict[str, int]
) -> dict[str, Any]:
    """IRanker with `model` on every held-out set; per set: per-query metrics, means, answer rates."""
    engine = get_engine(model, "vllm", enforce_eager=True, max_model_len=4096)
    results = {}
    for name, task, _, _ in HELD_OUT:
        options = {key: value for key, value in evalsets[name].options.items() if key in ("scenario", "item_type")}
        ranker = IRanker(engine=engine, task=task, system_verb="thinks", **settings, **options)
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


def pooled_passages(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The passage domain as one row: NDCG@10 over the queries of every passage set, paired."""
    names = [name for name, task, _, _ in HELD_OUT if task == "passage"]

    def pool(results: dict[str, Any]) -> dict[str, dict[str, float]]:
        return {f"{name}:{qid}": metrics for name in names for qid, metrics in results[name]["per_query"].items()}

    def own_rate(results: dict[str, Any]) -> float:
        answers = [results[name]["answers"] for name in names]
        return sum(a["own"] for a in answers) / sum(a["steps"] for a in answers)

    base, trained = pool(before), pool(after)
    return {
        "set": "passages (pooled)",
        "metric": "NDCG@10",
        "queries": len(base),
        "zero_shot": statistics.mean(m["NDCG@10"] for m in base.values()),
        "trained": statistics.mean(m["NDCG@10"] for m in trained.values()),
        **paired(base, trained, "NDCG@10"),
        "own_zero_shot": own_rate(before),
        "own_trained": own_rate(after),
    }


def curve(train_dir: Path, base: str, sft_steps: int, steps: list[dict[str, Any]], cache: Path) -> list[dict[str, Any]]:
    """The held-out step reward of the zero-shot model, the warm start and every saved GRPO checkpoint
    (rewards cached by checkpoint name in `cache`)."""
    rewards: dict[str, float] = json.loads(cache.read_text()) if cache.is_file() else {}
    checkpoints = [("zero-shot", 0, Path(base)), ("sft", sft_steps, train_dir / "sft" / "final")]
    for path in sorted(train_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1])):
        checkpoints.append((path.name, sft_steps + int(path.name.split("-")[1]), path))
    points = []
    for name, step, path in checkpoints:
        if name not in rewards and (path / "config.json").is_file():
            rewards[name] = step_reward(str(path), steps)
            cache.write_text(json.dumps(rewards, indent=1))
        if name in rewards:
            points.append({"checkpoint": name, "step": step, "held_out_reward": rewards[name]})
    return points


def warm_start_steps(train_dir: Path, config: TrainConfig) -> int:
    """SFT steps before GRPO: the warm start's saved trainer state, else the recipe's `max_steps`."""
    state = train_dir / "sft" / "final" / "trainer_state.json"
    if state.is_file():
        return json.loads(state.read_text())["global_step"]
    return int(config.sft.trainer.get("max_steps", 0)) if config.sft else 0


def training_log(train_dir: Path, sft_steps: int) -> list[dict[str, Any]]:
    """GRPO's logged mean reward per step (from the final checkpoint's training summary)."""
    summary = train_dir / "final" / "r1ranker-training.json"
    if not summary.is_file():
        return []
    history = json.loads(summary.read_text())["log_history"]
    return [{"step": sft_steps + h["step"], "reward": h["reward"]} for h in history if "reward" in h]


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


REFERENCE_NAMES = {
    "first stage": "first-stage order (BM25; NovelEval: its given order)",
    "content-blind": "content-blind order by training data (LLMs: mean quality; movies: popularity)",
    "random": "random order (expectation)",
}


def references_text(references: dict[str, dict[str, dict[str, float]]]) -> str:
    lines = []
    for name, _, _, metric in HELD_OUT:
        for kind, values in references[name].items():
            lines.append(f"- {name}: {REFERENCE_NAMES[kind]}: {metric} {values[metric]:.4f}")
    return "\n".join(lines)


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
    parser.add_argument(
        "--sample", nargs="*", default=[], metavar="DATASET=N",
        help="evaluate a fixed sample of N queries of DATASET (seed 0; 0 = the whole set) instead of the default",
    )  # fmt: skip
    parser.add_argument("--max-new-tokens", type=int, default=SETTINGS["max_new_tokens"], help="per IRanker step")
    args = parser.parse_args()
    samples = {name: sample for name, _, sample, _ in HELD_OUT}
    for item in args.sample:
        name, _, count = item.partition("=")
        if name not in samples or not count.isdigit():
            parser.error(f"--sample {item}: expected DATASET=N with DATASET one of {', '.join(samples)}")
        samples[name] = int(count) or None
    settings = {**SETTINGS, "max_new_tokens": args.max_new_tokens}
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")  # stdout carries the JSON
    out = Path(args.out)
    config = load_config(args.config)
    base = resolve_model(config.model)
    train_dir = out / "train"
    trained = args.checkpoint or str(train_dir / "final")
    if not Path(trained, "config.json").is_file():  # train (or finish training) the recipe
        trained = str(train(config, output_dir=train_dir, resume=_resumable(train_dir)))

    evalsets = {name: evalset(name, sample) for name, sample in samples.items()}
    before = evaluate_model("zero-shot", base, evalsets, out / "eval", settings)
    after = evaluate_model("trained", trained, evalsets, out / "eval", settings)
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
    rows.append(pooled_passages(before, after))
    print(json.dumps(rows[-1]), flush=True)
    sft_steps = warm_start_steps(train_dir, config)
    points = [] if args.checkpoint else curve(train_dir, base, sft_steps, held_out_steps(), out / "curve.json")
    report = {
        "model": model_description(base),
        "trained": trained,
        "config": args.config,
        "settings": settings,
        "samples": samples,
        "rows": rows,
        "references": references(evalsets, out / "eval"),
        "curve": points,
    }
    (out / "learning.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    text = table(rows)
    summary = (
        f"{text}\nReferences that read no content, on the same queries:\n{references_text(report['references'])}\n"
    )
    (out / "learning.md").write_text(summary, encoding="utf-8")
    # the model card's evaluation (r1ranker push) quotes this comparison with the base model
    heading = (
        f"Held-out sets, IRanker at depth {settings['depth']} against the base model zero-shot, paired per query "
        "with 95% bootstrap intervals (`benchmarks/learning.py`):\n\n"
    )
    Path(trained, EVALUATION_NOTES).write_text(heading + summary, encoding="utf-8")
    if points:
        plot(training_log(train_dir, sft_steps), points, sft_steps, out / "learning.png")
    print(text)
    return 0


def _resumable(train_dir: Path) -> bool | None:
    """Resume GRPO from its newest checkpoint when a previous run left one."""
    return True if any(train_dir.glob("checkpoint-*")) else None


if __name__ == "__main__":
    raise SystemExit(main())
