"""Reasoning LLM rerankers (IRanker, DRanker, Rank-R1 setwise) for IR, RAG, recommendation and routing.

    from r1ranker_plugins import IRanker
    ranker = IRanker(model="Qwen/Qwen2.5-3B-Instruct", backend="vllm", task="passage")
    ranking = ranker.rank("what is a corporation?", ["passage one ...", "passage two ..."])
    ranking.order, ranking.scores

Importing the package loads no model library; engines import theirs when they are built.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .checkpoint import read_ranker_config
from .dranker import DRanker, DRankerSettings
from .engines import Engine, EngineError, PromptTooLongError, get_engine
from .iranker import IRanker, IRankerSettings
from .ranker import Ranker
from .runs import RunFormatError
from .settings import RankerSettings, read_config
from .setwise import SetwiseRanker, SetwiseSettings
from .types import Candidate, Completion, Question, Ranking, Request, TraceStep

__version__ = "0.1.0"

STRATEGIES: dict[str, type[Ranker]] = {"iranker": IRanker, "dranker": DRanker, "setwise": SetwiseRanker}


def make_ranker(
    strategy: str | None = None,
    model: str | None = None,
    backend: str | None = None,
    *,
    config: str | Path | None = None,
    **options: Any,
) -> Ranker:
    """Build a ranker by strategy name; the single entry point adapters and command lines use.

    `config`: a YAML or JSON file with `strategy`, `model`, `backend` and any options, the
    same keys as the keyword arguments, which override it. `strategy="auto"` takes the
    strategy a trained checkpoint names in its r1ranker.json.
    """
    values = {**(read_config(config) if config is not None else {}), **options}
    strategy = strategy or values.pop("strategy", None)
    model = model or values.pop("model", None)
    backend = backend or values.pop("backend", None) or "transformers"
    values = {key: value for key, value in values.items() if key not in ("strategy", "model", "backend")}
    if strategy is None:
        raise ValueError("make_ranker needs a strategy (or a config that names one)")
    if strategy == "auto":
        checkpoint = read_ranker_config(model) if model else None
        if checkpoint is None:
            raise ValueError(f"strategy 'auto' needs a checkpoint with r1ranker.json; {model!r} has none")
        strategy = checkpoint["strategy"]
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; expected one of {sorted(STRATEGIES)}")
    return STRATEGIES[strategy](model, backend, **values)


__all__ = [
    "STRATEGIES",
    "Candidate",
    "Completion",
    "DRanker",
    "DRankerSettings",
    "Engine",
    "EngineError",
    "IRanker",
    "IRankerSettings",
    "PromptTooLongError",
    "Question",
    "Ranker",
    "RankerSettings",
    "Ranking",
    "Request",
    "RunFormatError",
    "SetwiseRanker",
    "SetwiseSettings",
    "TraceStep",
    "__version__",
    "get_engine",
    "make_ranker",
]
