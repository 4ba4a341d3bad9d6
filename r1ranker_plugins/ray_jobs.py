"""Reranking on a Ray cluster: replicas of the ranker, one engine each, fed batches of queries.

The batch path beyond one machine (`r1ranker rerank --ray`, `rank_on_ray`). Each replica is a Ray
actor that builds the ranker once (one engine: in-process vLLM with its own tensor parallelism, or
an OpenAI-compatible client towards a server) and runs `rank_many` over each batch of queries that
Ray's `ActorPool` hands it, so the queries of a batch still share engine calls. Results come back
to the driver, the only writer, batch by batch as they finish.

Failures are left to Ray, configured rather than reimplemented: a replica whose process dies is
restarted (`max_restarts`) and the batch it held runs again (`max_task_retries`); the driver gets
each batch's result once. A query whose engine fails follows `on_engine_error` inside its replica,
as in one process. Importing this module does not import Ray (the `ray` extra).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any

from .engines.base import EngineError, answer_rates, first_line
from .runs import QueryRun, read_rankgpt_json
from .types import Candidate, Ranking

QUERIES_PER_BATCH = 32
MAX_RESTARTS = 3
INSTALL = 'pip install "r1ranker-plugins[ray]"'


def add_ray_flags(parser: argparse.ArgumentParser) -> None:
    """The flags of `r1ranker rerank --ray`."""
    group = parser.add_argument_group("Ray (the ray extra): rank on a cluster, one engine per replica")
    group.add_argument("--ray", action="store_true", help="rank on a Ray cluster with --replicas engines")
    group.add_argument(
        "--ray-address",
        help="the cluster: auto (the one `ray start` runs on this machine), HOST:PORT, or ray://HOST:10001 "
        "(Ray Client); default: $RAY_ADDRESS, else a local cluster on this machine (loopback) for this job",
    )
    group.add_argument("--replicas", type=int, default=1, help="engines, one Ray actor each (default: 1)")
    group.add_argument(
        "--cpus-per-replica",
        type=float,
        default=1.0,
        help="CPUs each replica reserves, and its OpenMP threads (default: 1)",
    )
    group.add_argument(
        "--gpus-per-replica",
        type=float,
        default=0.0,
        help="GPUs each replica reserves: the vLLM --tensor-parallel-size, or a fraction to share a GPU (default: 0)",
    )
    group.add_argument(
        "--queries-per-batch",
        type=int,
        default=QUERIES_PER_BATCH,
        help="queries a replica ranks together (one rank_many); each batch is written when it finishes, "
        f"so an interruption loses at most one batch per replica (default: {QUERIES_PER_BATCH})",
    )


def rerank_on_ray(
    queries: list[QueryRun],
    options: dict[str, Any],
    args: argparse.Namespace,
    write: Callable[[str, Ranking], None],
) -> dict[str, Any]:
    """`r1ranker rerank --ray`: rank `queries` on replicas, `write` each as it arrives; the job's summary."""
    _, summary = rank_on_ray(
        queries,
        options,
        replicas=args.replicas,
        cpus_per_replica=args.cpus_per_replica,
        gpus_per_replica=args.gpus_per_replica,
        queries_per_batch=args.queries_per_batch,
        address=args.ray_address,
        on_result=write,
        trace=bool(args.trace),
        progress=True,
    )
    return summary


