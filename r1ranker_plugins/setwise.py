"""Rank-R1 setwise reranker: heapsort where each comparison picks the best of up to c+1 docs.

A c-ary max-heap over the first-stage top `depth`; the root is popped `k` times. Sift-downs
in disjoint subtrees are independent, so all nodes of one heap level are compared in one
engine batch while the heap is built (upstream runs one prompt at a time).
"""

from __future__ import annotations

from typing import Any

from .checkpoint import read_ranker_config
from .parsing import parse_setwise_label
from .prompts import setwise_messages
from .ranker import Ranker
from .steps import StepMachine, ask, gather
from .types import Candidate, Request, TraceStep


class SetwiseRanker(Ranker):
    """Setwise heapsort reranker with the exact Rank-R1 prompt.

    Args beyond `Ranker`'s: `num_child` (c; c+1 documents per prompt), `k` (how many top
    documents to sort; the rest keep first-stage order), `lora` (adapter hub id or path,
    e.g. `ielabgroup/Rank-R1-3B-v0.1`), `label_colon` (`[i]: text` instead of `[i] text`).
    """

    strategy = "setwise"
    tasks = ("passage",)

    def __init__(
        self,
        model: str | None = None,
        backend: str = "transformers",
        task: str | None = None,
        *,
        num_child: int = 19,
        k: int = 10,
        lora: str | None = None,
        label_colon: bool | None = None,
        **options: Any,
    ) -> None:
        if num_child < 1:
            raise ValueError(f"num_child must be >= 1, got {num_child}")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if lora is not None:
            options["lora"] = lora
        super().__init__(model, backend, task, **options)
        self.num_child = num_child
        self.k = k
        adapter = read_ranker_config(lora) if lora is not None else None
        if label_colon is None:
            label_colon = bool((adapter or {}).get("label_colon", self.checked("label_colon", False)))
        self.label_colon = label_colon

    def steps(
        self, query: Any, candidates: list[Candidate], texts: list[str], trace: list[TraceStep]
    ) -> StepMachine[list[int]]:
        heap = list(range(len(candidates)))
        c = self.num_child

        def compare(nodes: list[int]) -> StepMachine[int]:
            """Ask which of the documents at these heap nodes is most relevant."""
            docs = [heap[node] for node in nodes]
            prompt = self.engine.chat_prompt(
                setwise_messages(query, [texts[d] for d in docs], label_colon=self.label_colon)
            )
            request = Request(
                prompt=prompt,
                max_tokens=self.max_new_tokens,
                temperature=self.temperature,
                stop=("</answer>",),
                meta={
                    "kind": "most",
                    "query": query,
                    "ids": [candidates[d].id for d in docs],
                    "labels": [f"[{i}]" for i in range(1, len(docs) + 1)],
                },
            )
            [outcome] = yield from ask(
                [request], lambda answer: parse_setwise_label(answer, len(docs)), label_start="["
            )
            best, fallback = outcome.parsed, None
            if best is None:
                best = 0
                fallback = "unparseable answer, also when forced; kept the parent (upstream behaviour)"
            trace.append(
                TraceStep(
                    prompt,
                    outcome.completion,
                    outcome.answer,
                    "label" if fallback is None else "none",
                    fallback,
                    outcome.forced,
                    [docs[best]],
                )
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
            if len(top) == self.k:
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
