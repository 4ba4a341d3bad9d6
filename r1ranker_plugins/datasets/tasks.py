"""The IRanker paper's task kinds built from public sources: Rec-Movie, Rec-Game, Router-*, Passage-n.

Each query has one relevant candidate (`EvalQuery.target`) among shuffled negatives, scored by
the paper's protocol. Builders are pure functions of the source files and a seed.
"""

from __future__ import annotations

import csv
import json
import random
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..types import Candidate
from .types import EvalQuery, EvalSet, keep_split, rng_for

SCENARIO_WEIGHTS = {"performance": (1.0, 0.0), "balance": (0.5, 0.5), "cost": (0.2, 0.8)}
RETRIEVALS = ("random", "bm25", "sasrec", "pop")
KS = {"passage": (3, 5, 10), "recommendation": (5, 10, 20), "routing": (5, 10)}


def _tsv(path: Path) -> Iterable[list[str]]:
    """Rows of a RecBole atomic file (tab-separated, typed header skipped)."""
    with open(path, encoding="utf-8") as lines:
        next(lines)
        for line in lines:
            if line.strip():
                yield line.rstrip("\n").split("\t")


def single_relevant(
    name: str, task: str, queries: list[EvalQuery], task_name: str, limit_ks: Sequence[int], **options: Any
) -> EvalSet:
    return EvalSet(
        name,
        task,
        queries,
        {"protocol": "single", "ks": tuple(limit_ks), "primary": "MRRx100", "task_name": task_name, **options},
    )


def _draw_distinct(
    rng: random.Random, pool: Sequence[str], k: int, titles: Mapping[str, str], taken: set[str]
) -> list[str]:
    """`k` items from `pool` in random order whose titles are new: every candidate has a unique name."""
    out = []
    for item in rng.sample(list(pool), len(pool)):
        if titles[item] not in taken:
            taken.add(titles[item])
            out.append(item)
            if len(out) == k:
                return out
    raise ValueError(f"only {len(out)} distinct titles available, {k} needed")


def _rec_query(qid: str, history: list[str], target: str, negatives: list[str], titles, rng) -> EvalQuery:
    items = [target, *negatives]
    rng.shuffle(items)
    return EvalQuery(
        qid, [titles[i] for i in history], [Candidate(i, titles[i]) for i in items], {target: 1}, target=target
    )


def build_rec_movie(
    directory: str | Path, *, seed: int = 0, split: str = "test", history: int = 20, n: int = 20
) -> EvalSet:
    """Rec-Movie from MovieLens-100K: first `history` ratings in time order, the next is the target.

    Negatives are `n - 1` random movies the user never rated, with titles distinct from each
    other and from the target (ml-100k has a few duplicate titles); candidates are shuffled.
    """
    directory = Path(directory)
    titles = {row[0]: f"{row[1]} ({row[2]})" if row[2] else row[1] for row in _tsv(directory / "ml-100k.item")}
    events: dict[str, list[tuple[float, int, str]]] = defaultdict(list)
    for position, row in enumerate(_tsv(directory / "ml-100k.inter")):
        events[row[0]].append((float(row[3]), position, row[1]))
    catalogue = sorted(titles, key=int)
    queries = []
    for user in sorted(events, key=int):
        qid = f"user-{user}"
        timeline = [item for *_, item in sorted(events[user])]
        if len(timeline) <= history or not keep_split(qid, split):
            continue
        target, rated = timeline[history], set(timeline)
        rng = rng_for("rec-movie", seed, user)
        unseen = [item for item in catalogue if item not in rated]
        negatives = _draw_distinct(rng, unseen, n - 1, titles, {titles[target]})
        queries.append(_rec_query(qid, timeline[:history], target, negatives, titles, rng))
    return single_relevant(
        "rec-movie",
        "recommendation",
        queries,
        "Rec-Movie",
        KS["recommendation"],
        item_type="movie",
        system_verb="think",
    )


