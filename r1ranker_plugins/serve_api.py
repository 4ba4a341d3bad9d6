"""The wire formats of `r1ranker serve`: Cohere's rerank request and response (v1 and v2, which Jina's
clients also speak) and Hugging Face TEI's `/rerank`.

Requests are read strictly: JSON types as sent (`"3"` is not a number), and an unknown field is an
error naming it, so a misspelt option fails instead of being silently ignored. Scores are comparative:
`(n - rank) / n` over the request's n documents, in (0, 1] and strictly decreasing with rank; they
order one request's documents and mean nothing across requests.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .types import Ranking

JSON_TYPES = {str: "a string", int: "a number", float: "a number", bool: "a boolean", list: "an array"}
JSON_TYPES[dict] = "an object"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


@dataclasses.dataclass
class Job:
    """One ranking to run, whichever API asked for it."""

    query: str
    texts: list[str]
    top_n: int | None = None
    max_tokens: int | None = None  # cut each document to this many tokens first


class CohereRequest(Strict):
    """Cohere's rerank request, v1 and v2 (Jina's is a subset of it), plus `return_trace`."""

    model: str | None = None  # accepted and not checked: the server serves one ranker
    query: str
    documents: list[Any]  # strings, or objects with a "text" string (returned as sent)
    top_n: int | None = Field(None, ge=1)
    return_documents: bool = False
    max_tokens_per_doc: int | None = Field(None, ge=1)
    max_chunks_per_doc: int | None = Field(None, ge=1)  # v1: accepted; documents are cut, never chunked
    priority: int | None = None  # v2: accepted; every request shares one queue
    return_trace: bool = False

    @field_validator("documents")
    @classmethod
    def _texts(cls, documents: list[Any]) -> list[Any]:
        for i, document in enumerate(documents):
            text = document.get("text") if isinstance(document, dict) else document
            if not isinstance(text, str):
                expected = 'a string or an object with a "text" string'
                raise ValueError(f"item {i} is {json_type(document)}; expected {expected}")
        return documents

    def job(self) -> Job:
        texts = [d["text"] if isinstance(d, dict) else d for d in self.documents]
        return Job(self.query, texts, self.top_n, self.max_tokens_per_doc)


class TEIRequest(Strict):
    """Hugging Face text-embeddings-inference's `/rerank` request."""

    query: str
    texts: list[str]
    return_text: bool = False
    raw_scores: bool = False  # the rank scores n, n-1, ..., 1 instead of (n - rank) / n
    truncate: bool = False  # accepted: documents are always cut to the ranker's max_candidate_tokens
    truncation_direction: Literal["Right", "right"] = "Right"  # cuts keep each text's start

    def job(self) -> Job:
        return Job(self.query, self.texts)


@dataclasses.dataclass
class Outcome:
    """A finished ranking and what it cost this request (its own share of the shared batches)."""

    ranking: Ranking
    input_tokens: int = 0
    output_tokens: int = 0
    warnings: list[str] = dataclasses.field(default_factory=list)


def relevance(n: int) -> list[float]:
    return [(n - rank) / n for rank in range(n)]


def cohere_response(request: CohereRequest, outcome: Outcome, version: str, model: str, rid: str) -> dict[str, Any]:
    ranking = outcome.ranking
    n = len(ranking.order)
    results = []
    for score, index in zip(relevance(n), ranking.order[: request.top_n or n], strict=False):
        result: dict[str, Any] = {"index": index, "relevance_score": score}
        if request.return_documents:
            document = request.documents[index]
            result["document"] = document if isinstance(document, dict) else {"text": document}
        results.append(result)
    tokens = {"input_tokens": outcome.input_tokens, "output_tokens": outcome.output_tokens}
    meta: dict[str, Any] = {"api_version": {"version": version}, "tokens": tokens}
    if outcome.warnings:
        meta["warnings"] = outcome.warnings
    body = {
        "id": rid,
        "model": model,
        "results": results,
        "meta": meta,
        "usage": {"total_tokens": outcome.input_tokens + outcome.output_tokens},  # Jina's and vLLM's field
    }
    if request.return_trace:
        body["trace"] = trace(ranking)
    return body


def tei_response(request: TEIRequest, outcome: Outcome) -> list[dict[str, Any]]:
    ranking = outcome.ranking
    scores = ranking.scores if request.raw_scores else relevance(len(ranking.order))
    out = []
    for score, index in zip(scores, ranking.order, strict=True):
        item: dict[str, Any] = {"index": index, "score": score}
        if request.return_text:
            item["text"] = request.texts[index]
        out.append(item)
    return out


def trace(ranking: Ranking) -> dict[str, Any]:
    """Every step of the ranking: prompt, completion, parsed answer, how it was decided (`kind`)."""
    steps = [{**dataclasses.asdict(step), "kind": step.kind} for step in ranking.trace]
    return {"order": ranking.order, "answers": ranking.answers, "steps": steps}


def describe(error: ValidationError, fields: Sequence[str]) -> str:
    """A validation error as one line that names each field at fault (at most five)."""
    parts = []
    for item in error.errors()[:5]:
        where = place(item["loc"])
        kind, context = item["type"], item.get("ctx") or {}
        if kind == "json_invalid":
            parts.append(f"body: not valid JSON ({context.get('error', item['msg'])})")
        elif kind == "model_type" or (kind == "model_attributes_type" and not item["loc"]):
            parts.append(f"body: expected a JSON object, got {json_type(item['input'])}")
        elif kind == "extra_forbidden":
            parts.append(f"{where}: unknown field; expected one of {', '.join(fields)}")
        elif kind == "missing":
            parts.append(f"{where}: required")
        elif kind == "value_error":
            parts.append(f"{where}: {context.get('error', item['msg'])}")
        else:
            parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


def place(loc: Sequence[str | int]) -> str:
    """`("documents", 3, "text")` → `documents[3].text`."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else str(part)
    return out or "body"


def json_type(value: Any) -> str:
    return "null" if value is None else JSON_TYPES.get(type(value), type(value).__name__)


__all__ = ["CohereRequest", "Job", "Outcome", "TEIRequest", "cohere_response", "describe", "tei_response"]