def rank_on_ray(
    queries: Iterable[QueryRun] | str | Path | Any,
    options: dict[str, Any],
    *,
    replicas: int = 1,
    cpus_per_replica: float = 1.0,
    gpus_per_replica: float = 0.0,
    queries_per_batch: int = QUERIES_PER_BATCH,
    address: str | None = None,
    on_result: Callable[[str, Ranking], None] | None = None,
    trace: bool = True,
    progress: bool = False,
    max_restarts: int = MAX_RESTARTS,
    replica_options: Callable[[int], dict[str, Any]] | None = None,
) -> tuple[dict[str, Ranking], dict[str, Any]]:
    """Rank queries on `replicas` Ray actors, each holding `make_ranker(**options)`; (rankings, summary).

    `queries`: `QueryRun`s, a RankGPT/rank_llm JSON run file, or a Ray Dataset with rows
    `{"qid", "query", "candidates": [{"id", "text"}, ...]}` (read as it streams, batch by batch).
    `on_result(qid, ranking)` is called in this process as each query arrives; without it the
    rankings are returned by qid (with it, none are kept: a job of millions streams to its writer).
    `trace=False` sends no steps back (their prompts are most of a result's size).
    `address`: see `--ray-address`; a Ray already initialised in this process is used as it is.
    A replica is restarted, and its batch redone, up to `max_restarts` times. `replica_options(i)`:
    more Ray actor options for replica i (a `runtime_env`, custom resources, a scheduling strategy).
    The summary: queries/s per replica and for the job, restarts, and the engines' stats summed.
    """
    if replicas < 1 or queries_per_batch < 1:
        raise ValueError(f"--replicas and --queries-per-batch must be >= 1, got {replicas} and {queries_per_batch}")
    tensor_parallel = int(options.get("tensor_parallel_size") or 1)
    if 0 < gpus_per_replica < tensor_parallel:
        raise ValueError(f"tensor_parallel_size {tensor_parallel} needs --gpus-per-replica {tensor_parallel}")
    batches = _batches(queries, queries_per_batch)
    if batches.total == 0:  # e.g. a resumed run that is complete: no cluster to start
        return {}, {"replicas": 0, "ranked": 0}
    ray = _import_ray(local=not (address or os.environ.get("RAY_ADDRESS")))
    rankings: dict[str, Ranking] = {}
    keep = on_result or rankings.__setitem__
    started_here = _connect(ray, address)
    actors: list[Any] = []
    try:
        if started_here:
            _check_fits(ray, replicas, cpus_per_replica, gpus_per_replica)
        begin = time.perf_counter()
        remote = ray.remote(Replica)
        for index in range(replicas):
            extra = replica_options(index) if replica_options else {}
            actors.append(
                remote.options(
                    num_cpus=cpus_per_replica,
                    num_gpus=gpus_per_replica,
                    max_restarts=max_restarts,
                    max_task_retries=max_restarts,
                    **extra,
                ).remote(index, options)
            )
        if progress:
            print(f"starting {replicas} replicas of {options.get('model')}...", file=sys.stderr, flush=True)
        pids = [{pid} for pid in _get(ray, [actor.ready.remote() for actor in actors], max_restarts)]
        ready = time.perf_counter()
        counts = _run(ray, actors, batches, keep, trace, progress, pids, max_restarts)
        seconds = time.perf_counter() - ready
        finals = _get(ray, [actor.stats.remote() for actor in actors], max_restarts)
    finally:
        for actor in actors:
            ray.kill(actor)
        if started_here:
            ray.shutdown()
    return rankings, _summary(counts, pids, finals, startup=ready - begin, seconds=seconds)


def _summary(
    counts: dict[int, tuple[int, float]],
    pids: list[set[int]],
    finals: list[tuple[int, dict[str, Any]]],
    *,
    startup: float,
    seconds: float,
) -> dict[str, Any]:
    """The job in figures: queries/s for the job (ranking alone) and per replica (its busy time),
    each replica's restarts (the process ids it ranked in, less one), the engines' stats summed."""
    per_replica = []
    for index, (pid, _) in enumerate(finals):
        done, busy = counts[index]
        per_replica.append(
            {
                "replica": index,
                "queries": done,
                "busy_seconds": round(busy, 3),
                "queries_per_s": round(done / busy, 3) if busy else 0.0,
                "restarts": len(pids[index] | {pid}) - 1,
            }
        )
    ranked = sum(done for done, _ in counts.values())
    return {
        "replicas": len(finals),
        "ranked": ranked,
        "startup_seconds": round(startup, 3),
        "seconds": round(seconds, 3),
        "queries_per_s": round(ranked / seconds, 3) if seconds else 0.0,
        "per_replica": per_replica,
        "engine": sum_stats([stats for _, stats in finals]),
    }


