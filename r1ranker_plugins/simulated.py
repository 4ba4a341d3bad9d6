"""A SIMULATED judge: an engine that answers from relevance labels, for studying ranking algorithms.

It is a product feature (`r1ranker eval --judge simulated`, the cost/quality benchmark), never a
stand-in for a model: every number it produces is labelled as a simulation.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from .engines.base import Engine
from .types import Completion, Question, Request

__all__ = ["ERROR_MODELS", "SimulatedJudge", "judge_labels", "query_key"]


def query_key(query: str | Sequence[str]) -> str:
    """The label key of a query: the text itself, or a recommendation history's items joined."""
    return query if isinstance(query, str) else "\x1e".join(query)


ERROR_MODELS = ("uniform", "local")


class SimulatedJudge(Engine):
    """A SIMULATION, for algorithm studies only: an engine that answers from relevance labels.

    It reads each request's `question` (kind, ids, labels, query) instead of the prompt, looks up
    the grades (`labels`: query key -> {candidate id: grade}; unknown ids grade 0) and answers
    in the model's format (`<think>...</think>\n<answer>LABEL</answer>`, or `LABEL</answer>` for
    a forced answer), so the rankers' real prompt and parsing paths run. Numbers it produces
    measure the ranking algorithm under a judge of known quality, never a model.

    Decisions: "least" names the lowest grade (ties: the last shown, so tied candidates keep
    their first-stage order), "most" the highest (ties: the first shown), "order" sorts by
    grade (ties keep prompt order). Two error models, both wrong with probability `error_rate`
    per decision; they differ in what a wrong answer is:

    - "uniform" (default, the pessimistic extreme): a wrong "least"/"most" decision names a
      uniformly random other shown candidate, as likely the best as a near miss. A "least"
      answer with a `count` > 1 is `count` such decisions in a row, each over the candidates
      not yet named, so it errs as that many one-name calls would (in distribution): asking
      for several names at once neither adds errors nor hides them.
    - "local" (errors between neighbours, as a noisy scorer makes them): every answer is read
      off one noisy order, the grade order after one left-to-right pass that swaps each
      adjacent pair with probability `error_rate`; "least" names its last `count`, "most" its
      first.

    An "order" answer is that noisy order under both models. Each request's RNG is seeded from
    (seed, query, kind, ids), so answers do not depend on batching.

    Queries are matched by key; a query the ranker truncated is matched to the unique label
    key it is a prefix of. Token counts use a real tokenizer (`tokenizer`: a tokenizer object,
    or a path/hub id; default: the tiny model's).
    """

    backend = "simulated"

    def __init__(
        self,
        labels: Mapping[str, Mapping[str, int]],
        error_rate: float = 0.0,
        seed: int = 0,
        tokenizer: Any = None,
        error_model: str = "uniform",
    ) -> None:
        if not 0.0 <= error_rate <= 1.0:
            raise ValueError(f"error_rate must be in [0, 1], got {error_rate}")
        if error_model not in ERROR_MODELS:
            raise ValueError(f"error_model must be one of {ERROR_MODELS}, got {error_model!r}")
        super().__init__("simulated-judge", error_rate=error_rate, seed=seed, error_model=error_model)
        self.labels = {key: dict(grades) for key, grades in labels.items()}
        self.error_rate = error_rate
        self.error_model = error_model
        self.seed = seed
        self._counting = tokenizer

    def _load_tokenizer(self) -> Any:
        """The tokenizer that counts tokens: the one given, or loaded from a path (the tiny model's)."""
        if self._counting is not None and not isinstance(self._counting, str | os.PathLike):
            return self._counting
        from .engines.base import load_tokenizer
        from .testing import tiny_model

        return load_tokenizer(str(self._counting or tiny_model()))

    def _generate(self, requests: Sequence[Request]) -> list[Completion]:
        self.count(batches=1)
        replies = [self.reply(request) for request in requests]
        encode = self.tokenizer
        prompt_ids = encode([r.prompt for r in requests], add_special_tokens=False)["input_ids"]
        reply_ids = encode(replies, add_special_tokens=False)["input_ids"]
        return [
            Completion(text, "stop", len(p), len(c)) for text, p, c in zip(replies, prompt_ids, reply_ids, strict=True)
        ]

    def resolve(self, query: str | Sequence[str]) -> str:
        """The label key for a (possibly truncated) query."""
        key = query_key(query)
        if key in self.labels:
            return key
        prefix = key.rstrip("\ufffd")
        found = [k for k in self.labels if k.startswith(prefix)]
        if len(found) != 1:
            what = "no labels" if not found else f"{len(found)} queries sharing this prefix"
            raise KeyError(f"simulated judge: {what} for query {key[:60]!r} (raise max_query_tokens)")
        return found[0]

    def decide(self, question: Question) -> list[int]:
        """Shown positions: the chosen candidate(s) for "least"/"most", the full order for "order"."""
        key = self.resolve(question.query)
        kind = question.kind
        grades = [self.labels[key].get(str(i), 0) for i in question.ids]
        digest = hashlib.sha256(json.dumps([self.seed, key, kind, list(question.ids)]).encode("utf-8")).digest()
        rng = random.Random(int.from_bytes(digest[:8], "big"))
        n = len(grades)
        count = question.count
        if kind == "order" or self.error_model == "local":
            order = sorted(range(n), key=lambda i: -grades[i])
            for i in range(n - 1):
                if rng.random() < self.error_rate:
                    order[i], order[i + 1] = order[i + 1], order[i]
            if kind == "order":
                return order
            if kind not in ("least", "most"):
                raise ValueError(f"simulated judge: unknown request kind {kind!r}")
            return order[-count:][::-1] if kind == "least" else order[:1]
        if kind == "least":
            named: list[int] = []
            for _ in range(min(count, n)):
                left = [i for i in range(n) if i not in named]
                pick = min(left, key=lambda i: (grades[i], -i))
                if len(left) > 1 and rng.random() < self.error_rate:
                    pick = rng.choice([i for i in left if i != pick])
                named.append(pick)
            return named
        if kind == "most":
            best = max(range(n), key=lambda i: (grades[i], -i))
        else:
            raise ValueError(f"simulated judge: unknown request kind {kind!r}")
        if n > 1 and rng.random() < self.error_rate:
            best = rng.choice([i for i in range(n) if i != best])
        return [best]

    def reply(self, request: Request) -> str:
        question = request.question
        if question is None:
            raise ValueError("simulated judge: the request says nothing of what it asks (no question)")
        answer = "\n".join(question.labels[i] for i in self.decide(question))
        if request.forced:  # the prompt already opened the answer and its first label
            return f"{answer.removeprefix(request.label_start)}</answer>"
        think = "Simulated judge: decided from relevance labels.</think>"
        opening = "" if request.prompt.rstrip().endswith("<think>") else "<think>"
        return f"{opening}{think}\n<answer>{answer}</answer>"


def judge_labels(evalset: Any) -> dict[str, dict[str, int]]:
    """An EvalSet's qrels keyed by query text, for `SimulatedJudge`.

    Queries sharing a text (e.g. Passage-n instances of one DL19 query) merge their labels; two
    different grades for one candidate of one text are an error.
    """
    labels: dict[str, dict[str, int]] = defaultdict(dict)
    for query in evalset.queries:
        merged = labels[query_key(query.query)]
        for docid, grade in query.qrels.items():
            if merged.setdefault(docid, grade) != grade:
                raise ValueError(f"{evalset.name}: query {query.qid} grades {docid!r} unlike a same-text query")
    return dict(labels)
