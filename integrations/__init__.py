"""Adapters that put r1ranker rankers inside pyserini, rerankers, LlamaIndex and LangChain.

Each adapter imports its framework lazily and names the extra to install when it is missing.
"""

from __future__ import annotations

import importlib
from types import ModuleType


def require(module: str, extra: str) -> ModuleType:
    """Import a framework module, or fail with the install command that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"{module} is not installed; install it with: pip install 'r1ranker-plugins[{extra}]'"
        ) from error


def host_version(distribution: str) -> str:
    """The installed version of a host library's distribution, for messages about its internals."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return "(not installed)"
