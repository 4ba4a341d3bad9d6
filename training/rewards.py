"""Reward functions for GRPO on ranking tasks: pure, TRL-signature callables on the completion only.

Every function has TRL's reward signature `f(prompts, completions, **columns) -> list[float]`:
`completions` are strings (plain-text prompts) or lists of chat messages (conversational prompts),
and the dataset columns the reward needs (`gt`, `candidates`, `task`) arrive as keyword lists.
Only the completion is parsed, never the prompt: upstream scored prompt + response together, which
turned the format terms into constant offsets and let candidate texts answer for the model. The
prompt is looked at for one thing only: whether it already opened the `<think>` tag (R1 prompts end
inside an open think block), so the format check sees the response as the model wrote it.
No function raises on model text: malformed, truncated or adversarial completions get low rewards.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Any

from r1ranker_plugins.parsing import extract_answer, first_line, match_label, parse_ranked_list, parse_setwise_label

RewardFunction = Callable[..., list[float]]

NO_ANSWER = -1.0  # no closed <answer> block (upstream: -1 before the format terms)
NOT_A_CANDIDATE = -0.5  # IRanker: the answer is not exactly one of the candidates
TAG_PENALTY = -0.25  # per think/answer tag that is missing or repeated
BROKEN_SHAPE = -1.0  # the response is not `<think>…</think> <answer>…</answer>`

_TAGS = ("<think>", "</think>", "<answer>", "</answer>")
_NO_TAG = r"(?:(?!</?think>|</?answer>).)*"  # text without any think/answer tag inside
_SHAPE = re.compile(rf"\s*<think>{_NO_TAG}</think>\s*<answer>({_NO_TAG})</answer>\s*", re.DOTALL)
_LABEL_ONLY = re.compile(r"\[\s*\d+\s*\]")


def completion_text(completion: str | Sequence[dict[str, Any]]) -> str:
    """The generated text: a string as is, or the content of a conversational completion's messages."""
    if isinstance(completion, str):
        return completion
    parts = []
    for message in completion or ():
        content = message.get("content", "") if isinstance(message, dict) else ""
        parts.append(content if isinstance(content, str) else "")
    return "".join(parts)


def _opens_think(prompt: Any) -> bool:
    """R1 prompts are raw ChatML ending in `<think>`: the response continues inside that block."""
    return isinstance(prompt, str) and prompt.rstrip().endswith("<think>")


def response(prompt: Any, completion: str | Sequence[dict[str, Any]]) -> str:
    """The response as the format rules read it: with the `<think>` the prompt opened put back in front."""
    text = completion_text(completion)
    return f"<think>{text}" if _opens_think(prompt) else text


def _prompts(prompts: Sequence[Any] | None, n: int) -> Sequence[Any]:
    return prompts if prompts is not None and len(prompts) == n else [None] * n


# -- format terms -----------------------------------------------------------------------------------


def format_reward(prompts: Sequence[Any] | None = None, completions: Sequence[Any] = (), **_: Any) -> list[float]:
    """0 for exactly one `<think>…</think>` then one `<answer>…</answer>` (whitespace free), else -1.

    Upstream demanded whitespace inside every tag; we accept `<answer>passage 3</answer>`, the form
    the rankers' forced answers and the setwise prompt's own example use. Nested or repeated blocks
    break the shape.
    """
    return [
        0.0 if _SHAPE.fullmatch(response(p, c)) else BROKEN_SHAPE
        for p, c in zip(_prompts(prompts, len(completions)), completions, strict=True)
    ]


def tag_count_reward(prompts: Sequence[Any] | None = None, completions: Sequence[Any] = (), **_: Any) -> list[float]:
    """-0.25 for each of `<think>`, `</think>`, `<answer>`, `</answer>` not present exactly once."""
    out = []
    for p, c in zip(_prompts(prompts, len(completions)), completions, strict=True):
        text = response(p, c)
        out.append(sum(TAG_PENALTY for tag in _TAGS if text.count(tag) != 1))
    return out


# -- task rewards -----------------------------------------------------------------------------------


def exclusion_score(text: str, gt: str, candidates: Sequence[str]) -> float:
    """IRanker: +1 for naming a non-relevant candidate, 0 for the relevant one, -0.5 for anything else.

    The answer is the first line of the last answer block and must be exactly one candidate label
    (surrounding quotes and spaces aside); a near miss is not a candidate, so the model learns the
    exact form the ranker's first matching pass accepts.
    """
    answer = extract_answer(text)
    if answer is None:
        return NO_ANSWER
    match = match_label(answer, list(candidates), tfidf=False)
    if match is None or match.how != "exact":
        return NOT_A_CANDIDATE
    return 0.0 if candidates[match.index] == gt else 1.0


def _per_rollout(score: Callable[[str, str, Sequence[str]], float], doc: str) -> RewardFunction:
    """A TRL reward callable applying `score(completion text, gt, candidate labels)` to each rollout."""

    def reward(
        prompts: Sequence[Any] | None = None,
        completions: Sequence[Any] = (),
        *,
        gt: Sequence[str],
        candidates: Sequence[Sequence[str]],
        **_: Any,
    ) -> list[float]:
        return [score(completion_text(c), g, labels) for c, g, labels in zip(completions, gt, candidates, strict=True)]

    reward.__doc__ = doc
    reward.__name__ = reward.__qualname__ = score.__name__.replace("_score", "_reward")  # TRL logs by name
    return reward