class Replica:
    """One ranker and its engine, in a Ray actor's process (so one engine per process, as everywhere)."""

    def __init__(self, index: int, options: dict[str, Any]) -> None:
        from . import make_ranker

        self.index = index
        self.failure: Exception | None = None
        try:
            self.ranker = make_ranker(**options)
            self.ranker.engine.load()  # now, so a model that cannot load fails the job before any ranking
        except Exception as error:  # raised by the calls instead: Ray would turn it into an actor's death
            self.failure = error

    def ready(self) -> int:
        """This replica's process id, once its engine is loaded (or the error that stopped it)."""
        if self.failure is not None:
            raise self.failure
        return os.getpid()

    def rank(self, batch: int, runs: list[QueryRun], trace: bool) -> tuple[int, int, int, float, list]:
        """Rank one batch together; (batch, replica, pid, seconds, [(order, steps)] in batch order)."""
        self.ready()
        start = time.perf_counter()
        rankings = self.ranker.rank_many([r.query for r in runs], [r.candidates for r in runs])
        seconds = time.perf_counter() - start
        return batch, self.index, os.getpid(), seconds, [(r.order, r.trace if trace else []) for r in rankings]

    def stats(self) -> tuple[int, dict[str, Any]]:
        return self.ready(), self.ranker.engine.stats()


def _run(
    ray: Any,
    actors: list[Any],
    batches: Iterator[list[QueryRun]],
    keep: Callable[[str, Ranking], None],
    trace: bool,
    progress: bool,
    pids: list[set[int]],
    max_restarts: int,
) -> dict[int, tuple[int, float]]:
    """Feed the batches to the replicas (two per replica queued ahead, so none waits for the driver),
    hand each query to `keep` as its batch returns; per replica, (queries, busy seconds)."""
    from ray.util import ActorPool
    from tqdm.auto import tqdm

    pool = ActorPool(actors)
    pending: dict[int, list[QueryRun]] = {}
    numbered = enumerate(batches)

    def submit(count: int) -> None:
        for number, runs in islice(numbered, count):
            pending[number] = runs
            pool.submit(lambda actor, job: actor.rank.remote(*job, trace), (number, runs))

    counts: dict[int, tuple[int, float]] = {index: (0, 0.0) for index in range(len(actors))}
    total = getattr(batches, "total", None)
    with tqdm(total=total, disable=not progress, desc=f"ranking on {len(actors)} replicas", unit="query") as bar:
        submit(2 * len(actors))
        while pool.has_next():
            number, index, pid, seconds, results = _unwrap(ray, pool.get_next_unordered, max_restarts)
            submit(1)
            runs = pending.pop(number)
            for run, (order, steps) in zip(runs, results, strict=True):
                keep(run.qid, Ranking(run.candidates, order, steps, run.query))
            done, busy = counts[index]
            counts[index] = (done + len(runs), busy + seconds)
            pids[index].add(pid)
            bar.update(len(runs))
    if pending:  # every batch handed out came back once: nothing is dropped
        raise RuntimeError(f"{len(pending)} batches never came back from the replicas")
    return counts


class _Batches(Iterator[list[QueryRun]]):
    """Queries in lists of `size`, read lazily (a Ray Dataset streams); `total` when it is known."""

    def __init__(self, runs: Iterable[QueryRun], size: int, total: int | None) -> None:
        self._runs = iter(runs)
        self._size = size
        self.total = total

    def __next__(self) -> list[QueryRun]:
        batch = list(islice(self._runs, self._size))
        if not batch:
            raise StopIteration
        return batch


def _batches(queries: Iterable[QueryRun] | str | Path | Any, size: int) -> _Batches:
    if isinstance(queries, str | Path):
        queries = read_rankgpt_json(queries)
    if hasattr(queries, "iter_rows"):  # a Ray Dataset
        return _Batches((_query_run(row) for row in queries.iter_rows()), size, None)
    total = len(queries) if hasattr(queries, "__len__") else None
    return _Batches(queries, size, total)


