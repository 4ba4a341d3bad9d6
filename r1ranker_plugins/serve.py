"""`r1ranker serve` (work in progress: replaced by the serving implementation)."""

from __future__ import annotations

import argparse


def add_serve_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("serve", help="serve a ranker behind the Cohere and TEI rerank APIs")
    parser.set_defaults(func=lambda args: 2)
