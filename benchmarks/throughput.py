"""Throughput: `rank_many` (every query's next step in one engine batch) vs a loop of `rank` calls,
in queries/s, on BM25 top-100 lists (DL19 by default; more sets put more queries in flight).

For each mode it reports queries/s, the engine's generated tokens/s, and utilisation: that rate
divided by the rate of one raw `generate` over exactly the requests `rank_many` sent (the engine
alone on that work). `raw_speedup` is the engine's own batching gain on the same work,
with no ranker in the way: that raw rate over the rate of the raw engine replaying the loop's calls
as they were made (a strategy whose single query already keeps several requests in flight leaves
the engine less to gain). Every request uses `ignore_eos`, so each step generates a fixed number
of tokens (`--max-new-tokens`, or with `--min-new-tokens` a number its prompt picks) and the
modes do identical work. Prefix caches are reset before each measurement (a vLLM server must run
with `VLLM_SERVER_DEV_MODE=1` for that) so neither mode inherits the other's cached prompts.

    python benchmarks/throughput.py --strategy iranker --depth 20 --out throughput.json
    python benchmarks/throughput.py --strategy iranker --datasets dl19 dl20 scifact --loop-queries 43

On a shared machine the speed drifts between minutes; `--repeats N` runs the two modes N times,
alternating which goes first, and reports each mode's median queries/s and the median of the N
paired speed-ups. Utilisation and `raw_speedup` come from one raw batch and one replay after
the repeats.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import statistics
import sys
import time
import zlib
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from tqdm.auto import tqdm

from r1ranker_plugins import DRanker, IRanker, SetwiseRanker
from r1ranker_plugins.datasets import load_dataset
from r1ranker_plugins.engines import Engine, close_all, get_engine
from r1ranker_plugins.types import Completion, Request

STRATEGIES = {
    "iranker": IRanker,
    "iranker-tournament": functools.partial(IRanker, mode="tournament"),
    "dranker": DRanker,
    "setwise": SetwiseRanker,
}


class FixedLengthEngine(Engine):
    """Delegates to a real engine with `ignore_eos` set on every request, and records them.

    The rankers have no option for `ignore_eos` (only benchmarks want it), hence this wrapper.
    """

    backend = "fixed-length"

    def __init__(self, inner: Engine, min_new_tokens: int | None = None) -> None:
        super().__init__(inner.model)
        self.inner = inner
        self.min_new_tokens = min_new_tokens
        self.calls: list[list[Request]] = []

    @property
    def tokenizer(self) -> Any:
        return self.inner.tokenizer

    def _generate(self, requests: Sequence[Request]) -> list[Completion]:
        fixed = [replace(r, ignore_eos=True, max_tokens=self.length(r)) for r in requests]
        self.calls.append(fixed)
        return self.inner.generate(fixed)

    def length(self, request: Request) -> int:
        """`max_tokens`; with `min_new_tokens`, a length from it up to `max_tokens` that a hash
        of the prompt picks, so a request generates as many tokens in either mode."""
        if self.min_new_tokens is None or request.max_tokens <= self.min_new_tokens:
            return request.max_tokens
        spread = request.max_tokens - self.min_new_tokens + 1
        return self.min_new_tokens + zlib.crc32(request.prompt.encode()) % spread


def reset_prefix_cache(engine: Engine) -> None:
    reset = getattr(engine, "reset_prefix_cache", None)
    if reset is not None:
        reset()


def measure(engine: FixedLengthEngine, run) -> tuple[Any, float, dict[str, Any]]:
    """Run `run()` cold-cached; return its result, seconds and the inner engine's counter deltas."""
    reset_prefix_cache(engine.inner)
    before = engine.inner.stats()
    start = time.perf_counter()
    result = run()
    seconds = time.perf_counter() - start
    after = engine.inner.stats()
    delta = {k: after[k] - before[k] for k in after if isinstance(after[k], int | float) and k in before}
    return result, seconds, delta


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--strategy", choices=sorted(STRATEGIES), default="iranker")
    parser.add_argument("--depth", type=int, default=20, help="candidates reranked per query (default 20)")
    parser.add_argument("--max-new-tokens", type=int, default=16, help="tokens generated per step (ignore_eos)")
    parser.add_argument(
        "--min-new-tokens",
        type=int,
        help="vary each step's length from this up to --max-new-tokens (a hash of its prompt picks), as real "
        "reasoning varies; default: every step generates exactly --max-new-tokens",
    )
    parser.add_argument(
        "--max-candidate-tokens", type=int, default=64, help="passage truncation (the tiny tokenizer: ~240 per passage)"
    )
    parser.add_argument("--backend", choices=["vllm", "openai", "transformers"], default="vllm")
    parser.add_argument("--model", help="hub id or path (default: the tiny random test model)")
    parser.add_argument("--base-url", help="openai backend: server URL, e.g. http://127.0.0.1:8000/v1")
    parser.add_argument("--dtype", default="float32", help="vllm/transformers dtype (default float32)")
    parser.add_argument(
        "--max-num-seqs", type=int, help="vllm: sequences decoded together (vLLM's default on CPU: 256)"
    )
    parser.add_argument("--kv-cache-dtype", help="vllm: KV cache dtype, e.g. fp8 (vLLM's default: the model's)")
    parser.add_argument(
        "--datasets", nargs="+", default=["dl19"], help="TREC-style sets: dl19, dl20, scifact, vaswani, cranfield"
    )
    parser.add_argument("--queries", type=int, default=None, help="use only the first N queries")
    parser.add_argument(
        "--loop-queries",
        type=int,
        default=None,
        help="time the loop on N queries spread over the list (a sequential loop's queries/s does not depend on N)",
    )
    parser.add_argument("--repeats", type=int, default=1, help="alternate the two modes N times; report medians")
    parser.add_argument("--out", help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    if args.min_new_tokens is not None and not 1 <= args.min_new_tokens <= args.max_new_tokens:
        parser.error("--min-new-tokens must be between 1 and --max-new-tokens")
    for flag in ("max_num_seqs", "kv_cache_dtype"):
        if getattr(args, flag) and args.backend != "vllm":
            parser.error(f"--{flag.replace('_', '-')} is a vllm backend setting")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")  # vLLM logs to stdout, where the JSON goes

    if args.model is None:
        from r1ranker_plugins.testing import tiny_model

        args.model = tiny_model()
    options: dict[str, Any] = {"base_url": args.base_url} if args.backend == "openai" else {"dtype": args.dtype}
    for flag in ("max_num_seqs", "kv_cache_dtype"):
        if getattr(args, flag):
            options[flag] = getattr(args, flag)
    evalsets = [load_dataset(name) for name in args.datasets]
    pairs = [(q.query, q.candidates) for evalset in evalsets for q in evalset.queries][: args.queries]
    queries = [query for query, _ in pairs]
    lists = [candidates for _, candidates in pairs]

    engine = FixedLengthEngine(get_engine(args.model, args.backend, **options), args.min_new_tokens)
    ranker = STRATEGIES[args.strategy](
        engine=engine,
        depth=args.depth,
        max_new_tokens=args.max_new_tokens,
        max_candidate_tokens=args.max_candidate_tokens,
    )
    ranker.rank(queries[0], lists[0][:3])  # load the model; start-up is not throughput

    stride = max(len(pairs) // (args.loop_queries or len(pairs)), 1)
    looped = pairs[::stride][: args.loop_queries]

    def run(rank) -> tuple[Any, float, dict[str, Any], list[list[Request]]]:
        """`measure(rank)`, plus the engine calls it made."""
        engine.calls.clear()
        result, seconds, delta = measure(engine, rank)
        return result, seconds, delta, list(engine.calls)

    def run_many() -> tuple[Any, float, dict[str, Any], list[list[Request]]]:
        return run(lambda: ranker.rank_many(queries, lists, progress=True))

    def run_loop() -> tuple[Any, float, dict[str, Any], list[list[Request]]]:
        return run(lambda: [ranker.rank(q, c) for q, c in tqdm(looped, desc="loop")])

    many_rates, loop_rates, same = [], [], True
    for repeat in range(args.repeats):
        if repeat % 2:  # alternate which mode goes first, so neither always meets the same drift
            loop_rankings, loop_s, loop, loop_calls = run_loop()
            together, many_s, many, many_calls = run_many()
        else:
            together, many_s, many, many_calls = run_many()
            loop_rankings, loop_s, loop, loop_calls = run_loop()
        many_rates.append(len(queries) / many_s)
        loop_rates.append(len(looped) / loop_s)
        same &= [r.order for r in together[::stride][: len(looped)]] == [r.order for r in loop_rankings]
    speedup = statistics.median(m / lo for m, lo in zip(many_rates, loop_rates, strict=True))  # per pair
    _, raw_s, raw = measure(engine, lambda: engine.inner.generate([r for call in many_calls for r in call]))
    raw_rate = raw["completion_tokens"] / raw_s
    _, replay_s, replay = measure(engine, lambda: [engine.inner.generate(call) for call in tqdm(loop_calls, "replay")])
    replay_rate = replay["completion_tokens"] / replay_s

    rows = []
    for mode, delta, count, rates in (
        ("rank_many", many, len(queries), many_rates),
        ("loop", loop, len(looped), loop_rates),
    ):
        seconds = count / statistics.median(rates)
        rate = delta["completion_tokens"] / seconds
        hit_rate = (
            delta["prefix_cache_hits"] / delta["prefix_cache_queries"] if delta.get("prefix_cache_queries") else None
        )
        rows.append(
            {
                "strategy": args.strategy,
                "mode": mode,
                "backend": args.backend,
                "datasets": args.datasets,
                "queries": count,
                "depth": args.depth,
                "max_new_tokens": args.max_new_tokens,
                "min_new_tokens": args.min_new_tokens,
                "max_num_seqs": args.max_num_seqs,
                "seconds": round(seconds, 2),
                "queries_per_s": round(count / seconds, 3),
                "queries_per_s_runs": [round(rate, 3) for rate in rates],
                "speedup_vs_loop": round(speedup, 2) if mode == "rank_many" else 1.0,
                "engine_calls": delta["calls"],
                "requests": delta["requests"],
                "mean_batch": round(delta["requests"] / delta["calls"], 1),
                "prompt_tokens": delta["prompt_tokens"],
                "completion_tokens": delta["completion_tokens"],
                "completion_tokens_per_s": round(rate, 1),
                "raw_completion_tokens_per_s": round(raw_rate, 1),
                "utilisation": round(rate / raw_rate, 3),
                "replayed_completion_tokens_per_s": round(replay_rate, 1) if mode == "loop" else None,
                "raw_speedup": round(raw_rate / replay_rate, 2) if mode == "rank_many" else None,
                "prefix_cache_hit_rate": None if hit_rate is None else round(hit_rate, 3),
                "same_orders_as_other_mode": same,
                "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            }
        )
    rows[0]["raw_seconds"] = round(raw_s, 2)
    print(json.dumps(rows, indent=2))
    columns = ["mode", "queries_per_s", "speedup_vs_loop", "raw_speedup", "mean_batch",
               "completion_tokens_per_s", "utilisation", "prefix_cache_hit_rate"]  # fmt: skip
    print("  ".join(f"{c:>24}" for c in columns), file=sys.stderr)
    for row in rows:
        print("  ".join(f"{row[c]!s:>24}" for c in columns), file=sys.stderr)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as out:
            json.dump(rows, out, indent=2)
    close_all()
    return rows


if __name__ == "__main__":
    main()
