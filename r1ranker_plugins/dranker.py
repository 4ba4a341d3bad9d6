"""DRanker: one generation ranks the whole list, best first, one candidate per line.

The answer is repaired, never trusted: unknown and repeated entries are dropped and the
candidates the model left out are appended in first-stage order.
"""

from __future__ import annotations

from dataclasses import dataclass

from .iranker import R1Settings
from .parsing import parse_ranked_list
from .prompts import answer_labels
from .ranker import Ranker
from .steps import QueryState, StepMachine, ask
from .types import Question, Request, TraceStep


@dataclass
class DRankerSettings(R1Settings):
    """DRanker's options: the common ones and R1-Ranker's prompt settings."""


def dranker_steps(settings: DRankerSettings, query: QueryState) -> StepMachine[list[int]]:
    """One ask for the whole order; what the answer leaves out follows in first-stage order."""
    everyone = list(range(len(query.candidates)))
    labels = answer_labels(settings.task, query.texts)
    numbered = settings.task == "passage"
    request = Request(
        prompt=settings.prompt("dranker", query, everyone),
        max_tokens=settings.max_new_tokens,
        temperature=settings.temperature,
        stop=("</answer>",),
        question=Question("order", query.query, tuple(c.id for c in query.candidates), tuple(labels)),
    )
    [outcome] = yield from ask(
        [request],
        lambda answer: parse_ranked_list(answer, labels, numbered=numbered) or None,
        answer_tokens=8 * len(labels) + 16,
        label_start="passage " if numbered else "",
    )
    listed: list[int] = outcome.parsed or []
    missing = [i for i in everyone if i not in set(listed)]
    fallback = f"{len(missing)} candidates not listed; appended in first-stage order" if missing else None
    match = "list" if listed else "none"
    query.trace.append(
        TraceStep(request.prompt, outcome.completion, outcome.answer, match, fallback, outcome.forced, listed)
    )
    return listed + missing


class DRanker(Ranker):
    """Direct ranker (R1-Ranker's DRanker); options: `DRankerSettings`."""

    strategy = "dranker"
    Settings = DRankerSettings

    def steps(self, query: QueryState) -> StepMachine[list[int]]:
        return dranker_steps(self.settings, query)
