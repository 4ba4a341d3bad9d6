"""Ray scaling: queries/s of `rank_on_ray` with 1 and 2 replicas, against one process, on this machine.

Every configuration ranks the same queries (DL19 + DL20 + SciFact, 397, by default) with vLLM for
CPU and the tiny model, each engine on one OpenMP thread pinned to its own core: the single process
on core 0 (`rank_many` in waves of `--queries-per-batch`), replica i on core i (batches of that
size). Engines load before the clock starts (their start-up is reported apart), so queries/s is
ranking alone. Reported: queries/s per configuration (the median of `--repeats` runs) and per
replica, the scaling ratio (2 replicas over 1), Ray's overhead per query (the 1-replica job's time
less the single process's, over the queries), and whether every configuration ranked every query
the same (greedy decoding: it should).

    python benchmarks/ray_scaling.py --out runs/ray_scaling.json
    python benchmarks/ray_scaling.py --datasets dl19 --limit 16 --depth 5 --repeats 1   # a quick check
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from r1ranker_plugins.runs import QueryRun
from r1ranker_plugins.types import Ranking


def load_runs(datasets: Sequence[str], limit: int | None) -> list[QueryRun]:
    from r1ranker_plugins.datasets import load_dataset

    runs = [QueryRun(f"{name}-{q.qid}", q.query, q.candidates) for name in datasets for q in load_dataset(name).queries]
    return runs[:limit] if limit else runs


def digest(rankings: dict[str, Ranking]) -> str:
    """One fingerprint of every query's order, to tell whether two configurations ranked alike."""
    orders = sorted((qid, [c.id for c in ranking.ranked]) for qid, ranking in rankings.items())
    return hashlib.sha256(json.dumps(orders).encode()).hexdigest()[:16]


def single(args: argparse.Namespace) -> dict[str, Any]:
    """One process (this one, pinned by its caller's environment): load, then `rank_many` on the clock."""
    from r1ranker_plugins import make_ranker

    runs = load_runs(args.datasets, args.limit)
    start = time.perf_counter()
    ranker = make_ranker(**options(args))
    ranker.engine.load()
    loaded = time.perf_counter()
    rankings = ranker.rank_many([r.query for r in runs], [r.candidates for r in runs], wave_size=args.queries_per_batch)
    seconds = time.perf_counter() - loaded
    return {
        "startup_seconds": loaded - start,
        "seconds": seconds,
        "digest": digest({r.qid: ranking for r, ranking in zip(runs, rankings, strict=True)}),
    }


def run_single(argv: list[str]) -> dict[str, Any]:
    """`single` in a fresh process whose one OpenMP thread is bound to core 0 (as replica 0's is)."""
    env = {**os.environ, **pinned(0)}
    command = [sys.executable, __file__, "--single", *argv]
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"the single-process run failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout)


def pinned(core: int) -> dict[str, str]:
    """One OpenMP thread, bound to `core` (libgomp binds the initial thread; later threads inherit it)."""
    return {"OMP_NUM_THREADS": "1", "OMP_PLACES": f"{{{core}}}", "OMP_PROC_BIND": "true"}


def run_ray(args: argparse.Namespace, runs: list[QueryRun], replicas: int) -> dict[str, Any]:
    from r1ranker_plugins.ray_jobs import rank_on_ray

    cores = os.cpu_count() or 1
    rankings, summary = rank_on_ray(
        runs,
        options(args),
        replicas=replicas,
        queries_per_batch=args.queries_per_batch,
        trace=False,
        replica_options=lambda i: {"runtime_env": {"env_vars": pinned(i % cores)}},
    )
    return {**summary, "digest": digest(rankings)}


def options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "strategy": args.strategy,
        "model": args.model or tiny_model_path(),
        "backend": "vllm",
        "depth": args.depth,
        "max_new_tokens": args.max_new_tokens,
        "max_candidate_tokens": args.max_candidate_tokens,
        "enforce_eager": True,
        "max_model_len": 4096,
        "dtype": "float32",
    }


def tiny_model_path() -> str:
    from r1ranker_plugins.testing import tiny_model

    return tiny_model()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["dl19", "dl20", "scifact"])
    parser.add_argument("--limit", type=int, help="only the first N queries (default: all)")
    parser.add_argument("--strategy", default="iranker", choices=["iranker", "dranker", "setwise"])
    parser.add_argument("--model", help="default: the tiny random-weight test model")
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--max-candidate-tokens", type=int, default=64)
    parser.add_argument("--queries-per-batch", type=int, default=32)
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3, help="runs of each configuration; medians are reported")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--single", action="store_true", help=argparse.SUPPRESS)  # the pinned single process
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")  # vLLM logs to stdout, where the JSON goes
    if args.single:
        print(json.dumps(single(args)))
        return 0

    # a cluster on this machine's loopback address, of its cores; replicas inherit the settings above
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    runs = load_runs(args.datasets, args.limit)
    ray.init(address="local", include_dashboard=False, log_to_driver=False)
    results: dict[int, list[dict[str, Any]]] = {0: [], **{n: [] for n in args.replicas}}
    try:
        for repeat in range(args.repeats):
            print(f"repeat {repeat + 1}/{args.repeats}: one process", file=sys.stderr, flush=True)
            results[0].append(run_single(argv))
            for replicas in args.replicas:
                print(f"repeat {repeat + 1}/{args.repeats}: {replicas} replicas", file=sys.stderr, flush=True)
                results[replicas].append(run_ray(args, runs, replicas))
    finally:
        ray.shutdown()

    n = len(runs)
    reference = results[0][0]["digest"]
    rows = []
    for replicas, runs_of in results.items():
        seconds = statistics.median(r["seconds"] for r in runs_of)
        row = {
            "mode": "one process" if replicas == 0 else f"ray, {replicas} replica{'s' if replicas > 1 else ''}",
            "replicas": replicas,
            "queries": n,
            "queries_per_s": round(n / seconds, 3),
            "queries_per_s_runs": [round(n / r["seconds"], 3) for r in runs_of],
            "startup_seconds": round(statistics.median(r["startup_seconds"] for r in runs_of), 2),
            "same_orders_as_one_process": all(r["digest"] == reference for r in runs_of),
        }
        if replicas:
            row["replica_queries_per_s"] = [
                round(statistics.median(r["per_replica"][i]["queries_per_s"] for r in runs_of), 3)
                for i in range(replicas)
            ]
        rows.append(row)
    one = statistics.median(r["seconds"] for r in results[0])
    by_replicas = {row["replicas"]: row for row in rows}
    if 1 in by_replicas:
        ray_one = statistics.median(r["seconds"] for r in results[1])
        by_replicas[1]["overhead_ms_per_query"] = round(1000 * (ray_one - one) / n, 2)
        for replicas, row in by_replicas.items():
            if replicas > 1:
                row["scaling_vs_1_replica"] = round(row["queries_per_s"] / by_replicas[1]["queries_per_s"], 3)

    print(json.dumps(rows))
    print(
        "\n| configuration | queries/s | per replica | start-up s | scaling vs 1 | Ray ms/query | same orders |"
        "\n|---|---|---|---|---|---|---|",
        file=sys.stderr,
    )
    for row in rows:
        per = ", ".join(map(str, row.get("replica_queries_per_s", []))) or "-"
        print(
            f"| {row['mode']} | {row['queries_per_s']} | {per} | {row['startup_seconds']} | "
            f"{row.get('scaling_vs_1_replica', '-')} | {row.get('overhead_ms_per_query', '-')} | "
            f"{row['same_orders_as_one_process']} |",
            file=sys.stderr,
        )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
