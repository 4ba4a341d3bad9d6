"""Ranking quality against cost, on DL19 BM25 top-100 -> top-10, with a SIMULATED judge.

The judge is a simulation (`r1ranker_plugins.testing.SimulatedJudge`): it answers every prompt
from the DL19 relevance labels, wrong with probability `error_rate` per decision, through the real
prompt and parsing code. It measures the ranking algorithms and what they cost, never a model.
Both of its error models run: "uniform" (a wrong answer is a random candidate; a multi-elimination's
names are as many such decisions in a row) and "local" (a wrong answer is a neighbour in a noisily
sorted list). Error rate 0 is deterministic and runs once.

    python benchmarks/cost_quality.py --out runs/cost_quality.json [--seeds 3] [--paper-seeds 1] [--limit 43]

Prints a JSON list of rows and a table; writes the rows (`--out`) and a plot of NDCG@10 against
prompt tokens per query (`--plot`, default next to `--out`).
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from r1ranker_plugins import DRanker, IRanker, SetwiseRanker
from r1ranker_plugins.datasets import load_dataset
from r1ranker_plugins.dranker import dranker_steps
from r1ranker_plugins.engines import Engine
from r1ranker_plugins.metrics import mean_metrics, score_run
from r1ranker_plugins.simulated import ERROR_MODELS, SimulatedJudge, judge_labels, query_key
from r1ranker_plugins.steps import QueryState, StepMachine


class SlidingWindowRanker(DRanker):
    """Comparison baseline: listwise sliding window (RankGPT / rank_llm), window 20, step 10.

    Windows go from the bottom of the list to the top, each ranked in one call; the windows of a
    query run in sequence, as in rank_llm.
    """

    strategy = "sliding-window"

    def __init__(self, *args: Any, window: int = 20, step: int = 10, **options: Any) -> None:
        super().__init__(*args, **options)
        self.window, self.step = window, step

    def steps(self, query: QueryState) -> StepMachine[list[int]]:
        order = list(range(len(query.candidates)))
        start = max(len(order) - self.window, 0)
        while True:
            window = order[start : start + self.window]
            shown = QueryState(query.query, [query.candidates[i] for i in window], query.trace)
            local = yield from dranker_steps(self.settings, shown)
            order[start : start + self.window] = [window[i] for i in local]
            if start == 0:
                return order
            start = max(start - self.step, 0)


class Meter(Engine):
    """Wraps the judge and records, per query, calls, rounds, documents and tokens."""

    backend = "meter"

    def __init__(self, judge: SimulatedJudge) -> None:
        super().__init__("meter")
        self.judge = judge
        self.per_query: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self._round = 0

    @property
    def tokenizer(self):
        return self.judge.tokenizer

    def _generate(self, requests):
        completions = self.judge.generate(requests)
        self._round += 1
        seen_now = set()
        for request, completion in zip(requests, completions, strict=True):
            cost = self.per_query[query_key(request.question.query)]
            cost["calls"] += 1
            cost["docs_in_prompts"] += len(request.question.ids)
            cost["prompt_tokens"] += completion.prompt_tokens
            cost["completion_tokens"] += completion.completion_tokens
            key = query_key(request.question.query)
            if key not in seen_now:
                seen_now.add(key)
                cost["rounds"] += 1
        return completions


VARIANTS: dict[str, tuple[type, str, dict[str, Any]]] = {
    "iranker/paper": (IRanker, "paper", {"depth": 100}),
    "iranker/shortlist-20": (IRanker, "paper", {"depth": 20}),
    "iranker/tournament-g25": (IRanker, "tournament", {"depth": 100, "mode": "tournament", "group_size": 25}),
    "iranker/tournament-g25-m2": (
        IRanker,
        "tournament",
        {"depth": 100, "mode": "tournament", "group_size": 25, "margin": 2},
    ),
    "iranker/tournament-g34": (IRanker, "tournament", {"depth": 100, "mode": "tournament", "group_size": 34}),
    "iranker/tournament-g34-m5-1by1": (
        IRanker,
        "tournament",
        {"depth": 100, "mode": "tournament", "group_size": 34, "margin": 5, "ordering": "one-by-one"},
    ),
    "iranker/tournament-g25-m5-1by1": (
        IRanker,
        "tournament",
        {"depth": 100, "mode": "tournament", "group_size": 25, "margin": 5, "ordering": "one-by-one"},
    ),
    "iranker/tournament-g50": (IRanker, "tournament", {"depth": 100, "mode": "tournament", "group_size": 50}),
    "iranker/tournament-g50-final": (
        IRanker,
        "tournament",
        {"depth": 100, "mode": "tournament", "group_size": 50, "agreement": "final"},
    ),
    "iranker/tournament-g50-m2-final": (
        IRanker,
        "tournament",
        {"depth": 100, "mode": "tournament", "group_size": 50, "margin": 2, "agreement": "final"},
    ),
    "iranker/tournament-g25-all": (
        IRanker,
        "tournament",
        {"depth": 100, "mode": "tournament", "group_size": 25, "agreement": "all"},
    ),
    "dranker/full-list": (DRanker, "full-list", {"depth": 100}),
    "setwise/heapsort-c19-k10": (SetwiseRanker, "heapsort-c19-k10", {"depth": 100, "num_child": 19, "k": 10}),
    "listwise/sliding-w20-s10": (SlidingWindowRanker, "sliding-w20-s10", {"depth": 100}),
}


def run_variant(name: str, error_model: str, error_rate: float, seed: int, evalset) -> dict[str, Any]:
    cls, variant, options = VARIANTS[name]
    meter = Meter(SimulatedJudge(judge_labels(evalset), error_rate, seed, error_model=error_model))
    ranker = cls(engine=meter, max_query_tokens=100_000, **options)
    queries = evalset.queries
    rankings = ranker.rank_many([q.query for q in queries], [q.candidates for q in queries])
    run = {q.qid: [c.id for c in r.ranked] for q, r in zip(queries, rankings, strict=True)}
    ndcg = mean_metrics(score_run(evalset, run))["NDCG@10"]
    costs = [meter.per_query[query_key(q.query)] for q in queries]
    row: dict[str, Any] = {
        "strategy": name.split("/")[0],
        "variant": variant if name.split("/")[0] != "iranker" else name.split("/")[1],
        "error_model": error_model,
        "error_rate": error_rate,
        "seed": seed,
        "ndcg@10": round(ndcg, 4),
    }
    for key in ("calls", "rounds", "docs_in_prompts", "prompt_tokens", "completion_tokens"):
        row[key] = round(statistics.mean(c[key] for c in costs), 1)
    return row


def ideal_ndcg(evalset) -> float:
    run = {q.qid: [c.id for c in sorted(q.candidates, key=lambda c: -q.qrels.get(c.id, 0))] for q in evalset.queries}
    return mean_metrics(score_run(evalset, run))["NDCG@10"]


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean over seeds per (strategy, variant, error rate)."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[(row["strategy"], row["variant"], row["error_model"], row["error_rate"])].append(row)
    out = []
    for (strategy, variant, model, error), group in groups.items():
        mean = {k: round(statistics.mean(r[k] for r in group), 4) for k in group[0] if isinstance(group[0][k], float)}
        out.append(
            {
                "strategy": strategy,
                "variant": variant,
                "error_model": model,
                "error_rate": error,
                "seeds": len(group),
                **mean,
            }
        )
    return out


def table(summary: list[dict[str, Any]]) -> str:
    head = [
        "strategy",
        "variant",
        "error_model",
        "error_rate",
        "ndcg@10",
        "calls",
        "rounds",
        "docs_in_prompts",
        "prompt_tokens",
        "completion_tokens",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(row[h]) for h in head) + " |" for row in summary]
    return "\n".join(lines)


def plot(summary: list[dict[str, Any]], path: Path) -> None:
    """NDCG@10 against prompt tokens, one panel per error model (error 0 shown in each)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = sorted({r["error_model"] for r in summary if r["error_rate"] > 0}) or ["uniform"]
    fig, axes = plt.subplots(1, len(models), figsize=(7 * len(models), 5), sharey=True, squeeze=False)
    names = sorted({r["strategy"] + "/" + r["variant"] for r in summary})
    markers = dict(zip(names, itertools.cycle("osD^v<>ph*XPd8H"), strict=False))
    colors = {0.0: "tab:green", 0.1: "tab:orange", 0.2: "tab:red"}
    for ax, model in zip(axes[0], models, strict=True):
        for row in summary:
            if row["error_rate"] > 0 and row["error_model"] != model:
                continue
            name = row["strategy"] + "/" + row["variant"]
            ax.scatter(
                row["prompt_tokens"],
                row["ndcg@10"],
                marker=markers[name],
                color=colors.get(row["error_rate"], "k"),
                label=name if row["error_rate"] == 0.0 else None,
                s=50,
            )
        ax.set_xscale("log")
        ax.set_xlabel("prompt tokens per query (log)")
        ax.set_title(f"SIMULATED judge, {model} errors\n(green: error 0, orange: 0.1, red: 0.2)")
    axes[0][0].set_ylabel("NDCG@10 on DL19, top-10 of BM25 top-100 (mean over seeds)")
    fig.tight_layout()
    fig.legend(*axes[0][0].get_legend_handles_labels(), fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.savefig(path, dpi=120, bbox_inches="tight")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="write the rows as JSON here")
    parser.add_argument("--plot", type=Path, help="PNG path (default: --out with .png)")
    parser.add_argument("--error-rates", type=float, nargs="+", default=[0.0, 0.1, 0.2])
    parser.add_argument("--error-models", nargs="+", choices=ERROR_MODELS, default=list(ERROR_MODELS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--paper-seeds", type=int, default=1, help="seeds for iranker/paper (99 rounds per query)")
    parser.add_argument("--limit", type=int, help="only the first N queries")
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=list(VARIANTS))
    args = parser.parse_args(argv)

    evalset = load_dataset("dl19", limit=args.limit)
    jobs = [
        (v, m, e, s)
        for v in args.variants
        for m in args.error_models
        for e in args.error_rates
        for s in range(args.paper_seeds if v == "iranker/paper" else args.seeds)
        if e > 0 or (m, s) == (args.error_models[0], 0)  # error 0: one deterministic run
    ]
    rows = [run_variant(*job, evalset) for job in tqdm(jobs, desc="variants x error models x rates x seeds")]
    summary = summarise(rows)
    print(json.dumps(rows))
    print(f"\nideal NDCG@10 (reordering the top-100): {ideal_ndcg(evalset):.4f}  (SIMULATED judge)\n", file=sys.stderr)
    print(table(summary), file=sys.stderr)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=1))
        plot(summary, args.plot or args.out.with_suffix(".png"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
