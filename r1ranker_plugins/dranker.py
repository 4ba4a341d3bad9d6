"""DRanker: one generation ranks the whole list, best first, one candidate per line.

The answer is repaired, never trusted: unknown and repeated entries are dropped and the
candidates the model left out are appended in first-stage order.
"""

from __future__ import annotations

from typing import Any

from .iranker import R1Prompting
from .parsing import parse_ranked_list
from .ranker import Ranker
from .steps import StepMachine, ask
from .types import Candidate, Request, TraceStep


class DRanker(R1Prompting, Ranker):
    """Direct ranker (R1-Ranker's DRanker); same options as `IRanker`."""

    strategy = "dranker"

    def __init__(
        self,
        model: str | None = None,
        backend: str = "transformers",
        task: str | None = None,
        *,
        scenario: str | None = None,
        item_type: str | None = None,
        system_verb: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(model, backend, task, **options)
        self._r1_setup(scenario, item_type, system_verb)

    def steps(
        self, query: Any, candidates: list[Candidate], texts: list[str], trace: list[TraceStep]
    ) -> StepMachine[list[int]]:
        labels = self._labels(texts)
        numbered = self.task == "passage"
        request = Request(
            prompt=self._r1_prompt("dranker", query, candidates, texts),
            max_tokens=self.max_new_tokens,
            temperature=self.temperature,
            stop=("</answer>",),
            meta={"kind": "order", "query": query, "ids": [c.id for c in candidates], "labels": labels},
        )
        [outcome] = yield from ask(
            [request],
            lambda answer: parse_ranked_list(answer, labels, numbered=numbered) or None,
            answer_tokens=8 * len(labels) + 16,
            label_start="passage " if numbered else "",
        )
        listed: list[int] = outcome.parsed or []
        missing = [i for i in range(len(candidates)) if i not in set(listed)]
        fallback = None
        if missing:
            fallback = f"{len(missing)} candidates not listed; appended in first-stage order"
        trace.append(
            TraceStep(
                request.prompt,
                outcome.completion,
                outcome.answer,
                "list" if listed else "none",
                fallback,
                outcome.forced,
                listed,
            )
        )
        return listed + missing
