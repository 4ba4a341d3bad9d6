"""Evaluation sets: first-stage baselines reproduce the data README, builders are sound and deterministic."""

from __future__ import annotations

import csv
import json
import statistics
from collections import defaultdict

import pytest

from r1ranker_plugins.datasets import (
    DATASETS,
    build_passage_n,
    load_dataset,
    load_ranking_bench,
    parse_problem,
    ranking_bench_rows,
    route_utilities,
    rows_to_evalsets,
    split_of,
)
from r1ranker_plugins.metrics import first_stage_run, mean_metrics, score_run
from r1ranker_plugins.runs import read_corpus

BUILT = {  # name -> (candidates per query, test queries)
    "rec-movie": (20, 167),
    "rec-game": (20, 1165),
    "router-performance": (9, 367),
    "router-balance": (9, 367),
    "router-cost": (9, 367),
    "router-bench": (11, 156),
    "passage-5": (5, 42),
    "passage-7": (7, 42),
    "passage-9": (9, 42),
}


def first_stage_ndcg10(evalset) -> float:
    return mean_metrics(score_run(evalset, first_stage_run(evalset)))["NDCG@10"]


@pytest.mark.parametrize(
    ("name", "figure", "tolerance"),
    [
        ("scifact", 0.676, 0.002),
        ("vaswani", 0.436, 0.002),
        ("cranfield", 0.370, 0.002),
        ("dl20", 0.4796, 0.00005),
        ("noveleval", 0.650, 0.0005),
        ("cacm", 0.497, 0.0005),
    ],
)
def test_first_stage_reproduces_the_data_readme(name, figure, tolerance):
    evalset = load_dataset(name)
    assert evalset.options["protocol"] == "trec"
    assert first_stage_ndcg10(evalset) == pytest.approx(figure, abs=tolerance)


def test_trec_sets_are_test_collections():
    with pytest.raises(ValueError, match="only split='test'"):
        load_dataset("dl19", split="train")
    with pytest.raises(ValueError, match="unknown dataset 'msmarco'"):
        load_dataset("msmarco")
    assert len(load_dataset("scifact", limit=7).queries) == 7


@pytest.fixture(scope="module")
def built():
    return {name: load_dataset(name) for name in BUILT}


@pytest.mark.parametrize("name", BUILT)
def test_builder_counts_and_targets(built, name):
    n, count = BUILT[name]
    evalset = built[name]
    assert len(evalset.queries) == count
    assert evalset.options["protocol"] == "single" and evalset.options["task_name"]
    for query in evalset.queries:
        ids = [c.id for c in query.candidates]
        assert len(ids) == n == len(set(ids)) == len({c.text for c in query.candidates})
        assert query.target in ids
        if evalset.task == "passage":  # exactly one relevant (grade >= 2 on DL19)
            assert [d for d in ids if query.qrels.get(d, 0) >= 2] == [query.target]
        else:
            assert query.qrels == {query.target: 1}
        if evalset.task == "routing":
            assert all(c.metadata["description"] for c in query.candidates)
            utilities = [c.metadata["utility"] for c in query.candidates]
            assert max(utilities) == next(c.metadata["utility"] for c in query.candidates if c.id == query.target)
    positions = [[c.id for c in q.candidates].index(q.target) for q in evalset.queries]
    assert len(set(positions)) > 1  # candidates are shuffled: the target is not always in one place


@pytest.mark.parametrize("name", BUILT)
def test_builders_are_deterministic_and_seeded(built, name):
    assert load_dataset(name) == built[name]
    other = load_dataset(name, seed=1)
    assert [q.qid for q in other.queries] == [q.qid for q in built[name].queries]  # the split ignores the seed
    assert other != built[name]