def build_rec_game(
    directory: str | Path,
    *,
    seed: int = 0,
    split: str = "test",
    retrieval: str = "random",
    history: int = 20,
    n: int = 20,
) -> EvalSet:
    """Rec-Game from LLMRank's Games-6k: the last `history` purchases, the held-out target, and the
    first `n - 1` distinct-title candidates of one retrieval method (random | bm25 | sasrec | pop),
    shuffled with the target."""
    if retrieval not in RETRIEVALS:
        raise ValueError(f"unknown retrieval {retrieval!r}; expected one of {RETRIEVALS}")
    directory = Path(directory)
    titles = {row[0]: row[1] for row in _tsv(directory / "Games-6k.item")}
    users = {row[0]: (row[1].split(), row[2]) for row in _tsv(directory / "Games-6k.test.inter")}
    queries = []
    with open(directory / f"Games-6k.{retrieval}", encoding="utf-8") as lines:
        for line in lines:
            user, retrieved = line.rstrip("\n").split("\t")
            qid = f"user-{user}"
            if not keep_split(qid, split):
                continue
            past, target = users[user]
            rng = rng_for("rec-game", seed, retrieval, user)
            taken, negatives = {titles[target]}, []
            for item in retrieved.split():
                if len(negatives) < n - 1 and titles[item] not in taken:
                    taken.add(titles[item])
                    negatives.append(item)
            queries.append(_rec_query(qid, past[-history:], target, negatives, titles, rng))
    return single_relevant(
        "rec-game",
        "recommendation",
        queries,
        "Rec-Game",
        KS["recommendation"],
        item_type="item",
        system_verb="think",
        retrieval=retrieval,
    )


# -- routing -----------------------------------------------------------------------------------


def route_utilities(qualities: Sequence[float], costs: Sequence[float], scenario: str) -> list[float]:
    """`w_q * quality - w_c * cost` with costs min-max normalised over the candidate LLMs (0 = cheapest)."""
    w_quality, w_cost = SCENARIO_WEIGHTS[scenario]
    low, high = min(costs), max(costs)
    span = high - low or 1.0
    return [round(w_quality * q - w_cost * (c - low) / span, 12) for q, c in zip(qualities, costs, strict=True)]


def _route_query(
    qid: str,
    question: str,
    names: Sequence[str],
    qualities: Sequence[float],
    costs: Sequence[float],
    descriptions: Mapping[str, str],
    scenario: str,
    seed: int,
) -> EvalQuery:
    """Target = highest utility, ties to the first LLM in the fixed `names` order; candidates shuffled."""
    utilities = route_utilities(qualities, costs, scenario)
    target = names[utilities.index(max(utilities))]
    candidates = [
        Candidate(name, name, {"description": descriptions[name], "quality": q, "cost": c, "utility": u})
        for name, q, c, u in zip(names, qualities, costs, utilities, strict=True)
    ]
    rng_for("route", seed, scenario, qid).shuffle(candidates)
    return EvalQuery(qid, question, candidates, {target: 1}, target=target)


def build_router(directory: str | Path, *, scenario: str, seed: int = 0, split: str = "test") -> EvalSet:
    """Router-Performance/Balance/Cost from LLMRouter (9 LLMs, quality per query, list prices).

    The split is LLMRouter's own (test.json / train.json). Queries where every LLM has the same
    quality are dropped (133 of the 500 test queries): they say nothing about routing beyond the
    price list. Candidates keep `quality`, `cost` and the graded `utility` in their metadata; the
    qrels hold the single target, as in the paper's protocol.
    """
    if scenario not in SCENARIO_WEIGHTS:
        raise ValueError(f"unknown scenario {scenario!r}; expected one of {tuple(SCENARIO_WEIGHTS)}")
    directory = Path(directory)
    llms = json.loads((directory / "default_llm.json").read_text(encoding="utf-8"))
    files = {"test": ["test"], "train": ["train"], "all": ["train", "test"]}
    if split not in files:
        raise ValueError(f"unknown split {split!r}; expected train, test or all")
    queries = []
    for part in files[split]:
        records = json.loads((directory / f"{part}.json").read_text(encoding="utf-8"))
        for number, record in enumerate(records):
            names = [name for name in llms if name in record["scores"]]  # fixed order: default_llm.json
            qualities = [float(record["scores"][name]) for name in names]
            if len(set(qualities)) == 1:
                continue
            costs = [(llms[name]["input_price"] + llms[name]["output_price"]) / 2 for name in names]
            descriptions = {name: llms[name]["feature"] for name in names}
            queries.append(
                _route_query(
                    f"{part}-{number}", record["question"], names, qualities, costs, descriptions, scenario, seed
                )
            )
    return single_relevant(
        f"router-{scenario}",
        "routing",
        queries,
        f"Router-{scenario.capitalize()}",
        KS["routing"],
        scenario=scenario,
        system_verb="think",
    )


