"""Ranking-bench rows (`problem, gt, candidates, task_name`): written from any single-relevant set for
training, and read back (from the Hub's `ulab-ai/Ranking-bench` or local JSON/parquet files) through
`datasets.load_dataset`.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..prompts import (
    DRANKER_ITEM,
    DRANKER_MOVIE,
    DRANKER_PASSAGE,
    DRANKER_ROUTING,
    IRANKER_ITEM,
    IRANKER_MOVIE,
    IRANKER_PASSAGE,
    IRANKER_ROUTING,
    ROUTING_ELIMINATE,
    ROUTING_RANK,
    answer_labels,
    r1_problem,
)
from ..types import Candidate
from .tasks import KS, single_relevant
from .types import EvalQuery, EvalSet, rng_for

RANKING_BENCH = "ulab-ai/Ranking-bench"


def _row(evalset: EvalSet, kind: str, query: EvalQuery, items: Sequence[Candidate]) -> dict[str, Any]:
    problem = r1_problem(
        kind,
        evalset.task,
        query.query,
        items,
        scenario=evalset.options.get("scenario", "performance"),
        item_type=evalset.options.get("item_type", "movie"),
    )
    labels = answer_labels(evalset.task, [c.text for c in items])
    gt = labels[[c.id for c in items].index(query.target)]
    row = {"problem": problem, "gt": gt, "candidates": labels, "task_name": evalset.options["task_name"]}
    return row | {"qid": query.qid}  # ours, beside Ranking-bench's four columns: which query a row came from


def ranking_bench_rows(evalset: EvalSet, config: str = "direct", *, seed: int = 0) -> list[dict[str, Any]]:
    """Ranking-bench rows (`problem, gt, candidates, task_name`) for training.

    "direct": one DRanker problem per query over all its candidates. "iterative": IRanker cases,
    pools of the relevant item plus k random negatives for k = 1..n-1, relevant at a random
    position. `candidates` are the answer labels (what the model may name) and `gt` is the
    relevant one's label; `problem` is `prompts.r1_problem`'s exact text.
    """
    if config not in ("direct", "iterative"):
        raise ValueError(f"unknown config {config!r}; expected direct or iterative")
    if evalset.options.get("protocol") != "single":
        raise ValueError(f"{evalset.name} has no single relevant item per query; Ranking-bench rows need one")
    rows = []
    for query in evalset.queries:
        if config == "direct":
            rows.append(_row(evalset, "dranker", query, query.candidates))
            continue
        rng = rng_for("ranking-bench", seed, evalset.name, query.qid)
        relevant = next(c for c in query.candidates if c.id == query.target)
        negatives = [c for c in query.candidates if c.id != query.target]
        for k in range(1, len(query.candidates)):
            pool = rng.sample(negatives, k)
            pool.insert(rng.randrange(k + 1), relevant)
            rows.append(_row(evalset, "iranker", query, pool))
    return rows


def _pattern(template: str) -> re.Pattern[str]:
    """A template's inverse: every `{field}` becomes a named group."""
    return re.compile(re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>.*?)", re.escape(template)), re.DOTALL)


_PROBLEMS = [
    ("passage", "movie", _pattern(IRANKER_PASSAGE)),
    ("passage", "movie", _pattern(DRANKER_PASSAGE)),
    ("recommendation", "movie", _pattern(IRANKER_MOVIE)),
    ("recommendation", "movie", _pattern(DRANKER_MOVIE)),
    ("recommendation", "item", _pattern(IRANKER_ITEM)),
    ("recommendation", "item", _pattern(DRANKER_ITEM)),
    ("routing", "movie", _pattern(IRANKER_ROUTING)),
    ("routing", "movie", _pattern(DRANKER_ROUTING)),
]
_INSTRUCTIONS = {text: scenario for table in (ROUTING_ELIMINATE, ROUTING_RANK) for scenario, text in table.items()}
_PASSAGE_LINE = re.compile(r"(?:^|\n)passage (\d+): ")
_HISTORY_ITEM = re.compile(r"^\d+\. ")