@pytest.mark.parametrize("name", BUILT)
def test_train_and_test_are_disjoint(built, name):
    def sources(evalset):  # passage-n instances of one DL19 query stay on one side
        return {q.qid.rsplit("-", 1)[0] if name.startswith("passage") else q.qid for q in evalset.queries}

    train = load_dataset(name, split="train")
    assert train.queries and not sources(train) & sources(built[name])
    if name.startswith("router-") and name != "router-bench":
        assert all(q.qid.startswith("train-") for q in train.queries)


def _tsv(path):
    with open(path, encoding="utf-8") as handle:
        return list(csv.reader(handle, delimiter="\t"))[1:]


def test_rec_movie_is_the_users_timeline(built, shared_data):
    query = built["rec-movie"].queries[0]
    user = query.qid.removeprefix("user-")
    rows = _tsv(shared_data / "rec/ml-100k/ml-100k.inter")
    timeline = [item for _, _, item in sorted((float(r[3]), n, r[1]) for n, r in enumerate(rows) if r[0] == user)]
    titles = {r[0]: f"{r[1]} ({r[2]})" for r in _tsv(shared_data / "rec/ml-100k/ml-100k.item")}
    assert query.query == [titles[i] for i in timeline[:20]]
    assert query.target == timeline[20]
    assert not {c.id for c in query.candidates if c.id != query.target} & set(timeline)  # never rated
    assert len(load_dataset("rec-movie", split="all").queries) == 911  # users with >= 21 ratings


def test_rec_movie_random_order_mrr_matches_the_expectation():
    """The shuffled first-stage order is a random ranking: MRR×100 ≈ H_20/20 = 17.99."""
    mrr = [mean_metrics(score_run(s, first_stage_run(s)))["MRRx100"] for s in map(_rec_movie, range(10))]
    assert statistics.mean(mrr) == pytest.approx(17.99, abs=1.5)


def _rec_movie(seed):
    return load_dataset("rec-movie", seed=seed)


def test_route_utilities_by_hand():
    # prices 0.2, 0.1, 0.9 → normalised 0.125, 0, 1
    assert route_utilities([1, 0, 1], [0.2, 0.1, 0.9], "performance") == [1, 0, 1]
    assert route_utilities([1, 0, 1], [0.2, 0.1, 0.9], "balance") == [0.4375, 0, 0]
    assert route_utilities([1, 0, 1], [0.2, 0.1, 0.9], "cost") == [0.1, 0, -0.6]


def test_router_targets_by_hand(built):
    """test.json #27: only llama-3.3-nemotron-super-49b-v1 (price 0.9) is right."""
    performance = next(q for q in built["router-performance"].queries if q.qid == "test-27")
    assert performance.target == "llama-3.3-nemotron-super-49b-v1"
    cost = next(q for q in built["router-cost"].queries if q.qid == "test-27")
    assert cost.target == "gemma-2-9b-it"  # 0.2*1 - 0.8*1 < 0 = gemma's 0.2*0 - 0.8*0
    balance = next(q for q in built["router-balance"].queries if q.qid == "test-27")
    utility = {c.id: c.metadata["utility"] for c in balance.candidates}
    assert utility["llama-3.3-nemotron-super-49b-v1"] == utility["gemma-2-9b-it"] == 0.0
    assert balance.target == "gemma-2-9b-it"  # the tie goes to the earlier LLM in default_llm.json
    first = next(q for q in built["router-performance"].queries if q.qid == "test-0")
    assert first.target == "gemma-2-9b-it"  # gemma and mistral tie on quality; gemma comes first


def test_router_bench_balance_targets_the_cheapest_correct_llm(built, shared_data):
    oracle = {}
    for path in (shared_data / "router/routerbench-zs").glob("*.csv"):
        with open(path, encoding="utf-8") as handle:
            oracle |= {r["sample_id"]: r["oracle_model_to_route_to"] for r in csv.DictReader(handle)}
    queries = load_dataset("router-bench", split="all").queries
    assert sum(oracle[q.qid] == q.target for q in queries) >= 0.99 * len(queries)


