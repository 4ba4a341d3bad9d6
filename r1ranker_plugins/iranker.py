"""IRanker: iterative elimination. Each step the model names the least relevant candidate(s).

The final order is the survivor(s), then the eliminated candidates in reverse order of
elimination. Every step removes exactly the number of candidates it asked for, whatever the
model writes.

Cost models, for n candidates (depth) and the top k wanted (docs = candidates placed in prompts):

- `mode="paper"` (R1-Ranker, default): one elimination per call over all n.
  n-1 calls, n-1 sequential rounds, n(n+1)/2 - 1 docs (n=100: 99 rounds, ~5,050 docs).
- `mode="tournament"`: the elimination idea, batched. Selection: split the survivors into groups
  of about `group_size` (first-stage order, so prompts share prefixes) and ask each group, in one
  batch, for its `size - keep` least relevant (keep = k + `margin`, or k once one group is left),
  until k survive: about log_{group_size/k}(n/k) + 1 rounds and n + n*k/group_size + ... docs.
  Ordering: the k survivors are ordered by halving (eliminate the worse half, then order both
  halves in parallel): ceil(log2 k) rounds, about k*ceil(log2 k) docs.
  n=100, k=10, group_size=25: 7 rounds, ~200 docs, 18 calls; exact at a perfect judge.
  Candidates eliminated in later rounds rank above those eliminated earlier.
  Agreement (`agreement="final"`: the last selection round, the one with a single group, where a
  wrong elimination most likely removes one of the best; `"all"`: every round): the group is asked
  twice, the second time in reverse order, what both answers name goes, and one more ask over just
  the disputed candidates settles the rest. Such a round shows its docs twice plus the disputed
  ones, and takes one more round when the answers differ.
  n=100, k=10, group_size=50, agreement="final": at most 7 rounds, ~180 docs, ~14 calls on DL19
  (without agreement: 6, 154, 12), where tied grades make the two answers differ even when right.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from .parsing import match_label, parse_ranked_list
from .prompts import ITEM_TYPES, SCENARIOS, answer_labels, r1_chat, r1_problem
from .ranker import Ranker
from .settings import RankerSettings, option
from .steps import QueryState, StepMachine, ask, gather
from .types import Question, Request, TraceStep

MODES = ("paper", "tournament")
ORDERINGS = ("halving", "one-by-one")
VERBS = ("thinks", "think")
AGREEMENTS = ("none", "final", "all")


@dataclass
class R1Settings(RankerSettings):
    """R1-Ranker prompt settings, shared by IRanker and DRanker (a checkpoint's r1ranker.json sets them)."""

    scenario: str = option("performance", "routing: performance, balance or cost", choices=SCENARIOS)
    item_type: str = option("movie", "recommendation wording: movie, or item (games, music...)", choices=ITEM_TYPES)
    system_verb: str = option(
        "thinks", "system prompt verb: thinks (training) or think (rec/routing evaluators)", choices=VERBS
    )

    def prompt(self, kind: str, query: QueryState, shown: list[int], count: int = 1) -> str:
        """The full R1 prompt over the candidates at positions `shown`."""
        candidates = [query.candidates[i] for i in shown]
        problem = r1_problem(
            kind, self.task, query.query, candidates, scenario=self.scenario, item_type=self.item_type, count=count
        )
        return r1_chat(problem, system_verb=self.system_verb)


@dataclass
class IRankerSettings(R1Settings):
    """IRanker's options (see the module docstring for the modes and their costs)."""

    mode: str = option("paper", "paper: one elimination per call; tournament: batched eliminations", choices=MODES)
    top_k: int = option(10, "tournament: how many candidates to order fully", minimum=1)
    group_size: int = option(25, "tournament: candidates per elimination group", minimum=2)
    margin: int = option(0, "tournament: extra survivors per group, a net against wrong eliminations", minimum=0)
    ordering: str = option(
        "halving", "tournament: order the top k by halving, or one-by-one (the paper's loop)", choices=ORDERINGS
    )
    agreement: str = option(
        "none", "tournament: which selection rounds eliminate only what two reversed asks agree on", choices=AGREEMENTS
    )


def iranker_steps(settings: IRankerSettings, query: QueryState) -> StepMachine[list[int]]:
    """The order of `query.candidates`: the survivor(s) first, then eliminations reversed."""
    shown = list(range(len(query.candidates)))
    if settings.mode == "tournament":
        return (yield from _tournament(settings, query))
    return (yield from _one_by_one(settings, query, shown))


def _one_by_one(settings: IRankerSettings, query: QueryState, shown: list[int]) -> StepMachine[list[int]]:
    """The paper's loop: eliminate one per call; survivor first, then eliminations reversed."""
    remaining, eliminated = list(shown), []
    while len(remaining) > 1:
        [out] = yield from _eliminate(settings, query, remaining, 1)
        eliminated.append(out)
        remaining.remove(out)
    return remaining + eliminated[::-1]


def _tournament(settings: IRankerSettings, query: QueryState) -> StepMachine[list[int]]:
    k = min(settings.top_k, len(query.candidates))
    survivors = list(range(len(query.candidates)))
    rounds: list[list[int]] = []
    while len(survivors) > k:
        groups = _split(survivors, -(-len(survivors) // settings.group_size))
        keep = k + settings.margin if len(groups) > 1 else k
        if all(len(group) <= keep for group in groups):  # the margin would stall: finish in one group
            groups, keep = [survivors], k
        double_check = settings.agreement == "all" or (settings.agreement == "final" and len(groups) == 1)
        eliminate = _eliminate_agreed if double_check else _eliminate
        jobs = [eliminate(settings, query, group, len(group) - keep) for group in groups if len(group) > keep]
        out = sorted(p for eliminated in (yield from gather(jobs)) for p in eliminated)
        rounds.append(out)
        survivors = [p for p in survivors if p not in set(out)]
    order = _halving if settings.ordering == "halving" else _one_by_one
    top = yield from order(settings, query, survivors)
    return top + [p for out in reversed(rounds) for p in out]


def _halving(settings: IRankerSettings, query: QueryState, shown: list[int]) -> StepMachine[list[int]]:
    """Order `shown` best first by halving: drop the worse half, then order both halves."""
    if len(shown) <= 1:
        return list(shown)
    out = set((yield from _eliminate(settings, query, shown, len(shown) // 2)))
    better, worse = [p for p in shown if p not in out], [p for p in shown if p in out]
    first, second = yield from gather([_halving(settings, query, better), _halving(settings, query, worse)])
    return first + second


def _eliminate_agreed(
    settings: IRankerSettings, query: QueryState, shown: list[int], count: int
) -> StepMachine[list[int]]:
    """Eliminate `count` of `shown` only where two asks agree (permutation self-consistency).

    The second ask shows the candidates in reverse order, so a slip (or, for a real model, a
    position bias) is unlikely to repeat. What both name goes. The two answers name as many
    candidates each, so every name only one of them gave is matched by one only the other
    gave; one more ask over just these disputed candidates eliminates half of them. When the
    answers share nothing and cover the whole group, that ask would repeat the first one, so
    the first answer stands.
    """
    first, second = yield from gather(
        [_eliminate(settings, query, shown, count), _eliminate(settings, query, shown[::-1], count)]
    )
    named_twice = set(first) & set(second)
    named_once = set(first) ^ set(second)
    if len(named_once) == len(shown):
        return first
    eliminated = [p for p in first if p in named_twice]
    if named_once:
        disputed = [p for p in shown if p in named_once]
        eliminated += yield from _eliminate(settings, query, disputed, len(disputed) // 2)
    return eliminated


def _eliminate(settings: IRankerSettings, query: QueryState, shown: list[int], count: int) -> StepMachine[list[int]]:
    """Ask for the `count` least relevant of `shown`; always returns exactly `count` of them."""
    numbered = settings.task == "passage"
    labels = answer_labels(settings.task, [query.candidates[i].text for i in shown])
    request = Request(
        prompt=settings.prompt("iranker", query, shown, count),
        max_tokens=settings.max_new_tokens,
        temperature=settings.temperature,
        stop=("</answer>",),
        question=Question("least", query.query, tuple(query.candidates[i].id for i in shown), tuple(labels), count),
    )
    if count == 1:
        parse = lambda answer: match_label(answer, labels, numbered=numbered)  # noqa: E731
    else:
        parse = lambda answer: parse_ranked_list(answer, labels, numbered=numbered)[:count] or None  # noqa: E731
    label_start = "passage " if numbered else ""
    [outcome] = yield from ask([request], parse, answer_tokens=8 * count + 24, label_start=label_start)
    if count == 1 and outcome.parsed is not None:
        chosen, how = [shown[outcome.parsed.index]], outcome.parsed.how
    else:
        chosen, how = [shown[i] for i in outcome.parsed or []], "list" if outcome.parsed else "none"
    fallback = None
    if len(chosen) < count:  # make up the shortfall from the bottom of the first-stage order
        missing = count - len(chosen)
        chosen += sorted((p for p in shown if p not in chosen), reverse=True)[:missing]
        fallback = f"{missing} of {count} eliminations not matched; took the last in first-stage order"
    query.trace.append(
        TraceStep(request.prompt, outcome.completion, outcome.answer, how, fallback, outcome.forced, chosen)
    )
    return chosen


def _split(items: list[int], parts: int) -> list[list[int]]:
    """`parts` contiguous groups whose sizes differ by at most one."""
    size, extra = divmod(len(items), parts)
    bounds = [i * size + min(i, extra) for i in range(parts + 1)]
    return [items[a:b] for a, b in itertools.pairwise(bounds)]


class IRanker(Ranker):
    """Iterative elimination ranker (R1-Ranker's IRanker); options: `IRankerSettings`."""

    strategy = "iranker"
    Settings = IRankerSettings

    @property
    def label(self) -> str:
        return self.strategy if self.settings.mode == "paper" else f"{self.strategy}-{self.settings.mode}"

    def steps(self, query: QueryState) -> StepMachine[list[int]]:
        return iranker_steps(self.settings, query)

    def estimated_steps(self, n: int) -> int:
        """n-1 in the paper's loop; for the tournament, its groups (twice where asked twice) and k-1."""
        settings = self.settings
        if settings.mode == "paper" or n <= 1:
            return max(n - 1, 0)
        k, steps = min(settings.top_k, n), 0
        while n > k:
            groups = -(-n // settings.group_size)
            twice = settings.agreement == "all" or (settings.agreement == "final" and groups == 1)
            steps += groups * (2 if twice else 1)
            n = k if groups == 1 or k + settings.margin >= n / groups else groups * (k + settings.margin)
        return steps + k - 1
