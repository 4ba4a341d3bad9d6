"""IRanker: iterative elimination. Each step the model names the least relevant candidate.

The final order is the survivor, then the eliminated candidates in reverse order of
elimination. Every step removes exactly one candidate, whatever the model writes.
"""

from __future__ import annotations

from typing import Any

from .parsing import match_label
from .prompts import ITEM_TYPES, SCENARIOS, passage_label, r1_chat, r1_problem
from .ranker import Ranker, validate_choice
from .steps import StepMachine, ask
from .types import Candidate, Request, TraceStep


class R1Prompting:
    """R1-Ranker prompt settings shared by IRanker and DRanker."""

    def _r1_setup(self, scenario: str, item_type: str, system_verb: str) -> None:
        self.scenario = validate_choice("scenario", scenario, SCENARIOS)
        self.item_type = validate_choice("item_type", item_type, ITEM_TYPES)
        self.system_verb = validate_choice("system_verb", system_verb, ("thinks", "think"))

    def _r1_prompt(self, kind: str, query: Any, candidates: list[Candidate], texts: list[str]) -> str:
        problem = r1_problem(
            kind,
            self.task,
            query,
            texts,
            descriptions=[str(c.metadata.get("description", "")) for c in candidates],
            scenario=self.scenario,
            item_type=self.item_type,
        )
        return r1_chat(problem, system_verb=self.system_verb)

    def _labels(self, texts: list[str]) -> list[str]:
        """What the model answers with: `passage i` for passages, the full name otherwise."""
        if self.task == "passage":
            return [passage_label(i) for i in range(len(texts))]
        return list(texts)


class IRanker(R1Prompting, Ranker):
    """Iterative elimination ranker (R1-Ranker's IRanker).

    Args beyond `Ranker`'s: `scenario` (routing: performance | balance | cost), `item_type`
    (recommendation: movie | item), `system_verb` ("thinks" as in training, "think" as in
    the rec/routing evaluators).
    """

    strategy = "iranker"

    def __init__(
        self,
        model: str | None = None,
        backend: str = "transformers",
        task: str = "passage",
        *,
        scenario: str = "performance",
        item_type: str = "movie",
        system_verb: str = "thinks",
        **options: Any,
    ) -> None:
        super().__init__(model, backend, task, **options)
        self._r1_setup(scenario, item_type, system_verb)

    def steps(
        self, query: Any, candidates: list[Candidate], texts: list[str], trace: list[TraceStep]
    ) -> StepMachine[list[int]]:
        remaining = list(range(len(candidates)))
        eliminated: list[int] = []
        numbered = self.task == "passage"
        while len(remaining) > 1:
            shown = [texts[i] for i in remaining]
            labels = self._labels(shown)
            request = Request(
                prompt=self._r1_prompt("iranker", query, [candidates[i] for i in remaining], shown),
                max_tokens=self.max_new_tokens,
                temperature=self.temperature,
                stop=("</answer>",),
                meta={"kind": "least", "query": query, "ids": [candidates[i].id for i in remaining], "labels": labels},
            )
            [outcome] = yield from ask(
                [request], lambda answer, labels=labels: match_label(answer, labels, numbered=numbered)
            )
            if outcome.parsed is not None:
                out, how, fallback = remaining[outcome.parsed.index], outcome.parsed.how, None
            else:
                out, how = remaining[-1], "none"
                fallback = "no candidate matched the answer; eliminated the last in first-stage order"
            trace.append(
                TraceStep(request.prompt, outcome.completion, outcome.answer, how, fallback, outcome.forced, [out])
            )
            eliminated.append(out)
            remaining.remove(out)
        return remaining + eliminated[::-1]
