"""The engine alone: generated tokens/s by batch size, on the rankers' own prompts.

No ranker is timed here. Each batch is B IRanker first-step prompts (B queries, BM25 top-`--depth`,
cut as the rankers cut them), generated together with a fixed length (`ignore_eos`), prefix cache
reset before each. The curve shows how batching pays on a machine: a loop that already sends
several requests per call (`mean_batch` in `throughput.py`) starts part of the way up it. It is a
guide, not a bound: the rankers' requests are shorter on average and mostly prefix-cached, which
makes a batched step cheaper; `throughput.py`'s `raw_speedup` measures a strategy's exact requests.

    python benchmarks/batching.py --batch-sizes 1 2 4 8 16 32 64 128 256 --max-new-tokens 512 \
        --kv-cache-dtype fp8 --repeats 3 --out runs/batching.json

Prints a JSON list of rows and a table; writes the rows (`--out`) and a plot of tokens/s against
batch size (`--plot`, default next to `--out`).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from throughput import FixedLengthEngine, measure
from tqdm.auto import tqdm

from r1ranker_plugins import IRanker
from r1ranker_plugins.datasets import EvalSet, load_dataset
from r1ranker_plugins.engines import close_all, get_engine
from r1ranker_plugins.types import Request


def first_step_prompts(ranker: IRanker, evalsets: Sequence[EvalSet]) -> list[str]:
    """The prompt `ranker` (paper mode) sends first for each query, from its own step machine."""
    return [ranker.first_requests(q.query, q.candidates)[0].prompt for s in evalsets for q in s.queries]


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Tokens/s against batch size: where batching stops paying is plain to see, not to read."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([r["batch_size"] for r in rows], [r["completion_tokens_per_s"] for r in rows], marker="o")
    ax.set(xscale="log", xlabel="requests generated together", ylabel="generated tokens/s")
    first = rows[0]
    kv_cache = first["kv_cache_dtype"] or "model dtype"
    ax.set_title(
        f"{first['backend']} alone, {first['max_new_tokens']} tokens per request, KV cache {kv_cache}", fontsize=10
    )
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64, 128, 256])
    parser.add_argument("--max-new-tokens", type=int, default=512, help="tokens generated per request (ignore_eos)")
    parser.add_argument("--depth", type=int, default=20, help="candidates in each prompt (default 20)")
    parser.add_argument("--max-candidate-tokens", type=int, default=64, help="passage truncation")
    parser.add_argument("--model", help="hub id or path (default: the tiny random test model)")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--max-num-seqs", type=int, help="vLLM's max_num_seqs (its default on CPU: 256)")
    parser.add_argument("--kv-cache-dtype", help="vLLM's kv_cache_dtype, e.g. fp8")
    parser.add_argument("--datasets", nargs="+", default=["dl19", "dl20", "scifact"])
    parser.add_argument("--repeats", type=int, default=3, help="time each batch size N times; report the median")
    parser.add_argument("--out", help="also write the rows to this JSON file")
    parser.add_argument("--plot", help="plot path (default: --out with .png)")
    args = parser.parse_args(argv)
    if args.repeats < 1 or min(args.batch_sizes) < 1:
        parser.error("--repeats and --batch-sizes must be >= 1")
    args.batch_sizes = sorted(set(args.batch_sizes))
    evalsets = [load_dataset(name) for name in args.datasets]
    available = sum(len(evalset.queries) for evalset in evalsets)
    if args.batch_sizes[-1] > available:
        largest = args.batch_sizes[-1]
        parser.error(f"--datasets {' '.join(args.datasets)} give {available} prompts; --batch-sizes asks for {largest}")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")  # vLLM logs to stdout, where the JSON goes

    if args.model is None:
        from r1ranker_plugins.testing import tiny_model

        args.model = tiny_model()
    options = {"dtype": args.dtype, "max_num_seqs": args.max_num_seqs, "kv_cache_dtype": args.kv_cache_dtype}
    engine = FixedLengthEngine(get_engine(args.model, "vllm", **{k: v for k, v in options.items() if v}))
    ranker = IRanker(engine=engine, depth=args.depth, max_candidate_tokens=args.max_candidate_tokens)
    prompts = first_step_prompts(ranker, evalsets)
    engine.generate([Request(prompts[0], max_tokens=2)])  # load the model; start-up is not throughput

    rows = []
    for size in tqdm(args.batch_sizes, desc="batch sizes"):
        requests = [Request(prompt, max_tokens=args.max_new_tokens) for prompt in prompts[:size]]
        runs = [measure(engine, functools.partial(engine.generate, requests)) for _ in range(args.repeats)]
        rates = [delta["completion_tokens"] / seconds for _, seconds, delta in runs]
        rows.append(
            {
                "backend": "vllm",
                "batch_size": size,
                "max_new_tokens": args.max_new_tokens,
                "max_num_seqs": args.max_num_seqs,
                "kv_cache_dtype": args.kv_cache_dtype,
                "prompt_tokens": runs[0][2]["prompt_tokens"],
                "completion_tokens": runs[0][2]["completion_tokens"],
                "completion_tokens_per_s": round(statistics.median(rates), 1),
                "completion_tokens_per_s_runs": [round(rate, 1) for rate in rates],
            }
        )
    for row in rows:
        row["gain_vs_smallest_batch"] = round(row["completion_tokens_per_s"] / rows[0]["completion_tokens_per_s"], 2)
        row["per_request_tokens_per_s"] = round(row["completion_tokens_per_s"] / row["batch_size"], 1)
    print(json.dumps(rows, indent=2))
    columns = ["batch_size", "completion_tokens_per_s", "gain_vs_smallest_batch", "per_request_tokens_per_s"]
    print("  ".join(f"{c:>24}" for c in columns), file=sys.stderr)
    for row in rows:
        print("  ".join(f"{row[c]!s:>24}" for c in columns), file=sys.stderr)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2), encoding="utf-8")
    if args.plot or args.out:
        plot(rows, Path(args.plot or Path(args.out).with_suffix(".png")))
    close_all()
    return rows


if __name__ == "__main__":
    main()
