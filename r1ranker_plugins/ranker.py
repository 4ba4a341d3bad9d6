"""What every ranker shares: options, input checks, depth, batching and the engine-error policy.

A ranker binds a strategy's step machine (`steps`) to an engine: it checks and cuts the input,
hands each query's machine a `QueryState`, and drives all machines together through the engine.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .checkpoint import PROMPT_VERSION, read_ranker_config
from .engines import Engine, EngineError, get_engine
from .prompts import cut_candidates
from .settings import RankerSettings, build, split_options
from .steps import QueryState, StepMachine, arun, gather, run
from .types import Candidate, Completion, Ranking, Request, TraceStep


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

    `Ranker(model, backend, task, **options)`: `options` are the strategy's settings (its
    `Settings` dataclass) and the backend's engine options (`engines.ENGINE_OPTIONS`); anything
    else is a ValueError naming the closest valid option. Settings a trained checkpoint names in
    its r1ranker.json are the defaults; explicit options win. With `engine=`, the ranker uses
    that engine (and takes no engine options).
    """

    strategy = "base"
    Settings: type[RankerSettings] = RankerSettings
    tasks: tuple[str, ...] = ("passage", "recommendation", "routing")

    def __init__(
        self,
        model: str | None = None,
        backend: str = "transformers",
        task: str | None = None,
        *,
        engine: Engine | None = None,
        **options: Any,
    ) -> None:
        if task is not None:
            options["task"] = task
        ranker_options, engine_options = split_options(
            self.Settings, None if engine else backend, options, who=self.strategy
        )
        # A trained checkpoint says which prompt it expects (r1ranker.json); explicit options win.
        self.checkpoint = read_ranker_config(model) if model is not None and engine is None else None
        if self.checkpoint and self.checkpoint["strategy"] != self.strategy:
            warnings.warn(
                f"{model!r} was trained as a {self.checkpoint['strategy']} ranker, not {self.strategy}",
                UserWarning,
                stacklevel=3,
            )
        where = f"{type(self).__name__}"
        self.settings = build(self.Settings, {**self.checkpoint_defaults(engine_options), **ranker_options}, where)
        if self.settings.task not in self.tasks:
            raise ValueError(f"{where} does not support task {self.settings.task!r}; expected one of {self.tasks}")
        if engine is None:
            if model is None:
                raise ValueError("give a model (hub id or local path) or an engine")
            engine = get_engine(model, backend, **engine_options)
        self.engine = engine

    def checkpoint_defaults(self, engine_options: dict[str, Any]) -> dict[str, Any]:
        """The settings the model's r1ranker.json names (task, prompt wording), for this strategy."""
        fields = self.Settings.__dataclass_fields__
        return {key: value for key, value in (self.checkpoint or {}).items() if key in fields}

    @property
    def label(self) -> str:
        """The strategy as reports name it (IRanker adds its mode)."""
        return self.strategy

    def record(self) -> dict[str, Any]:
        """What makes this ranker's rankings what they are, for run records and reports."""
        settings = dataclasses.asdict(self.settings)
        return {"strategy": self.label, **self.engine.describe(), "options": settings, "prompt_version": PROMPT_VERSION}

    # -- to implement ---------------------------------------------------------------------
    def steps(self, query: QueryState) -> StepMachine[list[int]]:
        """The strategy's step machine for one query; returns an order of `query.candidates`."""
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
        wave_size: int | None = None,
    ) -> list[Ranking]:
        """Rank many queries at once: every engine call carries the next step of each query.

        `on_result(i, ranking)` is called as soon as query `i` is done (to stream output).
        `wave_size`: rank the queries in waves of that many, one after the other, so that a long
        job saves results as it goes (every query of a wave finishes in about the same round);
        by default all go at once. `progress` shows a bar of the steps (model decisions) against
        an estimate, and of the queries done.
        """
        if len(queries) != len(candidate_lists):
            raise ValueError(f"{len(queries)} queries but {len(candidate_lists)} candidate lists")
        if wave_size is not None and wave_size < 1:
            raise ValueError(f"wave_size must be >= 1, got {wave_size}")
        jobs = [self._prepare(q, c) for q, c in zip(queries, candidate_lists, strict=True)]
        rankings: list[Ranking | None] = [None] * len(jobs)
        bar = _progress(sum(self.estimated_steps(job.head) for job in jobs), progress, self.label, len(jobs))

        def done(i: int, order: list[int] | None) -> None:
            rankings[i] = self._finish(jobs[i], order)
            bar.set_postfix_str(f"{sum(r is not None for r in rankings)}/{len(jobs)} queries", refresh=False)
            if on_result is not None:
                on_result(i, rankings[i])

        def generate(requests: list[Request]) -> list[Completion]:
            completions = self.engine.generate(requests)
            bar.update(sum(not request.forced for request in requests))
            return completions

        for i, job in enumerate(jobs):
            if job.machine is None:
                done(i, None)
        active = [i for i, job in enumerate(jobs) if job.machine is not None]
        size = wave_size or max(len(active), 1)
        try:
            for start in range(0, len(active), size):
                wave = active[start : start + size]
                try:
                    together = gather([jobs[i].machine for i in wave], lambda k, order, w=wave: done(w[k], order))
                    run(together, generate, self.settings.batch_size)
                except EngineError as error:
                    unfinished = [i for i in wave if rankings[i] is None]
                    self._degrade(error, [jobs[i] for i in unfinished])
                    for i in unfinished:
                        done(i, None)
        finally:
            bar.close()
        return rankings  # type: ignore[return-value]

    def estimated_steps(self, n: int) -> int:
        """About how many decisions ranking `n` candidates takes (for progress bars)."""
        return 1 if n > 1 else 0

    async def arank(self, query: Any, candidates: Sequence[Candidate | str]) -> Ranking:
        """Async rank; concurrent calls share engine batches through the engine's async path."""
        job = self._prepare(query, candidates)
        order = None
        if job.machine is not None:
            try:
                with self.engine.calling():
                    order = await arun(job.machine, self.engine.agenerate)
            except EngineError as error:
                self._degrade(error, [job])
        return self._finish(job, order)

    def first_requests(self, query: Any, candidates: Sequence[Candidate | str]) -> list[Request]:
        """The requests a query's first step sends, without running it (for prompt-level tools)."""
        job = self._prepare(query, candidates)
        return next(job.machine) if job.machine is not None else []

    # -- internals ------------------------------------------------------------------------
    def _prepare(self, query: Any, candidates: Sequence[Candidate | str]) -> _Job:
        self._check_query(query)
        items = as_candidates(candidates)
        depth = self.settings.depth
        head = len(items) if depth is None else min(depth, len(items))
        state = QueryState(query, [])
        machine = None
        if head > 1:  # cut once per query; the results keep the caller's candidates
            state = QueryState(self._truncate_query(query), cut_candidates(items[:head], self.settings.task, self._cut))
            machine = self.steps(state)
        return _Job(query, items, head, machine, state.trace)

    def _finish(self, job: _Job, order: list[int] | None) -> Ranking:
        ranking = job.finish(order)
        if ranking.trace:
            self.engine.record_answers(self.label, ranking.answers)
        return ranking

    def _cut(self, texts: list[str]) -> list[str]:
        return self.engine.truncate_many(texts, self.settings.max_candidate_tokens)

    def _check_query(self, query: Any) -> None:
        if self.settings.task == "recommendation":
            if isinstance(query, str) or not all(isinstance(item, str) for item in query):
                raise TypeError("a recommendation query is the user's history: a list of item texts")
        elif not isinstance(query, str):
            raise TypeError(f"query must be a string, got {type(query).__name__}")
        elif not query.strip():
            raise ValueError("query is empty")

    def _truncate_query(self, query: Any) -> Any:
        if self.settings.task == "recommendation":
            return self._cut(list(query))
        return self.engine.truncate(query, self.settings.max_query_tokens)

    def _degrade(self, error: EngineError, jobs: list[_Job]) -> None:
        if self.settings.on_engine_error == "raise":
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


def _progress(total: int, enabled: bool, label: str, queries: int):
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled or queries < 1, desc=f"{label} steps (estimated)", unit="step")


__all__ = ["Ranker", "as_candidates"]
