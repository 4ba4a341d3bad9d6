"""One engine per model configuration per process, shared by every ranker and adapter."""

from __future__ import annotations

import atexit
import importlib
import threading
from typing import Any

from .base import Engine, EngineError, PromptTooLongError

BACKENDS = {
    "transformers": "r1ranker_plugins.engines.hf:TransformersEngine",
    "vllm": "r1ranker_plugins.engines.vllm:VLLMEngine",
    "openai": "r1ranker_plugins.engines.openai:OpenAIEngine",
}

_engines: dict[tuple, Engine] = {}
_lock = threading.Lock()


def get_engine(model: str, backend: str = "transformers", **options: Any) -> Engine:
    """Return this process's engine for (model, backend, options), creating it on first use.

    Rankers built with the same model and backend share the result, so four adapters over one
    model hold one set of weights. The model itself loads lazily, on the first generation.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {sorted(BACKENDS)}")
    key = (backend, model, tuple(sorted((k, repr(v)) for k, v in options.items() if v is not None)))
    with _lock:
        engine = _engines.get(key)
        if engine is None:
            module, name = BACKENDS[backend].split(":")
            engine = getattr(importlib.import_module(module), name)(model, **options)
            _engines[key] = engine
        return engine


@atexit.register
def close_all() -> None:
    """Close every engine (at exit, or in tests that need a clean slate)."""
    with _lock:
        for engine in _engines.values():
            engine.close()
        _engines.clear()


__all__ = ["BACKENDS", "Engine", "EngineError", "PromptTooLongError", "close_all", "get_engine"]
