"""Turning completions into decisions: pure functions, never raising on model text.

Only the completion is parsed, never the prompt, so a candidate that contains
`<answer>passage 0</answer>` cannot answer for the model.
"""

from __future__ import annotations

import difflib
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
_NUMBER = re.compile(r"\d+")
_WORD = re.compile(r"\w+")
_LINES = re.compile(r"\s*(?:>|\n)\s*")
_LINES_AND_COMMAS = re.compile(r"\s*(?:>|,|;|\n)\s*")  # titles may contain commas
_LIST_MARKER = re.compile(r"^\s*(?:\d+[.)]\s+|[-*]\s+)")
_FUZZY_RATIO = 0.9


def extract_answer(completion: str) -> str | None:
    """The content of the LAST closed `<answer>` block, stripped; None when there is none."""
    blocks = _ANSWER.findall(completion)
    return blocks[-1].strip() if blocks else None


def first_line(text: str) -> str:
    return text.strip().split("\n", 1)[0].strip() if text.strip() else ""


def forced_answer_prefix(completion: str) -> str:
    """What follows the prompt when we force an answer: the reasoning, closed, then `<answer>`.

    Used when the model ran out of tokens or wrote no answer block: the short second
    generation continues right after the opening answer tag. A completion without an answer
    block is kept whole, so the engine can continue from the model's own tokens.
    """
    parts = re.split(r"<answer>", completion, maxsplit=1, flags=re.IGNORECASE)
    reasoning = parts[0].rstrip() if len(parts) > 1 else completion
    if "</think>" not in reasoning.lower():
        reasoning = _on_new_line(reasoning, "</think>")
    return _on_new_line(reasoning, "<answer>")


def _on_new_line(text: str, tag: str) -> str:
    return text + tag if text.endswith("\n") else f"{text}\n{tag}"


def normalise(text: str) -> str:
    """Case-, quote-, punctuation- and space-insensitive form for the second matching pass."""
    return " ".join(_WORD.findall(text.casefold()))


@dataclass(frozen=True)
class Match:
    index: int  # position in the labels given to `match_label`
    how: str  # exact | normalised | fuzzy


def match_label(answer: str, labels: Sequence[str], *, numbered: bool = False, tfidf: bool = True) -> Match | None:
    """Map an answer to one label: exact, then normalised, then fuzzy; None if nothing fits.

    `numbered` labels (`passage 3`) also accept the bare or bracketed number (one number,
    however often repeated), or an answer that opens with one label and names no other
    (`passage 2: <the passage quoted>`, as small models answer). Ties go to the last label, so
    an ambiguous elimination removes the lower-ranked duplicate.
    `tfidf=False` stops before the loosest pass (word overlap), for list parsing.
    """
    answer = first_line(answer).strip(" \t\"'`.")
    if not answer or not labels:
        return None
    hits = [i for i, label in enumerate(labels) if label == answer]
    if hits:
        return Match(hits[-1], "exact")
    key = normalise(answer)
    hits = [i for i, label in enumerate(labels) if normalise(label) == key]
    if hits:
        return Match(hits[-1], "normalised")
    if numbered:
        numbers = {int(number) for number in _NUMBER.findall(answer)}
        word = labels[0].rsplit(" ", 1)[0]  # `passage`
        named = {int(number) for number in re.findall(rf"{re.escape(word)}\s*(\d+)", answer, re.IGNORECASE)}
        opening = re.match(rf"{re.escape(word)}\s*(\d+)\b", answer, re.IGNORECASE)
        if len(numbers) != 1 and opening and named == {int(opening.group(1))}:
            numbers = named
        if len(numbers) == 1:
            suffix = f" {numbers.pop()}"
            hits = [i for i, label in enumerate(labels) if label.endswith(suffix)]
            if hits:
                return Match(hits[-1], "normalised")
        return None
    fuzzy = _fuzzy(key, [normalise(label) for label in labels], tfidf=tfidf)
    return Match(fuzzy, "fuzzy") if fuzzy is not None else None


def _fuzzy(key: str, labels: list[str], *, tfidf: bool) -> int | None:
    """Upstream's fuzzy pass: unique substring, then similarity > 0.9, then TF-IDF cosine."""
    if not key:
        return None
    inside = [i for i, label in enumerate(labels) if label and (key in label or label in key)]
    if len(inside) == 1:
        return inside[0]
    ratios = [difflib.SequenceMatcher(None, key, label).ratio() for label in labels]
    best = max(range(len(labels)), key=lambda i: (ratios[i], i))
    if ratios[best] > _FUZZY_RATIO:
        return best
    if not tfidf:
        return None
    cosines = _tfidf_cosines(key, labels)
    best = max(range(len(labels)), key=lambda i: (cosines[i], i))
    return best if cosines[best] > 0 else None


def _tfidf_cosines(key: str, labels: list[str]) -> list[float]:
    docs = [Counter(label.split()) for label in labels]
    df = Counter(word for doc in docs for word in doc)
    n = len(docs)

    def vector(counts: Counter) -> dict[str, float]:
        return {w: c * (math.log((1 + n) / (1 + df[w])) + 1) for w, c in counts.items()}

    query = vector(Counter(key.split()))
    qnorm = math.sqrt(sum(v * v for v in query.values())) or 1.0
    out = []
    for doc in docs:
        vec = vector(doc)
        dot = sum(query.get(w, 0.0) * v for w, v in vec.items())
        norm = math.sqrt(sum(v * v for v in vec.values())) or 1.0
        out.append(dot / (qnorm * norm))
    return out


def parse_ranked_list(answer: str, labels: Sequence[str], *, numbered: bool = False) -> list[int]:
    """Distinct label indices in the order the answer lists them (lines or `a > b > c`).

    Unknown and repeated entries are dropped; the caller appends what is missing.
    """
    seen: list[int] = []
    splitter = _LINES_AND_COMMAS if numbered else _LINES
    for item in splitter.split(answer.strip()):
        item = _LIST_MARKER.sub("", item)
        match = match_label(item, labels, numbered=numbered, tfidf=False) if item else None
        if match is not None and match.index not in seen:
            seen.append(match.index)
    return seen


_LABEL = re.compile(r"\[\s*(\d+)\s*\]")


def parse_setwise_label(answer: str, n: int) -> int | None:
    """Rank-R1 answer `[k]` (1-based) to a 0-based index, or None when not in `[1]..[n]`.

    Only the first line counts, as for R1 answers: a model that repeats itself (`[3]\n\n[2]`)
    has answered with its first label.
    """
    line = first_line(answer)
    found = _LABEL.findall(line) or _NUMBER.findall(line[:8])
    if len({int(k) for k in found}) != 1:
        return None
    k = int(found[0])
    return k - 1 if 1 <= k <= n else None
