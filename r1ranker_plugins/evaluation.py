"""Evaluate a ranker (or a reference order) on an EvalSet, resumably, and compare runs.

`evaluate` writes into one directory: `settings.json` (what made the run: strategy, model, every
option, the data's fingerprint), `run.trec` (appended query by query as rankings finish, so an
interrupted run resumes where it stopped, and only with the same settings), `sessions.json`
(engine cost of each session), `metrics.json` (per-query and mean metrics, cost, how the model's
steps were decided), `metrics.md` and `metrics.png`.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .datasets import EvalSet, rng_for
from .engines.base import answer_rates
from .ranker import Ranker
from .runs import RunWriter, data_digest, run_docids
from .types import ANSWER_KINDS, Ranking

COST_FIELDS = ("calls", "requests", "prompt_tokens", "completion_tokens", "forced_answers", "truncated", "seconds")
REFERENCES = ("none", "random")  # orders that need no model: the first stage, and a shuffle of its top


def _cost(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float]:
    return {name: after.get(name, 0) - before.get(name, 0) for name in COST_FIELDS}


def reference_ranking(candidates: list, strategy: str, depth: int | None, seed: int, qid: str) -> Ranking:
    """`none`: the first-stage order; `random`: its first `depth` in an order fixed by (seed, qid)."""
    head = len(candidates) if depth is None else min(depth, len(candidates))
    order = list(range(head))
    if strategy == "random":
        rng_for("shuffle", seed, qid).shuffle(order)
    return Ranking(candidates, order + list(range(head, len(candidates))))


def evaluate(
    evalset: EvalSet,
    out: str | Path,
    ranker: Ranker | None = None,
    *,
    info: dict[str, Any] | None = None,
    progress: bool = True,
    reference: tuple[str, int | None, int] = ("none", None, 0),
    overwrite: bool = False,
    wave_size: int | None = None,
    source: EvalSet | None = None,
) -> dict[str, Any]:
    """Rank every query not yet in `out/run.trec`, then score all; returns the metrics.json content.

    Without a `ranker`, `reference=(strategy, depth, seed)` orders the candidates: "none" keeps
    the first stage, "random" shuffles its top `depth`. `info` (sample, judge...) is recorded
    with the settings. A directory made with other settings is refused unless `overwrite`;
    `source` (the whole set `evalset` was drawn from) is the data the record fingerprints, so a
    larger sample or limit of the same set resumes the run.
    """
    from .metrics import mean_metrics, score_run  # ir_measures: the `eval` extra

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} is a file; give a directory for the run and its metrics")
    strategy = ranker.label if ranker is not None else reference[0]
    made_by = ranker.record() if ranker is not None else {"strategy": strategy, "depth": reference[1]}
    if strategy == "random":
        made_by["seed"] = reference[2]
    record = {
        "dataset": evalset.name,
        "data": {"queries": len((source or evalset).queries), "sha256": data_digest((source or evalset).queries)},
        **made_by,
        **(info or {}),
    }
    sessions_path = out / "sessions.json"
    expected = {q.qid: len(q.candidates) for q in evalset.queries}
    tag = f"r1ranker-{strategy}"
    run_path, record_path = out / "run.trec", out / "settings.json"
    flags = {"tag": tag, "record_path": record_path, "overwrite": overwrite, "flag": "--out"}
    with RunWriter(run_path, record, expected, **flags) as writer:
        if overwrite:
            sessions_path.unlink(missing_ok=True)
        todo = [q for q in evalset.queries if q.qid not in writer.done and q.candidates]
        sessions = json.loads(sessions_path.read_text(encoding="utf-8")) if sessions_path.is_file() else []
        session: dict[str, Any] = {
            "queries": 0,
            "engine": dict.fromkeys(COST_FIELDS, 0),
            "answers": dict.fromkeys(ANSWER_KINDS, 0),
        }
        sessions.append(session)
        before = ranker.engine.stats() if ranker is not None else {}
        start = time.perf_counter()

        def write(i: int, ranking: Ranking) -> None:
            writer.write(todo[i].qid, ranking)
            session["queries"] += 1
            for kind, count in ranking.answers.items():
                session["answers"][kind] += count
            session["engine"] = _cost(before, ranker.engine.stats()) if ranker is not None else session["engine"]
            session["engine"]["seconds"] = time.perf_counter() - start
            sessions_path.write_text(json.dumps(sessions, indent=1), encoding="utf-8")

        if ranker is None:
            for i, query in enumerate(todo):
                write(i, reference_ranking(query.candidates, strategy, *reference[1:], query.qid))
        else:
            queries, lists = [q.query for q in todo], [q.candidates for q in todo]
            ranker.rank_many(queries, lists, progress=progress, on_result=write, wave_size=wave_size)
    per_query = score_run(evalset, run_docids(run_path))
    engine = {name: sum(s["engine"][name] for s in sessions) for name in COST_FIELDS}
    answers = {kind: sum(s.get("answers", {}).get(kind, 0) for s in sessions) for kind in ANSWER_KINDS}
    report = {
        **record,
        "task": evalset.task,
        "queries": len(per_query),
        "protocol": evalset.options,
        "primary": evalset.options.get("primary", "NDCG@10"),
        "mean": mean_metrics(per_query),
        "engine": engine,
        "engine_per_query": {name: value / max(len(per_query), 1) for name, value in engine.items()},
        "answers": answer_rates(answers),
        "sessions": len(sessions),
        "per_query": per_query,
    }
    out.mkdir(parents=True, exist_ok=True)
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
    depth = report.get("options", {}).get("depth", report.get("depth"))
    if depth:
        parts.append(f"depth {depth}")
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
    reports = []
    for directory in map(Path, dirs):
        if not (directory / "metrics.json").is_file():
            print(f"warning: skipping {directory}: not a directory written by r1ranker eval", file=sys.stderr)
            continue
        reports.append(json.loads((directory / "metrics.json").read_text(encoding="utf-8")))
    if not reports:
        raise ValueError("no eval run directories among the paths given")
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