def _query_run(row: dict[str, Any]) -> QueryRun:
    """A Dataset row `{"qid", "query", "candidates": [{"id", "text"}, ...]}` as a `QueryRun`."""
    missing = {"qid", "query", "candidates"} - set(row)
    if missing:
        raise ValueError(f"a Ray Dataset row needs qid, query and candidates; this one lacks {sorted(missing)}")
    candidates = [Candidate(str(c["id"]), str(c["text"]), score=c.get("score")) for c in row["candidates"]]
    return QueryRun(str(row["qid"]), str(row["query"]), candidates)


def _import_ray(*, local: bool) -> Any:
    """Ray, or an ImportError naming the extra. A cluster started here for one job listens on the
    loopback address only (Ray otherwise picks the machine's network address: nothing outside needs
    this one) and sends no usage report; Ray reads both settings when it is imported."""
    if local and "ray" not in sys.modules:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # Ray's switch for a loopback-only node
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ImportError as error:
        raise ImportError(f"--ray needs Ray; install it with: {INSTALL}") from error
    return ray


def _connect(ray: Any, address: str | None) -> bool:
    """Join the cluster `address` (or $RAY_ADDRESS) names, else start one here; True when started here."""
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS")
    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main else None
    try:
        if address:
            ray.init(address=address)
        else:
            ray.init(address="local", include_dashboard=False)
    finally:
        if main:  # ray.init replaces SIGTERM's handler; a command's own (stop and keep what is done) stands
            signal.signal(signal.SIGTERM, previous)
    return not address


def _check_fits(ray: Any, replicas: int, cpus: float, gpus: float) -> None:
    """On a cluster started here, refuse replicas that could never all start (Ray would wait for ever)."""
    have = ray.cluster_resources()
    for name, each in (("CPU", cpus), ("GPU", gpus)):
        if replicas * each > have.get(name, 0):
            raise ValueError(
                f"{replicas} replicas x {each:g} {name}s do not fit this machine's {have.get(name, 0):g}; "
                f"lower --replicas or --{name.lower()}s-per-replica, or pass --ray-address of a larger cluster"
            )


def _get(ray: Any, refs: list[Any], max_restarts: int) -> list[Any]:
    return _unwrap(ray, lambda: ray.get(refs), max_restarts)


def _unwrap(ray: Any, call: Callable[[], Any], max_restarts: int) -> Any:
    """`call()`, with a replica's own exception raised as itself (one line, as in one process)."""
    try:
        return call()
    except ray.exceptions.RayTaskError as error:
        raise error.cause from None
    except ray.exceptions.RayActorError as error:
        raise EngineError(f"a replica died more than {max_restarts} times: {first_line(error)}") from error


def sum_stats(stats: list[dict[str, Any]]) -> dict[str, Any]:
    """Several engines' `stats()` as one: counters added, rates recomputed from the sums."""
    out: dict[str, Any] = {}
    answers: dict[str, Counter[str]] = {}
    for one in stats:
        for key, value in one.items():
            if key == "answers":
                for label, rates in value.items():
                    counts = {kind: rates[kind] for kind in ("own", "forced", "fallback")}
                    answers.setdefault(label, Counter()).update(counts)
            elif isinstance(value, int | float) and not isinstance(value, bool) and not key.endswith("_rate"):
                out[key] = out.get(key, 0) + value
            else:
                out.setdefault(key, value)
    if "prefix_cache_queries" in out:
        queries = out["prefix_cache_queries"]
        out["prefix_cache_hit_rate"] = out["prefix_cache_hits"] / queries if queries else 0.0
    out["answers"] = {label: answer_rates(counts) for label, counts in answers.items()}
    return out


__all__ = ["Replica", "add_ray_flags", "rank_on_ray", "rerank_on_ray", "sum_stats"]