exclusion_reward = _per_rollout(
    exclusion_score, "IRanker exclusion reward per rollout (see `exclusion_score`); add the format terms beside it."
)


def ranking_score(text: str, gt: str, candidates: Sequence[str], *, numbered: bool, k: int = 20) -> float:
    """DRanker as intended: NDCG@k of the relevant item + coverage penalty (distinct valid / n - 1).

    Every answer line is mapped to a distinct candidate (unknown and repeated lines dropped); with
    one relevant item NDCG@k = 1/log2(rank + 1) when it is listed within the first k, else 0.
    """
    answer = extract_answer(text)
    if answer is None:
        return NO_ANSWER
    listed = parse_ranked_list(answer, list(candidates), numbered=numbered)
    coverage = len(listed) / len(candidates) - 1.0 if candidates else -1.0
    ranked = [candidates[i] for i in listed[:k]]
    ndcg = 1.0 / math.log2(ranked.index(gt) + 2) if gt in ranked else 0.0
    return ndcg + coverage


def ranking_reward(
    prompts: Sequence[Any] | None = None,
    completions: Sequence[Any] = (),
    *,
    gt: Sequence[str],
    candidates: Sequence[Sequence[str]],
    task: Sequence[str] | None = None,
    **_: Any,
) -> list[float]:
    """DRanker ranking reward per rollout (see `ranking_score`); add the format terms beside it."""
    tasks = task if task is not None else ["passage"] * len(completions)
    return [
        ranking_score(completion_text(c), g, labels, numbered=t == "passage")
        for c, g, labels, t in zip(completions, gt, candidates, tasks, strict=True)
    ]


def _lcs_length(a: str, b: str) -> int:
    previous = [0] * (len(b) + 1)
    for char in a:
        current = [0]
        for j, other in enumerate(b):
            current.append(previous[j] + 1 if char == other else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def upstream_ranking_score(text: str, gt: str, candidates: Sequence[str]) -> float:
    """FOR COMPARISON ONLY: upstream's DRanker reward, bug included (without its format terms).

    Upstream passes the answer's first line, a string, where a list of lines is expected, so it
    matches each CHARACTER to the first unused candidate containing it: the "ranking" is mostly the
    candidates in prompt order, whatever the model wrote.
    """
    answer = extract_answer(text)
    if answer is None:
        return NO_ANSWER
    matched: list[int] = []
    for char in first_line(answer):
        name = char.strip()
        for i, candidate in enumerate(candidates):
            clean = candidate.strip()
            hit = clean in name or name in clean or _lcs_length(name, clean) > 0.9 * len(clean)
            if hit and i not in matched:
                matched.append(i)
                break
    if not candidates:
        return NO_ANSWER
    ranked = [candidates[i] for i in matched]
    ndcg = 1.0 / math.log2(ranked.index(gt) + 2) if gt in ranked[:20] else 0.0
    return ndcg + len(set(ranked)) / len(set(candidates)) - 1.0


upstream_ranking_reward = _per_rollout(
    upstream_ranking_score,
    "Opt-in reproduction of upstream's DRanker reward (see `upstream_ranking_score`), to compare runs.",
)


def setwise_score(text: str, gt: str, candidates: Sequence[str]) -> float:
    """Rank-R1: 1 if the whole response has the think/answer shape and the answer is exactly the
    relevant document's `[k]` label, else 0."""
    found = _SHAPE.fullmatch(text)
    if found is None or not _LABEL_ONLY.fullmatch(found.group(1).strip()):
        return 0.0
    index = parse_setwise_label(found.group(1), len(candidates))
    return 1.0 if index is not None and candidates[index] == gt else 0.0


def setwise_reward(
    prompts: Sequence[Any] | None = None,
    completions: Sequence[Any] = (),
    *,
    gt: Sequence[str],
    candidates: Sequence[Sequence[str]],
    **_: Any,
) -> list[float]:
    """Rank-R1 setwise reward per rollout (see `setwise_score`); it includes its own format check."""
    return [
        setwise_score(response(p, c), g, labels)
        for p, c, g, labels in zip(_prompts(prompts, len(completions)), completions, gt, candidates, strict=True)
    ]


REWARDS: dict[str, RewardFunction] = {
    "exclusion": exclusion_reward,
    "ranking": ranking_reward,
    "upstream_ranking": upstream_ranking_reward,
    "setwise": setwise_reward,
    "format": format_reward,
    "tag_count": tag_count_reward,
}

DEFAULT_REWARDS: dict[str, tuple[str, ...]] = {
    "iranker": ("exclusion", "format", "tag_count"),
    "dranker": ("ranking", "format", "tag_count"),
    "setwise": ("setwise",),
}


def reward_functions(names: Sequence[str]) -> list[RewardFunction]:
    """Reward callables by name, with a clear error for an unknown one."""
    unknown = [name for name in names if name not in REWARDS]
    if unknown:
        raise ValueError(f"unknown reward {unknown[0]!r}; expected one of {sorted(REWARDS)}")
    return [REWARDS[name] for name in names]
