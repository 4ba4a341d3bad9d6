"""Evaluation sets in one shape for passages, recommendation and routing, by name.

Every set is an `EvalSet`: queries with their first-stage candidate order and graded qrels.
Single-relevant sets (the IRanker paper's Rec-*, Router-* and Passage-n tasks) also name their one
relevant candidate in `EvalQuery.target`. Modules: `types` (the shape, splits), `trec` (TREC/BEIR
readers), `tasks` (the paper's task builders), `ranking_bench` (training rows and the Hub's rows).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from ..runs import data_dir
from .ranking_bench import RANKING_BENCH, load_ranking_bench, parse_problem, ranking_bench_rows, rows_to_evalsets
from .tasks import (
    KS,
    RETRIEVALS,
    SCENARIO_WEIGHTS,
    build_passage_n,
    build_rec_game,
    build_rec_movie,
    build_router,
    build_router_bench,
    route_utilities,
)
from .trec import load_beir, load_rankgpt, load_trec, read_qrels
from .types import TEST_FRACTION, EvalQuery, EvalSet, rng_for, split_of


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
    return select(evalset, sample=sample, limit=limit, seed=seed)


def select(evalset: EvalSet, *, sample: int | None = None, limit: int | None = None, seed: int = 0) -> EvalSet:
    """A fixed random `sample` of the set's queries (drawn with `seed`, in their order), then the first `limit`."""
    queries = evalset.queries
    if sample is not None and sample < len(queries):
        keep = set(rng_for("sample", evalset.name, seed).sample(range(len(queries)), sample))
        queries = [q for i, q in enumerate(queries) if i in keep]
    if limit is not None:
        queries = queries[:limit]
    return dataclasses.replace(evalset, queries=queries)


__all__ = [
    "BUILDERS",
    "DATASETS",
    "KS",
    "RANKING_BENCH",
    "RETRIEVALS",
    "SCENARIO_WEIGHTS",
    "TEST_FRACTION",
    "TREC_SETS",
    "EvalQuery",
    "EvalSet",
    "build_passage_n",
    "build_rec_game",
    "build_rec_movie",
    "build_router",
    "build_router_bench",
    "load_beir",
    "load_dataset",
    "load_rankgpt",
    "load_ranking_bench",
    "load_trec",
    "parse_problem",
    "ranking_bench_rows",
    "read_qrels",
    "rng_for",
    "route_utilities",
    "rows_to_evalsets",
    "select",
    "split_of",
]
