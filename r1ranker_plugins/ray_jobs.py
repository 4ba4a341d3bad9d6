"""Reranking on a Ray cluster (work in progress: replaced by the scale-out implementation)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any


def add_ray_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("Ray (the ray extra)")
    group.add_argument("--ray", action="store_true", help="rank on a Ray cluster, one engine per replica")


def rerank_on_ray(queries: list, options: dict[str, Any], args: argparse.Namespace, write: Callable) -> dict[str, Any]:
    raise NotImplementedError("--ray is not available yet")
