"""Reasoning LLM rerankers (IRanker, DRanker, Rank-R1 setwise) for IR, RAG, recommendation and routing.

    from r1ranker_plugins import IRanker
    ranker = IRanker(model="Qwen/Qwen2.5-3B-Instruct", backend="vllm", task="passage")
    ranking = ranker.rank("what is a corporation?", ["passage one ...", "passage two ..."])
    ranking.order, ranking.scores

Importing the package loads no model library; engines import theirs on first use.
"""

from .checkpoint import read_ranker_config
from .dranker import DRanker
from .engines import Engine, EngineError, get_engine
from .iranker import IRanker
from .ranker import Ranker
from .setwise import SetwiseRanker
from .types import Candidate, Completion, Ranking, Request, TraceStep

__version__ = "0.1.0"

STRATEGIES: dict[str, type[Ranker]] = {"iranker": IRanker, "dranker": DRanker, "setwise": SetwiseRanker}


def make_ranker(strategy: str, model: str | None = None, backend: str = "transformers", **options) -> Ranker:
    """Build a ranker by strategy name; the single entry point adapters and CLIs use.

    `strategy="auto"` takes the strategy a trained checkpoint names in its r1ranker.json.
    """
    if strategy == "auto":
        config = read_ranker_config(model) if model else None
        if config is None:
            raise ValueError(f"strategy 'auto' needs a checkpoint with r1ranker.json; {model!r} has none")
        strategy = config["strategy"]
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; expected one of {sorted(STRATEGIES)}")
    return STRATEGIES[strategy](model, backend, **options)


__all__ = [
    "STRATEGIES",
    "Candidate",
    "Completion",
    "DRanker",
    "Engine",
    "EngineError",
    "IRanker",
    "Ranker",
    "Ranking",
    "Request",
    "SetwiseRanker",
    "TraceStep",
    "__version__",
    "get_engine",
    "make_ranker",
]
