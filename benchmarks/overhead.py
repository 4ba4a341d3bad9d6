"""The project's own time per query (prompt building, parsing, scheduling) against the engine's.

Each strategy ranks DL19 (43 queries, depth 20) on a real engine (default: vLLM with the tiny
model, fixed-length generations). Its completions are recorded, then the same run is replayed on
an engine that returns them instantly: the replay's wall time is our own time, with the engine's
excluded. Target: own time <= 5% of the engine's time.

    python benchmarks/overhead.py --out runs/overhead.json [--backend vllm] [--model PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from throughput import FixedLengthEngine

from r1ranker_plugins import DRanker, IRanker, SetwiseRanker
from r1ranker_plugins.engines import Engine, get_engine
from r1ranker_plugins.runs import data_dir, read_rankgpt_json
from r1ranker_plugins.testing import tiny_model
from r1ranker_plugins.types import Completion, Request

VARIANTS = {
    "iranker": (IRanker, {}),
    "iranker-tournament": (IRanker, {"mode": "tournament"}),
    "dranker": (DRanker, {}),
    "setwise": (SetwiseRanker, {}),
}


class ReplayEngine(Engine):
    """Returns recorded completions instantly, in request order: the engine's time is zero."""

    backend = "replay"

    def __init__(self, tokenizer: Any, completions: list[Completion]) -> None:
        super().__init__("replay")
        self._tokenizer = tokenizer
        self._completions = iter(completions)

    def _generate(self, requests: Sequence[Request]) -> list[Completion]:
        return [next(self._completions) for _ in requests]


class Recorder(FixedLengthEngine):
    """Fixed-length engine that also keeps each completion for the replay."""

    def __init__(self, inner: Engine) -> None:
        super().__init__(inner)
        self.completions: list[Completion] = []

    def _generate(self, requests: Sequence[Request]) -> list[Completion]:
        out = super()._generate(requests)
        self.completions.extend(out)
        return out


def measure(name: str, inner: Engine, queries: list, lists: list, options: dict[str, Any]) -> dict[str, Any]:
    cls, extra = VARIANTS[name]
    recorder = Recorder(inner)
    ranker = cls(engine=recorder, **options, **extra)
    before = inner.stats()["seconds"]
    start = time.perf_counter()
    live = ranker.rank_many(queries, lists)
    wall = time.perf_counter() - start
    engine_seconds = inner.stats()["seconds"] - before
    replay = cls(engine=ReplayEngine(inner.tokenizer, recorder.completions), **options, **extra)
    start = time.perf_counter()
    replayed = replay.rank_many(queries, lists)
    own = time.perf_counter() - start
    assert [r.order for r in replayed] == [r.order for r in live], "the replay must retrace the live run"
    return {
        "strategy": name,
        "queries": len(queries),
        "engine_seconds": round(engine_seconds, 3),
        "wall_seconds": round(wall, 3),
        "own_seconds": round(own, 3),
        "own_ms_per_query": round(1000 * own / len(queries), 2),
        "own_fraction_of_engine": round(own / engine_seconds, 4),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", default="vllm", choices=["vllm", "transformers", "openai"])
    parser.add_argument("--model", help="default: the tiny random-weight test model")
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--strategies", nargs="+", choices=sorted(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    runs = read_rankgpt_json(data_dir() / "passage" / "dl19" / "bm25_top100.json")
    queries, lists = [r.query for r in runs], [r.candidates for r in runs]
    engine_options = {"max_model_len": 8192} if args.backend == "vllm" else {}
    inner = get_engine(args.model or tiny_model(), args.backend, **engine_options)
    options = {"depth": args.depth, "max_new_tokens": args.max_new_tokens}
    rows = [measure(name, inner, queries, lists, options) for name in args.strategies]
    print(json.dumps(rows))
    print("\n| strategy | engine s | own s | own ms/query | own / engine |\n|---|---|---|---|---|", file=sys.stderr)
    for row in rows:
        print(
            f"| {row['strategy']} | {row['engine_seconds']} | {row['own_seconds']} | {row['own_ms_per_query']} | "
            f"{row['own_fraction_of_engine']:.2%} |",
            file=sys.stderr,
        )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
