"""Step-machine plumbing: strategies are generators that yield prompts and receive completions.

Rules (every strategy's machine follows them; the drivers below rely on them):

1. A machine yields a non-empty list of `Request`s and is sent exactly one `Completion` per
   request, in order; it finally returns its result (for a ranking: an order of its candidates).
2. A machine does no I/O: it never calls an engine or a tokenizer. Everything it needs (texts
   cut to their budgets, the chat format of prompts) is resolved before it starts and handed to
   it in a `QueryState`, so it can be driven by hand with `next`/`send`.
3. Whatever the completions say, the machine returns: unusable answers are forced once (`ask`),
   then fall back, and every step appends one `TraceStep` to `QueryState.trace`.

Because machines never call the engine, one driver can put the pending steps of many machines
(queries, or independent comparisons of one query) into one engine batch, synchronously (`run`)
or asynchronously (`arun`).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from .parsing import extract_answer, forced_answer_prefix
from .types import Candidate, Completion, Request, TraceStep

T = TypeVar("T")
StepMachine = Generator[list[Request], list[Completion], T]


@dataclass
class QueryState:
    """One query as a strategy's machine sees it: the query and the candidates as prompts show
    them (texts already cut to their budgets), and the trace that every step appends to."""

    query: Any
    candidates: list[Candidate]
    trace: list[TraceStep] = field(default_factory=list)

    @property
    def texts(self) -> list[str]:
        return [candidate.text for candidate in self.candidates]


@dataclass(frozen=True)
class Outcome:
    """The model's reply to one request, with the parsed decision (None if unusable)."""

    completion: str
    answer: str | None
    parsed: Any
    forced: bool


def ask(
    requests: Sequence[Request],
    parse: Callable[[str], Any],
    *,
    answer_tokens: int = 32,
    label_start: str = "",
) -> StepMachine[list[Outcome]]:
    """Ask once; where no usable answer came back, force one with a short second generation.

    The forced prompt is the original prompt, the model's own reasoning, a closed think block
    and an open `<answer>` tag, so even a model cut off mid-thought commits to an answer. When
    the engine reported the tokens of a cut-off completion, the forced prompt starts with them.
    `label_start` (e.g. `passage ` or `[`) opens the answer with what every label starts with,
    so the model only has to complete one: small models otherwise answer in prose.
    """
    completions = yield list(requests)
    outcomes = []
    for completion in completions:
        answer = extract_answer(completion.text)
        parsed = parse(answer) if answer is not None else None
        outcomes.append(Outcome(completion.text, answer, parsed, forced=False))
    retry = [i for i, outcome in enumerate(outcomes) if outcome.parsed is None]
    if not retry:
        return outcomes
    forced_requests = [
        replace(
            _continuation(requests[i], completions[i], forced_answer_prefix(outcomes[i].completion) + label_start),
            max_tokens=answer_tokens,
            temperature=0.0,
            stop=("</answer>",),
            forced=True,
            label_start=label_start,
        )
        for i in retry
    ]
    forced = yield forced_requests
    for i, completion in zip(retry, forced, strict=True):
        answer = (label_start + completion.text).split("</answer>", 1)[0].strip()
        text = forced_answer_prefix(outcomes[i].completion) + label_start + completion.text
        outcomes[i] = Outcome(text, answer, parse(answer) if answer else None, forced=True)
    return outcomes


def _continuation(request: Request, completion: Completion, text: str) -> Request:
    """`request` with `text` appended; its token prefix is the prompt and completion so far
    when `text` starts with the whole completion and the engine reported their tokens."""
    request = replace(request, prompt=request.prompt + text)
    if completion.sequence_ids and text.startswith(completion.text):
        request = replace(
            request,
            prefix_ids=completion.sequence_ids,
            prefix_chars=len(request.prompt) - len(text) + len(completion.text),
        )
    return request


def gather(
    machines: Sequence[StepMachine[T]],
    on_done: Callable[[int, T], None] | None = None,
) -> StepMachine[list[T]]:
    """Run machines side by side: each round yields the pending requests of all of them."""
    results: list[Any] = [None] * len(machines)
    pending: dict[int, list[Request]] = {}

    def advance(i: int, step: Callable[[], list[Request]]) -> None:
        try:
            requests = step()
        except StopIteration as stop:
            results[i] = stop.value
            if on_done is not None:
                on_done(i, stop.value)
            return
        if not requests:
            raise RuntimeError("a step machine yielded no requests")
        pending[i] = requests

    for i, machine in enumerate(machines):
        advance(i, machine.__next__)
    while pending:
        current = dict(pending)
        pending.clear()
        completions = yield [r for requests in current.values() for r in requests]
        start = 0
        for i, requests in current.items():
            part = completions[start : start + len(requests)]
            start += len(requests)
            advance(i, lambda m=machines[i], p=part: m.send(p))
    return results


def run(
    machine: StepMachine[T],
    generate: Callable[[list[Request]], list[Completion]],
    batch_size: int,
) -> T:
    """Drive a machine to its result; each round goes to the engine in `batch_size` chunks."""
    try:
        requests = next(machine)
        while True:
            completions: list[Completion] = []
            for start in range(0, len(requests), batch_size):
                completions += generate(requests[start : start + batch_size])
            requests = machine.send(completions)
    except StopIteration as stop:
        return stop.value


async def arun(machine: StepMachine[T], agenerate) -> T:
    """Async `run`: each round awaits the engine's async path (shared batches)."""
    try:
        requests = next(machine)
        while True:
            requests = machine.send(await agenerate(requests))
    except StopIteration as stop:
        return stop.value
