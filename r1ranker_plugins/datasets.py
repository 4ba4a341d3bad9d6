"""Evaluation sets in one shape for passages, recommendation and routing, and the paper's nine task kinds.

Every loader returns an `EvalSet`: queries with their first-stage candidate order and graded qrels.
Single-relevant sets (the IRanker paper's Rec-*, Router-* and Passage-n tasks) also name their one
relevant candidate in `EvalQuery.target`. Builders are pure functions of the source files and a
seed; the train/test split hashes the query id alone, so changing the seed (new negatives, new
shuffles) never moves a query between train and test.

Ranking-bench rows (`problem, gt, candidates, task_name`) can be emitted from any single-relevant
set for training and read back, from the Hub or from local JSON/parquet files, through the same
`datasets.load_dataset` path.
"""

from __future__ import annotations

import ast
import csv
import hashlib
import json
import random
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .prompts import (
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
    passage_label,
    r1_problem,
)
from .runs import data_dir, read_corpus, read_rankgpt_json, read_topics, read_trec_run
from .types import Candidate

TEST_FRACTION = 0.2
SCENARIO_WEIGHTS = {"performance": (1.0, 0.0), "balance": (0.5, 0.5), "cost": (0.2, 0.8)}
RETRIEVALS = ("random", "bm25", "sasrec", "pop")
KS = {"passage": (3, 5, 10), "recommendation": (5, 10, 20), "routing": (5, 10)}
RANKING_BENCH = "ulab-ai/Ranking-bench"


@dataclass
class EvalQuery:
    """One query: its candidates in first-stage order and relevance grades by candidate id."""

    qid: str
    query: str | list[str]  # recommendation: the user's history, oldest first
    candidates: list[Candidate]
    qrels: dict[str, int]
    target: str | None = None  # the single relevant candidate id (paper protocol); None for TREC-style sets


@dataclass
class EvalSet:
    """A named set of queries for one task; `options` says how to prompt and how to score it.

    Options: `protocol` ("trec": ir_measures over graded qrels; "single": the paper's metrics from the
    relevant item's rank), `rel` (lowest relevant grade for binary measures), `ks`, and the ranker
    options the set needs (`scenario`, `item_type`), plus `task_name` (the Ranking-bench name).
    """

    name: str
    task: str
    queries: list[EvalQuery]
    options: dict[str, Any] = field(default_factory=dict)


# -- helpers -----------------------------------------------------------------------------------


