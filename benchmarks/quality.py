"""Ranking quality of a real model: every strategy on DL19, DL20, NovelEval and a SciFact sample.

Each cell is one `r1ranker eval` run (the same `evaluation.evaluate`, into `OUT/DATASET-STRATEGY/`,
resumable), all strategies sharing one engine. References: the first-stage order (`none`: BM25,
NovelEval's given web-search order) and a random shuffle of the top `--depth` (`random`, seed 0).
Reported per cell: NDCG@10, MRR, how the model's steps were decided (its own answer, a forced
answer, a fallback), prompt and completion tokens per query, and seconds per query.

    python benchmarks/quality.py --out runs/quality            # SmolLM2-135M-Instruct on vLLM for CPU

Prints JSON rows and a markdown table, and writes OUT/quality.json, OUT/quality.md and
OUT/quality.png (NDCG@10 by strategy and data set).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from r1ranker_plugins import STRATEGIES, get_engine
from r1ranker_plugins.datasets import load_dataset
from r1ranker_plugins.evaluation import REFERENCES, evaluate
from r1ranker_plugins.types import Request

VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "iranker": ("iranker", {}),
    "iranker-tournament": ("iranker", {"mode": "tournament", "top_k": 10, "group_size": 50, "agreement": "final"}),
    "dranker": ("dranker", {}),
    "setwise": ("setwise", {"num_child": 19, "k": 10}),
}


def run_cell(dataset: str, strategy: str, engine: Any, args: argparse.Namespace, model_name: str) -> dict[str, Any]:
    evalset = load_dataset(dataset, sample=args.sample.get(dataset))
    out = Path(args.out) / f"{dataset}-{strategy}"
    info: dict[str, Any] = {"depth": args.depth, "sample": args.sample.get(dataset), "data_seed": 0}
    if strategy in REFERENCES:
        return evaluate(evalset, out, None, info=info, reference=(strategy, args.depth, 0))
    name, options = VARIANTS[strategy]
    ranker = STRATEGIES[name](
        engine=engine,
        depth=args.depth,
        max_new_tokens=args.max_new_tokens,
        max_candidate_tokens=args.max_candidate_tokens,
        **options,
    )
    info["model_name"] = model_name
    return evaluate(evalset, out, ranker, info=info)


def row(dataset: str, strategy: str, report: dict[str, Any]) -> dict[str, Any]:
    cost, answers = report["engine_per_query"], report.get("answers") or {}
    return {
        "dataset": dataset,
        "strategy": strategy,
        "queries": report["queries"],
        "NDCG@10": round(report["mean"]["NDCG@10"], 4),
        "MRR": round(report["mean"]["MRR"], 4),
        **{f"{kind}_rate": round(answers.get(f"{kind}_rate", 0.0), 4) for kind in ("own", "forced", "fallback")},
        "steps_per_query": round(answers.get("steps", 0) / max(report["queries"], 1), 1),
        "prompt_tokens_per_query": round(cost["prompt_tokens"]),
        "completion_tokens_per_query": round(cost["completion_tokens"]),
        "seconds_per_query": round(cost["seconds"], 2),
    }


def table(rows: list[dict[str, Any]]) -> str:
    header = ["data set", "strategy", "NDCG@10", "MRR", "own answer", "forced", "fell back"]
    header += ["prompt tok/q", "completion tok/q", "s/q"]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for r in rows:
        model = r["strategy"] not in REFERENCES
        rates = [f"{r[f'{kind}_rate']:.0%}" if model else "–" for kind in ("own", "forced", "fallback")]
        cost = [
            f"{r['prompt_tokens_per_query']:,}",
            f"{r['completion_tokens_per_query']:,}",
            f"{r['seconds_per_query']}",
        ]
        name = {"none": "first stage", "random": "random shuffle"}.get(r["strategy"], r["strategy"])
        lines.append(
            f"| {r['dataset']} ({r['queries']}) | {name} | {r['NDCG@10']:.4f} | {r['MRR']:.4f} | "
            + " | ".join(rates + (cost if model else ["–", "–", "–"]))
            + " |"
        )
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    strategies = list(dict.fromkeys(r["strategy"] for r in rows))
    width = 0.8 / len(strategies)
    figure, axes = plt.subplots(figsize=(8, 3.6))
    for k, strategy in enumerate(strategies):
        values = [
            next((r["NDCG@10"] for r in rows if r["dataset"] == d and r["strategy"] == strategy), 0) for d in datasets
        ]
        axes.bar([i + k * width for i in range(len(datasets))], values, width, label=strategy)
    axes.set_xticks([i + 0.4 - width / 2 for i in range(len(datasets))], datasets)
    axes.set_ylabel("NDCG@10")
    axes.set_title(title, fontsize=9)
    axes.legend(fontsize=7, ncols=3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="hub id or local path (default: SmolLM2-135M-Instruct, offline)")
    parser.add_argument("--backend", default="vllm", choices=["vllm", "transformers", "openai"])
    parser.add_argument("--base-url", help="openai backend: the server's URL")
    parser.add_argument("--datasets", nargs="+", default=["dl19", "dl20", "noveleval", "scifact"])
    parser.add_argument(
        "--sample", nargs="*", default=["scifact=50"], metavar="DATASET=N",
        help="a fixed sample of N queries of DATASET (seed 0); the others are evaluated whole",
    )  # fmt: skip
    parser.add_argument("--strategies", nargs="+", default=[*REFERENCES, *VARIANTS], choices=[*REFERENCES, *VARIANTS])
    parser.add_argument("--depth", type=int, default=20, help="rerank the first N candidates")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="generation budget per step")
    parser.add_argument("--max-candidate-tokens", type=int, default=256)
    parser.add_argument("--kv-cache-gib", type=float, default=4, help="vllm: KV cache size (the CPU default is 1)")
    parser.add_argument("--out", default="runs/quality", help="directory of the eval runs and the report")
    args = parser.parse_args()
    args.sample = {name: int(count) for name, count in (item.split("=") for item in args.sample)}
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")  # stdout carries the JSON

    from r1ranker_plugins.testing import model_description, small_model

    model = args.model or small_model()
    options: dict[str, Any] = {"base_url": args.base_url} if args.backend == "openai" else {}
    if args.backend == "vllm":
        options["kv_cache_memory_bytes"] = int(args.kv_cache_gib * (1 << 30))
    engine = get_engine(model, args.backend, **options)
    engine.generate([Request("Hello", max_tokens=1)])  # load the model first: seconds/query exclude it
    model_name = model_description(model)
    rows = []
    for dataset in args.datasets:
        for strategy in args.strategies:
            print(f"== {dataset} · {strategy}", file=sys.stderr, flush=True)
            rows.append(row(dataset, strategy, run_cell(dataset, strategy, engine, args, model_name)))
            print(json.dumps(rows[-1]), flush=True)
    out = Path(args.out)
    report = {"model": model_name, "backend": args.backend, "depth": args.depth, "rows": rows}
    report["max_new_tokens"] = args.max_new_tokens
    (out / "quality.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    text = table(rows)
    (out / "quality.md").write_text(f"{model_name}, {args.backend}, depth {args.depth}\n\n{text}", encoding="utf-8")
    plot(rows, out / "quality.png", f"{model_name.split(' (')[0]} · depth {args.depth} · NDCG@10")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