def test_passage_n_from_scifact(shared_data):
    scifact = load_dataset("scifact")
    texts = read_corpus(shared_data / "passage/scifact")
    evalset = build_passage_n(5, scifact, texts=texts, split="all")
    assert len(evalset.queries) >= 300
    for query in evalset.queries:
        assert [c.id for c in query.candidates if query.qrels[c.id] >= 1] == [query.target]


def test_split_of_is_stable():
    assert split_of("user-1") == split_of("user-1")
    fractions = [split_of(f"q{i}") == "test" for i in range(2000)]
    assert 0.17 < sum(fractions) / len(fractions) < 0.23


# -- Ranking-bench rows ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fmt"), [("rec-movie", "json"), ("rec-game", "parquet"), ("router-cost", "json"), ("passage-5", "parquet")]
)
def test_ranking_bench_rows_load_back_through_datasets(tmp_path, name, fmt):
    evalset = load_dataset(name, limit=4)
    rows = ranking_bench_rows(evalset, "direct")
    path = tmp_path / f"rows.{fmt}"
    if fmt == "json":
        path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    else:
        import datasets

        datasets.Dataset.from_list(rows).to_parquet(str(path))
    [loaded] = load_ranking_bench("direct", data_files=str(path)).values()
    assert loaded.task == evalset.task and loaded.options["task_name"] == evalset.options["task_name"]
    for key in ("scenario", "item_type"):
        assert loaded.options.get(key) == evalset.options.get(key)
    for original, back in zip(evalset.queries, loaded.queries, strict=True):
        assert back.query == original.query
        assert [c.text for c in back.candidates] == [c.text for c in original.candidates]
        target = next(c for c in original.candidates if c.id == original.target)
        assert next(c.text for c in back.candidates if c.id == back.target) == target.text
        if evalset.task == "routing":
            assert [c.metadata["description"] for c in back.candidates] == [
                c.metadata["description"] for c in original.candidates
            ]


def test_iterative_rows_are_elimination_cases():
    evalset = load_dataset("passage-7", limit=3)
    rows = ranking_bench_rows(evalset, "iterative", seed=3)
    assert len(rows) == 3 * 6 and rows == ranking_bench_rows(evalset, "iterative", seed=3)
    sizes = defaultdict(int)
    for row in rows:
        assert row["gt"] in row["candidates"] and row["task_name"] == "Passage-7"
        assert row["problem"].startswith("Here is a query:")
        sizes[len(row["candidates"])] += 1
        assert parse_problem(row["problem"])["texts"]
    assert sorted(sizes) == list(range(2, 8))
    assert len({row["candidates"].index(row["gt"]) for row in rows}) > 1
    back = rows_to_evalsets(rows)["Passage-7"].queries
    assert [q.candidates[int(q.target)].text for q in back] == [
        parse_problem(r["problem"])["texts"][r["candidates"].index(r["gt"])] for r in rows
    ]


def test_rows_need_a_single_relevant_set():
    with pytest.raises(ValueError, match="single relevant"):
        ranking_bench_rows(load_dataset("dl19", limit=1))
    with pytest.raises(ValueError, match="not an R1-Ranker problem"):
        parse_problem("rank these please")


def test_registry_lists_every_task_kind():
    assert set(DATASETS) == {"dl19", "dl20", "noveleval", "scifact", "vaswani", "cranfield", "cacm", *BUILT}


def test_a_sample_is_fixed_by_its_seed_and_keeps_the_order():
    first = load_dataset("scifact", sample=50)
    again = load_dataset("scifact", sample=50)
    other = load_dataset("scifact", sample=50, seed=1)
    everything = [q.qid for q in load_dataset("scifact").queries]
    qids = [q.qid for q in first.queries]
    assert len(qids) == 50 and qids == [q.qid for q in again.queries] != [q.qid for q in other.queries]
    assert qids == [qid for qid in everything if qid in set(qids)]