def rng_for(*parts: Any) -> random.Random:
    """A RNG seeded from a stable hash of `parts` (Python's `hash` is salted per process)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8")).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def split_of(qid: str, test_fraction: float = TEST_FRACTION) -> str:
    """Test or train, from a hash of the query id only, so every seed sees the same split."""
    digest = hashlib.sha256(f"split\x1f{qid}".encode()).digest()
    return "test" if int.from_bytes(digest[:8], "big") / 2**64 < test_fraction else "train"


def _keep(qid: str, split: str) -> bool:
    if split not in ("train", "test", "all"):
        raise ValueError(f"unknown split {split!r}; expected train, test or all")
    return split == "all" or split_of(qid) == split


def read_qrels(path: str | Path) -> dict[str, dict[str, int]]:
    """TREC qrels (`qid iter docid grade`) or BEIR TSV (`query-id corpus-id score` with a header)."""
    qrels: dict[str, dict[str, int]] = defaultdict(dict)
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            fields = line.split()
            if not fields or (number == 1 and fields[0] == "query-id"):
                continue
            if len(fields) == 4:
                qid, _, docid, grade = fields
            elif len(fields) == 3:
                qid, docid, grade = fields
            else:
                raise ValueError(f"{path}:{number}: expected 'qid iter docid grade' or 'qid docid grade'")
            qrels[qid][docid] = int(float(grade))
    return dict(qrels)


def _tsv(path: Path) -> Iterable[list[str]]:
    """Rows of a RecBole atomic file (tab-separated, typed header skipped)."""
    with open(path, encoding="utf-8") as lines:
        next(lines)
        for line in lines:
            if line.strip():
                yield line.rstrip("\n").split("\t")


def _with_first_stage(
    name: str,
    queries: dict[str, str],
    ranked: Mapping[str, Sequence[Candidate]],
    qrels: dict[str, dict[str, int]],
    rel: int,
) -> EvalSet:
    """Judged queries only; a judged query without results keeps no candidates and scores 0 (trec_eval -c)."""
    out = [EvalQuery(qid, queries.get(qid, ""), list(ranked.get(qid, [])), grades) for qid, grades in qrels.items()]
    return EvalSet(name, "passage", out, {"protocol": "trec", "rel": rel, "ks": (5, 10, 20), "primary": "NDCG@10"})


# -- TREC-style passage sets -------------------------------------------------------------------


def load_rankgpt(run: str | Path, qrels: str | Path, *, name: str, rel: int = 2, hits: int | None = None) -> EvalSet:
    """A RankGPT/rank_llm JSON run (texts inside) with TREC qrels, e.g. TREC DL19/DL20 BM25 top-100."""
    runs = read_rankgpt_json(run)
    topics = {r.qid: r.query for r in runs}
    ranked = {r.qid: r.candidates[:hits] if hits else r.candidates for r in runs}
    return _with_first_stage(name, topics, ranked, read_qrels(qrels), rel)


def load_trec(
    run: str | Path,
    qrels: str | Path,
    topics: str | Path,
    corpus: str | Path,
    *,
    name: str,
    rel: int = 1,
    hits: int | None = None,
) -> EvalSet:
    """A TREC run joined with topics (TSV or BEIR queries.jsonl), a corpus and qrels (TREC or BEIR TSV)."""
    first_stage = {qid: ranked[:hits] if hits else ranked for qid, ranked in read_trec_run(run).items()}
    grades = read_qrels(qrels)
    wanted = {docid for qid in grades for docid, _ in first_stage.get(qid, [])}
    texts = read_corpus(corpus, ids=wanted)
    missing = wanted - texts.keys()
    if missing:
        raise ValueError(f"{run}: {len(missing)} documents are not in {corpus}, e.g. {sorted(missing)[0]!r}")
    ranked = {qid: [Candidate(d, texts[d], {}, s) for d, s in hits_] for qid, hits_ in first_stage.items()}
    return _with_first_stage(name, read_topics(topics), ranked, grades, rel)


def load_beir(directory: str | Path, *, name: str, run: str = "bm25_top100.trec", rel: int = 1) -> EvalSet:
    """A BEIR directory (corpus.jsonl, queries.jsonl, qrels/test.tsv) with a TREC first-stage run in it."""
    directory = Path(directory)
    return load_trec(
        directory / run, directory / "qrels" / "test.tsv", directory / "queries.jsonl", directory, name=name, rel=rel
    )


# -- recommendation ----------------------------------------------------------------------------


def _single(
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
        if len(timeline) <= history or not _keep(qid, split):
            continue
        target, rated = timeline[history], set(timeline)
        rng = rng_for("rec-movie", seed, user)
        unseen = [item for item in catalogue if item not in rated]
        negatives = _draw_distinct(rng, unseen, n - 1, titles, {titles[target]})
        queries.append(_rec_query(qid, timeline[:history], target, negatives, titles, rng))
    return _single(
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
            if not _keep(qid, split):
                continue
            past, target = users[user]
            rng = rng_for("rec-game", seed, retrieval, user)
            taken, negatives = {titles[target]}, []
            for item in retrieved.split():
                if len(negatives) < n - 1 and titles[item] not in taken:
                    taken.add(titles[item])
                    negatives.append(item)
            queries.append(_rec_query(qid, past[-history:], target, negatives, titles, rng))
    return _single(
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
    return _single(
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
        if len(set(qualities)) == 1 or not _keep(row["sample_id"], split):
            continue
        costs = [float(row[f"{name}|total_cost"]) for name in names]
        queries.append(
            _route_query(row["sample_id"], row["prompt"], names, qualities, costs, descriptions, scenario, seed)
        )
    return _single(
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
        if not _keep(query.qid, split):
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
    return _single(f"passage-{n}", "passage", queries, f"Passage-{n}", KS["passage"], source=source.name)


# -- Ranking-bench rows ------------------------------------------------------------------------


def _labels(task: str, texts: Sequence[str]) -> list[str]:
    """What the model answers with (as the rankers ask): `passage i`, else the full name."""
    return [passage_label(i) for i in range(len(texts))] if task == "passage" else list(texts)


def _row(evalset: EvalSet, kind: str, query: EvalQuery, items: Sequence[Candidate]) -> dict[str, Any]:
    texts = [c.text for c in items]
    problem = r1_problem(
        kind,
        evalset.task,
        query.query,
        texts,
        descriptions=[str(c.metadata.get("description", "")) for c in items],
        scenario=evalset.options.get("scenario", "performance"),
        item_type=evalset.options.get("item_type", "movie"),
    )
    labels = _labels(evalset.task, texts)
    gt = labels[[c.id for c in items].index(query.target)]
    return {"problem": problem, "gt": gt, "candidates": labels, "task_name": evalset.options["task_name"]}


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
        labels = _labels(parsed["task"], parsed["texts"])
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
        name: _single(
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


# -- registry ----------------------------------------------------------------------------------


def _passage(root: Path, name: str) -> EvalSet:
    directory = root / "passage" / name
    if name in ("dl19", "dl20"):
        return load_rankgpt(directory / "bm25_top100.json", directory / "qrels.txt", name=name, rel=2)
    if name == "noveleval":  # 21 queries x 20 candidates in their given (web search) order; grades 0-2
        return load_rankgpt(directory / "data.json", directory / "qrels.txt", name=name, rel=2)
    return load_beir(directory, name=name)


def _passage_n(root: Path, n: int, seed: int, split: str) -> EvalSet:
    return build_passage_n(n, _passage(root, "dl19"), seed=seed, split=split)


TREC_SETS = ("dl19", "dl20", "noveleval", "scifact", "vaswani", "cranfield", "cacm")
BUILDERS: dict[str, Callable[[Path, int, str], EvalSet]] = {
    **{name: lambda root, seed, split, name=name: _passage(root, name) for name in TREC_SETS},
    "rec-movie": lambda root, seed, split: build_rec_movie(root / "rec" / "ml-100k", seed=seed, split=split),
    "rec-game": lambda root, seed, split: build_rec_game(root / "rec" / "games-6k", seed=seed, split=split),
    **{
        f"router-{s}": lambda root, seed, split, s=s: build_router(
            root / "router" / "llmrouter", scenario=s, seed=seed, split=split
        )
        for s in SCENARIO_WEIGHTS
    },
    "router-bench": lambda root, seed, split: build_router_bench(
        root / "router" / "routerbench-zs", seed=seed, split=split
    ),
    **{f"passage-{n}": lambda root, seed, split, n=n: _passage_n(root, n, seed, split) for n in (5, 7, 9)},
}
DATASETS = tuple(BUILDERS)


def load_dataset(
    name: str,
    *,
    data: str | Path | None = None,
    seed: int = 0,
    split: str = "test",
    limit: int | None = None,
    sample: int | None = None,
) -> EvalSet:
    """A named evaluation set from the shared data root (`data`, default `runs.data_dir()`).

    TREC-style sets (dl19, dl20, noveleval, scifact, vaswani, cranfield, cacm) are test
    collections: only `split="test"` exists. `sample` keeps a fixed random sample of that many
    queries (drawn with `seed`, in their original order); `limit` then keeps the first queries.
    """
    if name not in BUILDERS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {DATASETS}")
    if name in TREC_SETS and split != "test":
        raise ValueError(f"{name} is a test collection: only split='test' exists")
    evalset = BUILDERS[name](Path(data) if data is not None else data_dir(), seed, split)
    if sample is not None and sample < len(evalset.queries):
        keep = set(rng_for("sample", name, seed).sample(range(len(evalset.queries)), sample))
        evalset.queries = [q for i, q in enumerate(evalset.queries) if i in keep]
    if limit is not None:
        evalset.queries = evalset.queries[:limit]
    return evalset
