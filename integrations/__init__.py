"""Adapters that put r1ranker rankers inside pyserini, rerankers, LlamaIndex and LangChain.

Each adapter imports its framework lazily and names the extra to install when it is missing.
"""
