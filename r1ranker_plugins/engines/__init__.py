"""One engine per model configuration per process, shared by every ranker and adapter."""

from __future__ import annotations

import atexit
import threading
from typing import Any

from ..settings import build
from .base import Engine, EngineError, PromptTooLongError
from .hf import TransformersEngine, TransformersOptions
from .openai import OpenAIEngine, OpenAIOptions
from .vllm import VLLMEngine, VLLMOptions

# Each backend's engine and the dataclass declaring its options (the engine modules import their
# libraries only when a model loads, so importing them here stays light).
BACKENDS: dict[str, type[Engine]] = {"transformers": TransformersEngine, "vllm": VLLMEngine, "openai": OpenAIEngine}
ENGINE_OPTIONS: dict[str, type] = {"transformers": TransformersOptions, "vllm": VLLMOptions, "openai": OpenAIOptions}

_engines: dict[tuple, Engine] = {}
_lock = threading.Lock()


def get_engine(model: str, backend: str = "transformers", **options: Any) -> Engine:
    """Return this process's engine for (model, backend, options), creating it on first use.

    Rankers built with the same model and backend share the result, so four adapters over one
    model hold one set of weights. The model itself loads lazily, on the first generation.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {sorted(BACKENDS)}")
    build(ENGINE_OPTIONS[backend], options, f"the {backend} backend")  # a misspelt option fails here
    key = (backend, model, tuple(sorted((k, repr(v)) for k, v in options.items() if v is not None)))
    with _lock:
        engine = _engines.get(key)
        if engine is None:
            engine = _engines[key] = BACKENDS[backend](model, **options)
        return engine


@atexit.register
def close_all() -> None:
    """Close every engine (at exit, or in tests that need a clean slate)."""
    with _lock:
        for engine in _engines.values():
            engine.close()
        _engines.clear()


__all__ = [
    "BACKENDS",
    "ENGINE_OPTIONS",
    "Engine",
    "EngineError",
    "OpenAIOptions",
    "PromptTooLongError",
    "TransformersOptions",
    "VLLMOptions",
    "close_all",
    "get_engine",
]