def build_router_bench(
    directory: str | Path, *, scenario: str = "balance", seed: int = 0, split: str = "test"
) -> EvalSet:
    """Router-Bench from RouterBench zero-shot rows (ARC, MBPP, Winogrande; 11 LLMs).

    Quality = correctness (0/1), cost = the row's `|total_cost`, min-max normalised within the row.
    The default "balance" scenario targets the cheapest correct LLM (mostly RouterBench's own
    oracle); "performance" would pick the first correct LLM in a fixed order. Rows with an empty
    correctness or cost cell, or where all LLMs are equally correct, are dropped. Descriptions
    state each LLM's mean cost per query over all rows (price information only, no labels).
    """
    rows: list[dict[str, str]] = []
    for path in sorted(Path(directory).glob("*.csv")):
        with open(path, encoding="utf-8", newline="") as handle:
            rows += list(csv.DictReader(handle))
    names = [column[: -len("|total_cost")] for column in rows[0] if column.endswith("|total_cost")]
    names = [column for column in rows[0] if column in names]  # the correctness columns' order
    complete = [r for r in rows if all(r[name] and r[f"{name}|total_cost"] for name in names)]
    mean_cost = {name: sum(float(r[f"{name}|total_cost"]) for r in complete) / len(complete) for name in names}
    descriptions = {name: f"{name}, mean cost ${mean_cost[name]:.6f} per query" for name in names}
    queries = []
    for row in complete:
        qualities = [float(row[name]) for name in names]
        if len(set(qualities)) == 1 or not keep_split(row["sample_id"], split):
            continue
        costs = [float(row[f"{name}|total_cost"]) for name in names]
        queries.append(
            _route_query(row["sample_id"], row["prompt"], names, qualities, costs, descriptions, scenario, seed)
        )
    return single_relevant(
        "router-bench", "routing", queries, "Router-Bench", KS["routing"], scenario=scenario, system_verb="think"
    )


# -- Passage-n ---------------------------------------------------------------------------------


def build_passage_n(
    n: int,
    source: EvalSet,
    *,
    texts: Mapping[str, str] | None = None,
    seed: int = 0,
    split: str = "test",
    per_query: int = 5,
) -> EvalSet:
    """Passage-n: `n` candidates with exactly one relevant (grade >= the source's `rel`), shuffled.

    Up to `per_query` instances per source query, each with a different relevant passage and
    `n - 1` negatives drawn from the first-stage candidates below `rel` (unjudged count as 0).
    Relevant passages come from the first stage, or from `texts` (a corpus) when given.
    """
    rel = source.options["rel"]
    queries = []
    for query in source.queries:
        if not keep_split(query.qid, split):
            continue
        pool = {d: Candidate(d, texts[d]) for d, g in query.qrels.items() if g >= rel and texts and d in texts}
        pool |= {c.id: c for c in query.candidates if query.qrels.get(c.id, 0) >= rel}
        negatives = [c for c in query.candidates if query.qrels.get(c.id, 0) < rel]
        if len(negatives) < n - 1:
            continue
        rng = rng_for("passage", n, source.name, seed, query.qid)
        for number, relevant in enumerate(rng.sample(sorted(pool), min(per_query, len(pool)))):
            items = [pool[relevant], *rng.sample(negatives, n - 1)]
            rng.shuffle(items)
            grades = {c.id: query.qrels.get(c.id, 0) for c in items}
            queries.append(EvalQuery(f"{query.qid}-{number}", query.query, items, grades, target=relevant))
    return single_relevant(f"passage-{n}", "passage", queries, f"Passage-{n}", KS["passage"], source=source.name)
