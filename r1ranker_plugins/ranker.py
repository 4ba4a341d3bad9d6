"""What every ranker shares: input checks, budgets, depth, batching and error policy."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .checkpoint import read_ranker_config
from .engines import Engine, EngineError, get_engine
from .prompts import TASKS, cut_candidates
from .steps import StepMachine, arun, gather, run
from .types import Candidate, Ranking, TraceStep

ENGINE_ERROR_POLICIES = ("raise", "first-stage")


def as_candidates(items: Iterable[Candidate | str | dict]) -> list[Candidate]:
    """Accept strings, `Candidate`s or `{"id", "text", ...}` dicts; reject what cannot be ranked."""
    if isinstance(items, str | bytes):
        raise TypeError("candidates must be a list of texts or Candidates, not a single string")
    out = []
    for position, item in enumerate(items):
        if isinstance(item, Candidate):
            candidate = item
        elif isinstance(item, str):
            candidate = Candidate(id=str(position), text=item)
        elif isinstance(item, dict) and "text" in item:
            extra = {k: v for k, v in item.items() if k not in {"id", "text", "metadata", "score"}}
            candidate = Candidate(
                id=str(item.get("id", position)),
                text=item["text"],
                metadata={**item.get("metadata", {}), **extra},
                score=item.get("score"),
            )
        else:
            raise TypeError(f"candidate {position} is a {type(item).__name__}, not a text")
        if not isinstance(candidate.text, str):
            raise TypeError(
                f"candidate {position} ({candidate.id!r}) has text of type "
                f"{type(candidate.text).__name__}; expected str"
            )
        out.append(candidate)
    return out


class Ranker:
    """Base of IRanker, DRanker and SetwiseRanker.

    Subclasses implement `steps`, a step machine over the first `depth` candidates that
    returns their order; everything below `depth` keeps its first-stage order.
    """

    strategy = "base"
    tasks: tuple[str, ...] = TASKS

    def __init__(
        self,
        model: str | None = None,
        backend: str = "transformers",
        task: str | None = None,
        *,
        engine: Engine | None = None,
        depth: int | None = None,
        max_new_tokens: int = 1024,
        temperature: float = 0.0,
        max_candidate_tokens: int = 256,
        max_query_tokens: int = 128,
        batch_size: int = 1024,
        on_engine_error: str = "raise",
        **engine_options: Any,
    ) -> None:
        # A trained checkpoint says which prompt it expects (r1ranker.json); explicit arguments win.
        self.checkpoint = read_ranker_config(model) if model is not None and engine is None else None
        if self.checkpoint and self.checkpoint["strategy"] != self.strategy:
            warnings.warn(
                f"{model!r} was trained as a {self.checkpoint['strategy']} ranker, not {self.strategy}",
                UserWarning,
                stacklevel=3,
            )
        task = task or self.checked("task", "passage")
        if task not in self.tasks:
            raise ValueError(f"{type(self).__name__} does not support task {task!r}; expected one of {self.tasks}")
        if depth is not None and depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        if max_new_tokens < 1 or batch_size < 1:
            raise ValueError("max_new_tokens and batch_size must be >= 1")
        if on_engine_error not in ENGINE_ERROR_POLICIES:
            raise ValueError(f"on_engine_error must be one of {ENGINE_ERROR_POLICIES}, got {on_engine_error!r}")
        if engine is None:
            if model is None:
                raise ValueError("give a model (hub id or local path) or an engine")
            engine = get_engine(model, backend, **engine_options)
        self.engine = engine
        self.task = task
        self.depth = depth
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.max_candidate_tokens = max_candidate_tokens
        self.max_query_tokens = max_query_tokens
        self.batch_size = batch_size
        self.on_engine_error = on_engine_error

    def checked(self, key: str, default: Any) -> Any:
        """A prompt setting from the checkpoint's r1ranker.json, else `default`."""
        return (self.checkpoint or {}).get(key, default)

    # -- to implement ---------------------------------------------------------------------
    def steps(
        self, query: Any, candidates: list[Candidate], texts: list[str], trace: list[TraceStep]
    ) -> StepMachine[list[int]]:
        raise NotImplementedError

    # -- public ---------------------------------------------------------------------------
    def rank(self, query: Any, candidates: Sequence[Candidate | str]) -> Ranking:
        return self.rank_many([query], [candidates])[0]

    def rank_many(
        self,
        queries: Sequence[Any],
        candidate_lists: Sequence[Sequence[Candidate | str]],
        *,
        progress: bool = False,
        on_result: Callable[[int, Ranking], None] | None = None,
    ) -> list[Ranking]:
        """Rank many queries at once: every engine call carries the next step of each query.

        `on_result(i, ranking)` is called as soon as query `i` is done (to stream output).
        """
        if len(queries) != len(candidate_lists):
            raise ValueError(f"{len(queries)} queries but {len(candidate_lists)} candidate lists")
        jobs = [self._prepare(q, c) for q, c in zip(queries, candidate_lists, strict=True)]
        rankings: list[Ranking | None] = [None] * len(jobs)
        bar = _progress(len(jobs), progress, self.label)

        def done(i: int, order: list[int] | None) -> None:
            rankings[i] = self._finish(jobs[i], order)
            bar.update(1)
            if on_result is not None:
                on_result(i, rankings[i])

        active = [i for i, job in enumerate(jobs) if job.machine is not None]
        for i in sorted(set(range(len(jobs))) - set(active)):
            done(i, None)
        try:
            machines = [jobs[i].machine for i in active]
            run(gather(machines, lambda k, order: done(active[k], order)), self.engine.generate, self.batch_size)
        except EngineError as error:
            unfinished = [i for i in active if rankings[i] is None]
            self._degrade(error, [jobs[i] for i in unfinished])
            for i in unfinished:
                done(i, None)
        finally:
            bar.close()
        return rankings  # type: ignore[return-value]

    async def arank(self, query: Any, candidates: Sequence[Candidate | str]) -> Ranking:
        """Async rank; concurrent calls share engine batches through the engine's async path."""
        job = self._prepare(query, candidates)
        order = None
        if job.machine is not None:
            try:
                order = await arun(job.machine, self.engine.agenerate)
            except EngineError as error:
                self._degrade(error, [job])
        return self._finish(job, order)

    @property
    def label(self) -> str:
        """The strategy as reports name it (IRanker adds its mode)."""
        return self.strategy

    # -- internals ------------------------------------------------------------------------
    def _prepare(self, query: Any, candidates: Sequence[Candidate | str]) -> _Job:
        self._check_query(query)
        items = as_candidates(candidates)
        head = len(items) if self.depth is None else min(self.depth, len(items))
        trace: list[TraceStep] = []
        machine = None
        if head > 1:  # cut once per query; the results keep the caller's candidates
            shown = cut_candidates(items[:head], self.task, self._cut)
            machine = self.steps(self._truncate_query(query), shown, [c.text for c in shown], trace)
        return _Job(query, items, head, machine, trace)

    def _finish(self, job: _Job, order: list[int] | None) -> Ranking:
        ranking = job.finish(order)
        if ranking.trace:
            self.engine.record_answers(self.label, ranking.answers)
        return ranking

    def _cut(self, texts: list[str]) -> list[str]:
        return self.engine.truncate_many(texts, self.max_candidate_tokens)

    def _check_query(self, query: Any) -> None:
        if self.task == "recommendation":
            if isinstance(query, str) or not all(isinstance(item, str) for item in query):
                raise TypeError("a recommendation query is the user's history: a list of item texts")
        elif not isinstance(query, str):
            raise TypeError(f"query must be a string, got {type(query).__name__}")
        elif not query.strip():
            raise ValueError("query is empty")

    def _truncate_query(self, query: Any) -> Any:
        if self.task == "recommendation":
            return self._cut(list(query))
        return self.engine.truncate(query, self.max_query_tokens)

    def _degrade(self, error: EngineError, jobs: list[_Job]) -> None:
        if self.on_engine_error == "raise":
            raise error
        warnings.warn(
            f"engine failed ({error}); {len(jobs)} queries keep their first-stage order",
            RuntimeWarning,
            stacklevel=3,
        )
        for job in jobs:
            job.trace.append(
                TraceStep(
                    prompt="",
                    completion="",
                    answer=None,
                    match="none",
                    fallback=f"engine error, first-stage order kept: {error}",
                )
            )


class _Job:
    """One query in flight: its candidates, its step machine and its trace."""

    def __init__(self, query: Any, items: list[Candidate], head: int, machine, trace) -> None:
        self.query = query
        self.items = items
        self.head = head
        self.machine = machine
        self.trace = trace

    def finish(self, order: list[int] | None) -> Ranking:
        if order is None or sorted(order) != list(range(self.head)):
            if order is not None:  # a strategy bug must never lose or duplicate a candidate
                raise AssertionError(f"strategy returned {order!r}, not a permutation of {self.head}")
            order = list(range(self.head))
        return Ranking(self.items, order + list(range(self.head, len(self.items))), self.trace, self.query)


def _progress(total: int, enabled: bool, label: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled or total <= 1, desc=f"{label} queries", unit="q")


def validate_choice(name: str, value: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; expected one of {tuple(choices)}")
    return value


__all__ = ["ENGINE_ERROR_POLICIES", "Ranker", "as_candidates", "validate_choice"]
