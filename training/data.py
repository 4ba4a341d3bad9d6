"""Training examples for IRanker, DRanker and Rank-R1 setwise GRPO, and their SFT warm starts.

Examples come from the same builders as the evaluation sets (`r1ranker_plugins.datasets`) or from
Ranking-bench rows, and their prompts from the same prompt code the rankers use at inference
(`ranking_bench_rows` → `prompts.r1_problem`, `prompts.r1_chat`, `prompts.setwise_messages`), so a
trained checkpoint sees at inference exactly the text it was trained on.

Formats (TRL): R1 prompts are raw ChatML text ending inside an open `<think>`, so IRanker/DRanker
examples use the standard (non-conversational) `prompt` column with the full text; setwise examples
are conversational (system + user messages through the tokenizer's chat template). Beside `prompt`
every example carries what the rewards need: `gt` (the relevant candidate's answer label),
`candidates` (all answer labels, in prompt order), `task` and `task_name`.

Everything is a pure function of the source files and the seed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from r1ranker_plugins.datasets import (
    TREC_SETS,
    EvalQuery,
    EvalSet,
    build_passage_n,
    load_dataset,
    load_ranking_bench,
    ranking_bench_rows,
    rng_for,
)
from r1ranker_plugins.engines.base import truncate_text, truncate_texts
from r1ranker_plugins.prompts import cut_candidates, r1_chat, setwise_messages
from r1ranker_plugins.simulated import query_key

STRATEGIES = ("iranker", "dranker", "setwise")
RANKING_BENCH = "ranking-bench"


@dataclass
class DataConfig:
    """Where the training examples come from (the `data:` section of a training config).

    `builder`: a set name from `r1ranker_plugins.datasets.DATASETS`, or "ranking-bench" (the Hub's
    `ulab-ai/Ranking-bench` direct lists, or local `data_files`). `n`: candidates per list; required
    for TREC-style sets (dl19, ...), which become Passage-n sets with one relevant passage; for
    single-relevant sets it keeps the relevant item and the first n-1 others. `split` is the
    builders' query-hashed split, so training on "train" never sees a "test" query.
    `max_candidate_tokens` / `max_query_tokens` truncate texts with the model's tokenizer, as the
    rankers do at inference (their defaults: 256 / 128); None keeps texts whole. `examples`: at most
    that many examples from this source, a sample drawn with the seed (a recipe mixes sources).
    """

    builder: str
    n: int | None = None
    seed: int = 0
    split: str = "train"
    limit: int | None = None
    data: str | None = None
    data_files: str | list[str] | None = None
    task_names: list[str] | None = None
    system_verb: str = "thinks"
    label_colon: bool = False
    max_candidate_tokens: int | None = None
    max_query_tokens: int | None = None
    examples: int | None = None

    def __post_init__(self) -> None:
        if self.n is not None and self.n < 2:
            raise ValueError(f"data.n must be >= 2 (a list to rank), got {self.n}")
        if self.system_verb not in ("thinks", "think"):
            raise ValueError(f"data.system_verb must be 'thinks' or 'think', got {self.system_verb!r}")


# -- sources ----------------------------------------------------------------------------------------


def _first_n(query: EvalQuery, n: int) -> EvalQuery:
    """The relevant item and the first n-1 others, in their (already shuffled) order."""
    others = [c for c in query.candidates if c.id != query.target][: n - 1]
    keep = {c.id for c in others} | {query.target}
    candidates = [c for c in query.candidates if c.id in keep]
    grades = {c.id: query.qrels.get(c.id, 0) for c in candidates}
    return EvalQuery(query.qid, query.query, candidates, grades, query.target)


def _truncated(query: EvalQuery, config: DataConfig, tokenizer: Any, task: str) -> EvalQuery:
    """Cut texts as the rankers do: an LLM's name is its answer label and stays whole (its
    description is cut instead); any other candidate text is cut."""
    limit = config.max_candidate_tokens
    if limit is not None:
        query.candidates = cut_candidates(query.candidates, task, lambda texts: truncate_texts(tokenizer, texts, limit))
    if config.max_query_tokens is not None and isinstance(query.query, str):
        query.query = truncate_text(tokenizer, query.query, config.max_query_tokens)
    elif config.max_candidate_tokens is not None and not isinstance(query.query, str):  # a user's history
        query.query = truncate_texts(tokenizer, query.query, config.max_candidate_tokens)
    return query


def load_evalsets(config: DataConfig, tokenizer: Any = None, held_out: set[str] = frozenset()) -> list[EvalSet]:
    """The single-relevant sets named by the config (several for a Ranking-bench task mix).

    `tokenizer` (the model's) is needed when the config truncates texts. Queries whose text is in
    `held_out` (see `held_out_keys`) are removed before anything else; each set records how many
    in `options["held_out_dropped"]`.
    """
    truncating = config.max_candidate_tokens is not None or config.max_query_tokens is not None
    if truncating and tokenizer is None:
        raise ValueError("data.max_candidate_tokens / max_query_tokens need the model's tokenizer")
    if config.builder == RANKING_BENCH:
        found = load_ranking_bench("direct", split=config.split, data_files=config.data_files)
        if config.task_names is not None:
            missing = sorted(set(config.task_names) - set(found))
            if missing:
                raise ValueError(f"Ranking-bench has no task {missing[0]!r}; it has {sorted(found)}")
            found = {name: found[name] for name in config.task_names}
        evalsets = list(found.values())
    elif config.builder in TREC_SETS:
        if config.n is None:
            raise ValueError(f"{config.builder} is a TREC-style set: give data.n to build Passage-n lists from it")
        source = load_dataset(config.builder, data=config.data, split="test")
        evalsets = [build_passage_n(config.n, source, seed=config.seed, split=config.split)]
    else:
        evalsets = [load_dataset(config.builder, data=config.data, seed=config.seed, split=config.split)]
    for evalset in evalsets:
        if evalset.options.get("protocol") != "single":
            raise ValueError(f"{evalset.name} has no single relevant item per query; training needs one")
        evalset.options["held_out_dropped"] = drop_held_out([evalset], set(held_out))
        if config.n is not None and config.builder not in TREC_SETS:
            evalset.queries = [_first_n(q, config.n) for q in evalset.queries]
        if config.limit is not None:
            evalset.queries = evalset.queries[: config.limit]
        if truncating:
            evalset.queries = [_truncated(q, config, tokenizer, evalset.task) for q in evalset.queries]
    return evalsets


# -- examples ---------------------------------------------------------------------------------------


def _r1_examples(rows: Iterable[Mapping[str, Any]], task: str, system_verb: str) -> list[dict[str, Any]]:
    return [
        {
            "prompt": r1_chat(row["problem"], system_verb=system_verb),
            "gt": row["gt"],
            "candidates": list(row["candidates"]),
            "task": task,
            "task_name": row["task_name"],
            "qid": str(row.get("qid", "")),
        }
        for row in rows
    ]


def iranker_examples(evalset: EvalSet, *, seed: int = 0, system_verb: str = "thinks") -> list[dict[str, Any]]:
    """IRanker cases: per query, pools of the relevant item plus k negatives (k = 1..n-1), one step each."""
    return _r1_examples(ranking_bench_rows(evalset, "iterative", seed=seed), evalset.task, system_verb)


def dranker_examples(evalset: EvalSet, *, system_verb: str = "thinks") -> list[dict[str, Any]]:
    """DRanker lists: one full list per query, answered best first, one label per line."""
    return _r1_examples(ranking_bench_rows(evalset, "direct"), evalset.task, system_verb)


def setwise_examples(evalset: EvalSet, *, label_colon: bool = False) -> list[dict[str, Any]]:
    """Rank-R1 setwise examples: one chat prompt per query over its documents, answer `[k]` (1-based)."""
    if evalset.task != "passage":
        raise ValueError(f"setwise training needs passages; {evalset.name} is a {evalset.task} set")
    out = []
    for query in evalset.queries:
        labels = [f"[{i}]" for i in range(1, len(query.candidates) + 1)]
        position = [c.id for c in query.candidates].index(query.target)
        out.append(
            {
                "prompt": setwise_messages(query.query, [c.text for c in query.candidates], label_colon=label_colon),
                "gt": labels[position],
                "candidates": labels,
                "task": "passage",
                "task_name": evalset.options.get("task_name", evalset.name),
                "qid": query.qid,
            }
        )
    return out


def build_examples(
    config: DataConfig, strategy: str, evalsets: Sequence[EvalSet] | None = None
) -> list[dict[str, Any]]:
    """All examples for `strategy` from the config's sets (or `evalsets`), shuffled with the data seed."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; expected one of {STRATEGIES}")
    examples: list[dict[str, Any]] = []
    for evalset in evalsets if evalsets is not None else load_evalsets(config):
        if strategy == "iranker":
            examples += iranker_examples(evalset, seed=config.seed, system_verb=config.system_verb)
        elif strategy == "dranker":
            examples += dranker_examples(evalset, system_verb=config.system_verb)
        else:
            examples += setwise_examples(evalset, label_colon=config.label_colon)
    rng_for("training-examples", strategy, config.seed).shuffle(examples)
    return examples[: config.examples] if config.examples is not None else examples


# -- held-out sets ----------------------------------------------------------------------------------


def held_out_keys(names: Sequence[str], *, data: str | None = None) -> set[str]:
    """The queries no training example may come from: every query of each named set's test split
    (a TREC-style collection is all test), keyed by text (a user's history for recommendation).

    Keys are texts, not ids, so a question that two splits share (LLMRouter's train.json repeats
    119 of its test questions) is held out wherever it appears.
    """
    keys: set[str] = set()
    for name in names:
        keys |= {query_key(q.query) for q in load_dataset(name, data=data, split="test").queries}
    return keys


def drop_held_out(evalsets: Sequence[EvalSet], keys: set[str]) -> int:
    """Remove, in place, the queries whose text is held out; returns how many were removed."""
    dropped = 0
    for evalset in evalsets:
        kept = [q for q in evalset.queries if query_key(q.query) not in keys]
        dropped += len(evalset.queries) - len(kept)
        evalset.queries = kept
    return dropped


def to_dataset(examples: Sequence[Mapping[str, Any]]) -> Any:
    """A `datasets.Dataset` in TRL's prompt format, with the reward columns."""
    import datasets

    if not examples:
        raise ValueError("no training examples: check data.builder, data.split and data.limit")
    return datasets.Dataset.from_list([dict(example) for example in examples])


# -- SFT warm start ---------------------------------------------------------------------------------


def relevance_prior(examples: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """Per answer label: how often it is the relevant candidate when it is shown.

    A popularity prior over names (which LLMs are rarely the best, which items are rarely the
    next pick); for passages the labels are positions and the prior is flat.
    """
    shown: Counter[str] = Counter()
    relevant: Counter[str] = Counter()
    for example in examples:
        shown.update(example["candidates"])
        relevant[example["gt"]] += 1
    return {label: relevant[label] / count for label, count in shown.items()}


def least_often_relevant(labels: Iterable[str], prior: Mapping[str, float]) -> str:
    """The label the prior finds least often relevant (unseen labels count as never; ties by name)."""
    return min(labels, key=lambda label: (prior.get(label, 0.0), label))


def well_formed_answer(
    example: Mapping[str, Any], strategy: str, rng: Any, prior: Mapping[str, float] | None = None
) -> str:
    """A correct answer from the labels: a non-relevant candidate (IRanker: at random, or with a
    `prior` the one least often relevant, for named candidates; passage labels are positions, so
    passages always get a random one), the relevant one first then the rest shuffled (DRanker), or
    the relevant label (setwise)."""
    gt, candidates = example["gt"], list(example["candidates"])
    others = [c for c in candidates if c != gt]
    if strategy == "iranker":
        if prior is not None and example.get("task") != "passage":  # passage labels are positions, not names
            return least_often_relevant(others, prior)
        return rng.choice(others)
    if strategy == "dranker":
        rng.shuffle(others)
        return "\n".join([gt, *others])
    return gt


def sft_examples(
    examples: Sequence[Mapping[str, Any]],
    strategy: str,
    *,
    seed: int = 0,
    reasoning: str = "",
    prior: Mapping[str, float] | None = None,
) -> list[dict[str, Any]]:
    """Prompt-completion pairs whose completions are well formed and correct by the labels.

    R1 completions continue the prompt's open think block (` {reasoning}\\n</think>\\n<answer>…</answer>`);
    setwise completions are assistant messages (`<think>…</think> <answer>[k]</answer>`). A short or
    empty `reasoning` teaches format and answer only: a warm start for GRPO, not a reasoner.
    `prior` (IRanker, from `relevance_prior`): eliminate the non-relevant candidate least often
    relevant, a deterministic target, instead of a random non-relevant one.
    """
    rng = rng_for("sft", strategy, seed)
    # Start with a space: the prompt ends in `<think>`, and `>` + "\n" is one token in Qwen-style
    # tokenizers, so a completion starting with "\n" would be trained on tokens inference never sees.
    think = f" {reasoning.strip()}\n" if reasoning.strip() else " "
    out = []
    for example in examples:
        answer = well_formed_answer(example, strategy, rng, prior)
        if strategy == "setwise":
            content = f"<think>{think}</think> <answer>{answer}</answer>"
            completion: Any = [{"role": "assistant", "content": content}]
        else:
            completion = f"{think}</think>\n<answer>{answer}</answer>"
        out.append({"prompt": example["prompt"], "completion": completion})
    return out