def parse_problem(problem: str) -> dict[str, Any]:
    """Recover task, query and candidates from an R1-Ranker problem text (inverse of `r1_problem`)."""
    problem = problem.strip()
    for task, item_type, pattern in _PROBLEMS:
        found = pattern.fullmatch(problem)
        if found is None:
            continue
        fields = found.groupdict()
        if task == "passage":
            parts = _PASSAGE_LINE.split(fields["passages"])
            numbers, texts = parts[1::2], parts[2::2]
            if numbers != [str(i) for i in range(len(numbers))]:
                continue
            return {"task": task, "query": fields["query"], "texts": texts, "descriptions": [""] * len(texts)}
        texts = list(ast.literal_eval(fields["candidates"]))
        if task == "recommendation":
            history = [_HISTORY_ITEM.sub("", item, count=1) for item in ast.literal_eval(fields["history"])]
            return {"task": task, "query": history, "texts": texts, "item_type": item_type}
        lines = fields["descriptions"].split("\n")
        descriptions = [next((ln[len(f"# {t}: ") :] for ln in lines if ln.startswith(f"# {t}: ")), "") for t in texts]
        return {
            "task": task,
            "query": fields["query"],
            "texts": texts,
            "descriptions": descriptions,
            "scenario": _INSTRUCTIONS.get(fields["instruction"], "performance"),
        }
    raise ValueError(f"not an R1-Ranker problem text: {problem[:80]!r}...")


def rows_to_evalsets(rows: Iterable[Mapping[str, Any]]) -> dict[str, EvalSet]:
    """Ranking-bench rows → one EvalSet per `task_name`; candidate ids are prompt positions."""
    grouped: dict[str, list[EvalQuery]] = defaultdict(list)
    settings: dict[str, dict[str, Any]] = {}
    for number, row in enumerate(rows):
        parsed = parse_problem(row["problem"])
        labels = answer_labels(parsed["task"], parsed["texts"])
        gt = str(row["gt"]).strip()
        if gt in labels:
            position = labels.index(gt)
        elif gt in parsed["texts"]:
            position = parsed["texts"].index(gt)
        else:
            raise ValueError(f"row {number}: gt {gt[:60]!r} is not one of its candidates")
        candidates = [
            Candidate(str(i), text, {"description": parsed.get("descriptions", [""] * len(labels))[i]})
            for i, text in enumerate(parsed["texts"])
        ]
        name = str(row["task_name"])
        target = str(position)
        grouped[name].append(EvalQuery(f"{name}-{number}", parsed["query"], candidates, {target: 1}, target))
        settings[name] = {key: parsed[key] for key in ("task", "scenario", "item_type") if key in parsed}
    return {
        name: single_relevant(
            name.lower(),
            settings[name]["task"],
            queries,
            name,
            KS[settings[name]["task"]],
            **{k: v for k, v in settings[name].items() if k != "task"},
        )
        for name, queries in grouped.items()
    }


def load_ranking_bench(
    config: str = "direct", *, split: str = "test", data_files: str | Path | Sequence | Mapping | None = None
) -> dict[str, EvalSet]:
    """Ranking-bench from the Hub (`ulab-ai/Ranking-bench`), or from local JSON/parquet `data_files`.

    Both go through `datasets.load_dataset`, then `rows_to_evalsets`.
    """
    import datasets

    if data_files is None:
        rows = datasets.load_dataset(RANKING_BENCH, config, split=split)
    else:
        files = data_files if isinstance(data_files, Mapping) else {split: data_files}
        paths = [files[split]] if isinstance(files[split], str | Path) else list(files[split])
        builder = "parquet" if all(str(p).endswith(".parquet") for p in paths) else "json"
        rows = datasets.load_dataset(builder, data_files={split: [str(p) for p in paths]}, split=split)
    return rows_to_evalsets(rows)
