"""Small value types shared by rankers, engines and adapters."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Candidate:
    """One item to rank: a passage, a recommended item or a candidate LLM."""

    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    score: float | None = None


ANSWER_KINDS = ("own", "forced", "fallback")


@dataclass
class TraceStep:
    """What happened in one model call, so a ranking can be audited afterwards.

    Every step is decided one of three ways (`kind`): by the model's own answer, by a forced
    short answer after the reasoning ran out or held no usable answer, or by a fallback (in
    whole or in part) when neither answer could be used.
    """

    prompt: str
    completion: str
    answer: str | None
    match: str  # exact | normalised | fuzzy | label | list | none
    fallback: str | None = None  # why and how the step fell back, if it did
    forced: bool = False  # the answer came from a forced short second generation
    chosen: list[int] = field(default_factory=list)  # input positions the step decided on

    @property
    def kind(self) -> str:
        """`own`, `forced` or `fallback` (see the class docstring)."""
        if self.fallback is not None:
            return "fallback"
        return "forced" if self.forced else "own"


@dataclass
class Ranking:
    """A ranked view of the caller's candidates; `order` is always a permutation."""

    candidates: list[Candidate]
    order: list[int]
    trace: list[TraceStep] = field(default_factory=list)
    query: Any = None

    @property
    def ranked(self) -> list[Candidate]:
        return [self.candidates[i] for i in self.order]

    @property
    def scores(self) -> list[float]:
        """Strictly decreasing scores (n, n-1, ..., 1) so TREC tools keep our order."""
        n = len(self.order)
        return [float(n - rank) for rank in range(n)]

    @property
    def fallbacks(self) -> int:
        return sum(step.fallback is not None for step in self.trace)

    @property
    def answers(self) -> dict[str, int]:
        """How many steps were decided by the model's own answer, a forced one, or a fallback."""
        counts = dict.fromkeys(ANSWER_KINDS, 0)
        for step in self.trace:
            counts[step.kind] += 1
        return counts


QUESTION_KINDS = ("least", "most", "order")


@dataclass(frozen=True)
class Question:
    """What a request asks, in structured form: which candidates, under which answer labels.

    `kind` is "least" (name the `count` least relevant), "most" (name the most relevant) or
    "order" (list all, best first). A simulated judge answers from this, never from the prompt.
    """

    kind: str
    query: Any = field(compare=False)  # the query text, or a recommendation history
    ids: tuple[str, ...]
    labels: tuple[str, ...]
    count: int = 1


@dataclass(frozen=True)
class Request:
    """One prompt for the engine, with what the ranker asked in it.

    A `forced` request continues an earlier one whose reasoning gave no usable answer: its
    prompt is that request's prompt, the model's reasoning, a closed think block and an opened
    `<answer>`, followed by `label_start` (what every answer label starts with, e.g. `passage `).

    `prefix_ids` are the tokens of `prompt[:prefix_chars]` as the model last saw and wrote them
    (a prompt and its cut-off completion; special tokens the model wrote are kept, while the
    text, decoded without them, omits them). Engines that take token ids send them plus the
    encoding of the rest, so a continuation reuses the cached prefix: re-encoding generated
    text can split it into different tokens, which the prefix cache would not recognise.
    """

    prompt: str
    max_tokens: int
    temperature: float = 0.0
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False  # benchmarks: every request generates exactly max_tokens
    question: Question | None = field(default=None, compare=False)
    forced: bool = False
    label_start: str = ""
    prefix_ids: tuple[int, ...] = ()
    prefix_chars: int = 0


@dataclass(frozen=True)
class Completion:
    """What the engine wrote for one request.

    `sequence_ids` (prompt and completion tokens) is set by engines that know them, for a
    completion cut off by `max_tokens`: the one a forced answer continues.
    """

    text: str
    finish_reason: str  # "stop" | "length"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    sequence_ids: tuple[int, ...] = ()
