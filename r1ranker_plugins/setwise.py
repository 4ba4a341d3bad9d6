"""Rank-R1 setwise reranker: heapsort where each comparison picks the best of up to c+1 docs.

A c-ary max-heap over the first-stage top `depth`; the root is popped `k` times. Sift-downs
in disjoint subtrees are independent, so all nodes of one heap level are compared in one
engine batch while the heap is built (upstream runs one prompt at a time). An answer that
names no document keeps the parent, as upstream does, after one forced answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .checkpoint import read_ranker_config
from .parsing import parse_setwise_label
from .prompts import SETWISE_SYSTEM, ChatFormat, setwise_user
from .ranker import Ranker
from .settings import RankerSettings, option
from .steps import QueryState, StepMachine, ask, gather
from .types import Question, Request, TraceStep


@dataclass
class SetwiseSettings(RankerSettings):
    """Rank-R1 setwise options (a LoRA adapter such as `ielabgroup/Rank-R1-3B-v0.1` is the engine's `lora`)."""

    num_child: int = option(19, "heap arity c: c+1 documents per prompt", minimum=1)
    k: int = option(10, "how many top documents to sort; the rest keep first-stage order", minimum=1)
    label_colon: bool = option(False, "list documents as `[i]: text` instead of `[i] text`")


def setwise_steps(settings: SetwiseSettings, chat: ChatFormat, query: QueryState) -> StepMachine[list[int]]:
    """The top `k` by heapsort over the candidates, then the rest in first-stage order."""
    heap = list(range(len(query.candidates)))
    c = settings.num_child

    def compare(nodes: list[int]) -> StepMachine[int]:
        """Ask which of the documents at these heap nodes is most relevant."""
        docs = [heap[node] for node in nodes]
        labels = tuple(f"[{i}]" for i in range(1, len(docs) + 1))
        user = setwise_user(query.query, [query.candidates[d].text for d in docs], label_colon=settings.label_colon)
        request = Request(
            prompt=chat.prompt(user),
            max_tokens=settings.max_new_tokens,
            temperature=settings.temperature,
            stop=("</answer>",),
            question=Question("most", query.query, tuple(query.candidates[d].id for d in docs), labels),
        )
        [outcome] = yield from ask([request], lambda answer: parse_setwise_label(answer, len(docs)), label_start="[")
        best, fallback = outcome.parsed, None
        if best is None:
            best = 0
            fallback = "unparseable answer, also when forced; kept the parent (upstream behaviour)"
        match = "label" if fallback is None else "none"
        query.trace.append(
            TraceStep(request.prompt, outcome.completion, outcome.answer, match, fallback, outcome.forced, [docs[best]])
        )
        return nodes[best]

    def sift_down(node: int, size: int) -> StepMachine[None]:
        while c * node + 1 < size:
            children = list(range(c * node + 1, min(c * node + c + 1, size)))
            best = yield from compare([node, *children])
            if best == node:
                return
            heap[node], heap[best] = heap[best], heap[node]
            node = best

    n = len(heap)
    for level in reversed(_parent_levels(n, c)):
        yield from gather([sift_down(node, n) for node in level])
    top: list[int] = []
    for size in range(n - 1, 0, -1):
        heap[0], heap[size] = heap[size], heap[0]
        top.append(heap[size])
        if len(top) == settings.k:
            break
        yield from sift_down(0, size)
    if len(top) == n - 1:  # fully sorted: the last survivor is the least relevant
        top.append(heap[0])
    rest = sorted(set(range(n)) - set(top))
    return top + rest


def _parent_levels(n: int, c: int) -> list[list[int]]:
    """Internal heap nodes grouped by depth, root level first."""
    levels, first = [], 0
    width = 1
    while c * first + 1 < n:
        last = min(first + width, n)
        levels.append([node for node in range(first, last) if c * node + 1 < n])
        first, width = last, width * c
    return levels


class SetwiseRanker(Ranker):
    """Setwise heapsort reranker with the exact Rank-R1 prompt; options: `SetwiseSettings`.

    With a LoRA adapter (`lora=...`) whose r1ranker.json names its label format, that format
    is the default.
    """

    strategy = "setwise"
    Settings = SetwiseSettings
    tasks = ("passage",)
    _chat: ChatFormat | None = None  # the model's chat template, resolved at the first query

    def checkpoint_defaults(self, engine_options: dict[str, Any]) -> dict[str, Any]:
        adapter = read_ranker_config(engine_options["lora"]) if engine_options.get("lora") else None
        defaults = super().checkpoint_defaults(engine_options)
        if adapter and "label_colon" in adapter:  # the adapter's own label format comes first
            defaults["label_colon"] = adapter["label_colon"]
        return defaults

    def estimated_steps(self, n: int) -> int:
        """One comparison per internal heap node to build it, then about one per level for each pop."""
        levels = _parent_levels(n, self.settings.num_child)
        return sum(len(level) for level in levels) + min(self.settings.k, max(n - 1, 0)) * max(len(levels), 1)

    def steps(self, query: QueryState) -> StepMachine[list[int]]:
        if self._chat is None:
            self._chat = ChatFormat.resolve(self.engine.chat_prompt, SETWISE_SYSTEM)
        return setwise_steps(self.settings, self._chat, query)
