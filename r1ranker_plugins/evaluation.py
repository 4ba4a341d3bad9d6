"""Evaluate a ranker (or the first-stage order) on an EvalSet, resumably, and compare runs.

`evaluate` writes into one directory: `run.trec` (appended query by query as rankings finish,
so an interrupted run resumes where it stopped), `sessions.json` (engine cost of each session),
`metrics.json` (per-query and mean metrics, engine stats), `metrics.md` and `metrics.png`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .datasets import DATASETS, EvalSet, load_dataset, rng_for
from .engines.base import answer_rates
from .ranker import Ranker
from .runs import resume_run, trec_lines
from .types import ANSWER_KINDS, Ranking

COST_FIELDS = ("calls", "requests", "prompt_tokens", "completion_tokens", "forced_answers", "truncated", "seconds")


def read_run_ids(path: Path) -> dict[str, list[str]]:
    """A TREC run as qid -> docids in rank order (our runs are written rank by rank)."""
    run: dict[str, list[str]] = defaultdict(list)
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            fields = line.split()
            if len(fields) == 6:
                run[fields[0]].append(fields[2])
    return dict(run)


def _cost(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float]:
    return {name: after.get(name, 0) - before.get(name, 0) for name in COST_FIELDS}


def shuffled(candidates: list, depth: int | None, seed: int, qid: str) -> Ranking:
    """A reference ranking: the first `depth` candidates in a random order fixed by (seed, qid)."""
    head = len(candidates) if depth is None else min(depth, len(candidates))
    order = list(range(head))
    rng_for("shuffle", seed, qid).shuffle(order)
    return Ranking(candidates, order + list(range(head, len(candidates))))


def evaluate(
    evalset: EvalSet,
    out: str | Path,
    ranker: Ranker | None = None,
    *,
    info: dict[str, Any] | None = None,
    progress: bool = True,
    shuffle: tuple[int | None, int] | None = None,
) -> dict[str, Any]:
    """Rank every query not yet in `out/run.trec`, then score all.

    Without a `ranker` the first-stage order is kept, or with `shuffle=(depth, seed)` the first
    `depth` candidates are shuffled (a random reference). Returns the metrics.json content;
    `info` (model, judge, depth...) is recorded as given.
    """
    from .metrics import mean_metrics, score_run  # ir_measures: the `eval` extra

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    run_path, sessions_path = out / "run.trec", out / "sessions.json"
    strategy = ranker.label if ranker is not None else "random" if shuffle else "none"
    done = resume_run(run_path, {q.qid: len(q.candidates) for q in evalset.queries})
    todo = [q for q in evalset.queries if q.qid not in done and q.candidates]
    sessions = json.loads(sessions_path.read_text(encoding="utf-8")) if sessions_path.is_file() else []
    session: dict[str, Any] = {
        "queries": 0,
        "engine": dict.fromkeys(COST_FIELDS, 0),
        "answers": dict.fromkeys(ANSWER_KINDS, 0),
    }
    sessions.append(session)
    before = ranker.engine.stats() if ranker is not None else {}
    start = time.perf_counter()
    with open(run_path, "a", encoding="utf-8") as handle:

        def write(i: int, ranking: Ranking) -> None:
            handle.write("\n".join(trec_lines(todo[i].qid, ranking, f"r1ranker-{strategy}")) + "\n")
            handle.flush()
            session["queries"] += 1
            for kind, count in ranking.answers.items():
                session["answers"][kind] += count
            session["engine"] = _cost(before, ranker.engine.stats()) if ranker is not None else session["engine"]
            session["engine"]["seconds"] = time.perf_counter() - start
            sessions_path.write_text(json.dumps(sessions, indent=1), encoding="utf-8")

        if ranker is None:
            for i, query in enumerate(todo):
                order = list(range(len(query.candidates)))
                write(
                    i, shuffled(query.candidates, *shuffle, query.qid) if shuffle else Ranking(query.candidates, order)
                )
        else:
            ranker.rank_many([q.query for q in todo], [q.candidates for q in todo], progress=progress, on_result=write)
    sessions_path.write_text(json.dumps(sessions, indent=1), encoding="utf-8")
    per_query = score_run(evalset, read_run_ids(run_path))
    engine = {name: sum(s["engine"][name] for s in sessions) for name in COST_FIELDS}
    answers = {kind: sum(s.get("answers", {}).get(kind, 0) for s in sessions) for kind in ANSWER_KINDS}
    report = {
        "dataset": evalset.name,
        "task": evalset.task,
        "strategy": strategy,
        **(info or {}),
        "queries": len(per_query),
        "options": evalset.options,
        "primary": evalset.options.get("primary", "NDCG@10"),
        "mean": mean_metrics(per_query),
        "engine": engine,
        "engine_per_query": {name: value / max(len(per_query), 1) for name, value in engine.items()},
        "answers": answer_rates(answers),
        "sessions": len(sessions),
        "per_query": per_query,
    }
    (out / "metrics.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    (out / "metrics.md").write_text(metrics_markdown(report), encoding="utf-8")
    plot_metrics(report, out / "metrics.png")
    return report


def run_label(report: dict[str, Any]) -> str:
    """A short name for a run: dataset, strategy and what judged it."""
    parts = [report["dataset"], "random shuffle" if report["strategy"] == "random" else report["strategy"]]
    if report.get("judge"):
        parts.append(f"SIMULATED judge, error {report['judge']['error_rate']}")
    elif report.get("model"):
        parts.append(str(report["model"]))
    if report.get("depth"):
        parts.append(f"depth {report['depth']}")
    return " · ".join(parts)


def metrics_markdown(report: dict[str, Any]) -> str:
    """One run as markdown: what ran, mean metrics, engine cost."""
    lines = [f"# {run_label(report)}", "", f"{report['queries']} queries.", ""]
    if report.get("judge"):
        lines += ["**Simulated judge**: answers come from the relevance labels, not from a model.", ""]
    lines += ["| metric | mean |", "|---|---|"]
    lines += [f"| {name} | {value:.4f} |" for name, value in report["mean"].items()]
    if report.get("answers", {}).get("steps"):
        answers = report["answers"]
        lines += [
            "",
            f"{answers['steps']:.0f} model steps: {answers['own_rate']:.1%} decided by the model's own answer, "
            f"{answers['forced_rate']:.1%} by a forced answer, {answers['fallback_rate']:.1%} fell back.",
        ]
    lines += ["", "| engine | total | per query |", "|---|---|---|"]
    lines += [
        f"| {name} | {value:.1f} | {report['engine_per_query'][name]:.1f} |" for name, value in report["engine"].items()
    ]
    return "\n".join(lines) + "\n"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_metrics(report: dict[str, Any], path: Path) -> None:
    """Bars of the mean metrics (MRR×100 scaled to [0, 1] so all bars share an axis)."""
    plt = _pyplot()
    names = list(report["mean"])
    values = [report["mean"][n] / 100 if n == "MRRx100" else report["mean"][n] for n in names]
    labels = ["MRR" if n == "MRRx100" else n for n in names]
    figure, axes = plt.subplots(figsize=(max(4, len(names) * 0.9), 3.2))
    bars = axes.bar(labels, values, color="#4c72b0")
    axes.bar_label(bars, fmt="%.3f", fontsize=7)
    axes.set_ylim(0, 1.05)
    axes.set_title(run_label(report), fontsize=9)
    axes.tick_params(axis="x", labelsize=8, rotation=30)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def compare(dirs: Sequence[str | Path], out: str | Path) -> str:
    """A markdown table of several runs (written to `out`.md) and a quality-vs-cost scatter (`out`.png).

    Cost = prompt + completion tokens per query. Returns the table.
    """
    reports = [json.loads((Path(d) / "metrics.json").read_text(encoding="utf-8")) for d in dirs]
    names: list[str] = []
    for report in reports:
        names += [name for name in report["mean"] if name not in names]
    header = [
        "run", "queries", *names, "own answers", "forced", "fallback",
        "calls/q", "prompt tokens/q", "completion tokens/q", "s/q",
    ]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for report in reports:
        cost = report["engine_per_query"]
        answers = report.get("answers") or {}
        rates = [f"{answers[f'{kind}_rate']:.0%}" if answers.get("steps") else "–" for kind in ANSWER_KINDS]
        cells = [
            run_label(report),
            str(report["queries"]),
            *(f"{report['mean'][n]:.4f}" if n in report["mean"] else "" for n in names),
            *rates,
            f"{cost['calls']:.1f}",
            f"{cost['prompt_tokens']:.0f}",
            f"{cost['completion_tokens']:.0f}",
            f"{cost['seconds']:.2f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    table = "\n".join(lines) + "\n"
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(table, encoding="utf-8")
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(7, 4 + 0.2 * len(reports)))
    for marker, report in zip("osD^vP*Xh<>p" * len(reports), reports, strict=False):
        cost = report["engine_per_query"]
        x, y = cost["prompt_tokens"] + cost["completion_tokens"], report["mean"][report["primary"]]
        axes.scatter([x], [y], marker=marker, label=run_label(report))
    axes.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.18))
    axes.set_xlabel("tokens per query (prompt + completion)")
    axes.set_ylabel(" / ".join(sorted({r["primary"] for r in reports})))
    axes.set_title("quality vs cost", fontsize=9)
    figure.tight_layout()
    figure.savefig(out.with_suffix(".png"), dpi=120)
    plt.close(figure)
    return table


# -- command line --------------------------------------------------------------------------------


def judge_labels(evalset: EvalSet) -> dict[str, dict[str, int]]:
    """The set's qrels keyed by query text, for `SimulatedJudge`.

    Queries sharing a text (e.g. Passage-n instances of one DL19 query) merge their labels; two
    different grades for one candidate of one text are an error.
    """
    from .simulated import query_key

    labels: dict[str, dict[str, int]] = defaultdict(dict)
    for query in evalset.queries:
        merged = labels[query_key(query.query)]
        for docid, grade in query.qrels.items():
            if merged.setdefault(docid, grade) != grade:
                raise ValueError(f"{evalset.name}: query {query.qid} grades {docid!r} unlike a same-text query")
    return dict(labels)


def build_ranker(args: argparse.Namespace, evalset: EvalSet) -> Ranker | None:
    """The ranker `r1ranker eval` asked for, on a model or on the simulated judge."""
    from . import STRATEGIES

    if args.strategy in ("none", "random"):
        return None
    options: dict[str, Any] = {
        "task": evalset.task,
        "depth": args.depth,
        "max_new_tokens": args.max_new_tokens,
        "batch_size": args.batch_size,
    }
    if args.strategy != "setwise":
        options |= {k: evalset.options[k] for k in ("scenario", "item_type", "system_verb") if k in evalset.options}
    if args.judge == "simulated":
        from .simulated import SimulatedJudge

        engine = SimulatedJudge(
            judge_labels(evalset), args.error_rate, args.seed, tokenizer=args.model, error_model=args.error_model
        )
        # The judge reads labels, not text: an untruncated query always finds its labels.
        return STRATEGIES[args.strategy](engine=engine, max_query_tokens=args.max_query_tokens or 100_000, **options)
    if not args.model:
        raise ValueError(f"--strategy {args.strategy} needs --model (or --judge simulated)")
    if args.max_query_tokens:
        options["max_query_tokens"] = args.max_query_tokens
    return STRATEGIES[args.strategy](args.model, args.backend, **options)


def cmd_eval(args: argparse.Namespace) -> int:
    if not args.dataset or not args.out:
        raise ValueError("r1ranker eval needs --dataset and --out")
    evalset = load_dataset(
        args.dataset, data=args.data, seed=args.data_seed, split=args.split, limit=args.limit, sample=args.sample
    )
    ranker = build_ranker(args, evalset)
    info: dict[str, Any] = {
        "depth": args.depth,
        "split": args.split,
        "data_seed": args.data_seed,
        "sample": args.sample,
    }
    if ranker is not None:
        info |= {"model": args.model, "backend": ranker.engine.backend, "max_new_tokens": args.max_new_tokens}
    if args.judge:
        info["judge"] = {
            "kind": args.judge,
            "error_rate": args.error_rate,
            "error_model": args.error_model,
            "seed": args.seed,
            "simulated": True,
        }
    shuffle = (args.depth, args.seed) if args.strategy == "random" else None
    report = evaluate(evalset, args.out, ranker, info=info, shuffle=shuffle)
    summary = {name: round(value, 4) for name, value in report["mean"].items()}
    print(json.dumps({"dataset": args.dataset, "strategy": args.strategy, "queries": report["queries"], **summary}))
    print(f"wrote {args.out}/run.trec, metrics.json, metrics.md, metrics.png", file=sys.stderr)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    print(compare(args.dirs, args.compare_out), end="")
    return 0


def add_eval_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register `r1ranker eval ...` and `r1ranker eval compare DIR... --out FILE`."""
    from .engines import BACKENDS

    parser = subparsers.add_parser("eval", help="evaluate a ranking strategy on a named data set")
    parser.add_argument("--dataset", choices=DATASETS)
    parser.add_argument(
        "--strategy",
        default="none",
        choices=["none", "random", "iranker", "dranker", "setwise"],
        help="ranker to evaluate; none keeps the first-stage order, random shuffles its top --depth (--seed)",
    )
    parser.add_argument("--model", help="hub id or local path (with --judge simulated: its tokenizer counts tokens)")
    parser.add_argument("--backend", default="transformers", choices=sorted(BACKENDS))
    parser.add_argument("--depth", type=int, help="rerank only the first N candidates")
    parser.add_argument("--limit", type=int, help="only the first Q queries")
    parser.add_argument("--sample", type=int, help="a fixed random sample of Q queries (drawn with --data-seed)")
    parser.add_argument("--max-new-tokens", type=int, default=1024)
    parser.add_argument("--max-query-tokens", type=int, help="truncate queries (ranker default 128)")
    parser.add_argument("--batch-size", type=int, default=1024, help="requests per engine call")
    parser.add_argument("--out", help="output directory (resumes the run already in it)")
    parser.add_argument("--data", help="shared data root (default $R1RANKER_DATA or ../shared/data)")
    parser.add_argument("--split", default="test", choices=["test", "train", "all"])
    parser.add_argument("--data-seed", type=int, default=0, help="seed of the built task sets (negatives, shuffles)")
    parser.add_argument("--judge", choices=["simulated"], help="SIMULATED judge answering from the labels")
    parser.add_argument("--error-rate", type=float, default=0.0, help="simulated judge: probability of a wrong answer")
    parser.add_argument("--seed", type=int, default=0, help="simulated judge: seed of its errors")
    parser.add_argument(
        "--error-model",
        choices=["uniform", "local"],
        default="uniform",
        help="simulated judge: a wrong answer is a random candidate (uniform) or a neighbour (local)",
    )
    parser.set_defaults(func=cmd_eval)
    commands = parser.add_subparsers(dest="eval_command")
    table = commands.add_parser("compare", help="table and quality-vs-cost plot across eval directories")
    table.add_argument("dirs", nargs="+", help="directories written by r1ranker eval")
    table.add_argument("--out", dest="compare_out", required=True, help="FILE: writes FILE.md and FILE.png")
    table.set_defaults(func=cmd_compare)
