"""Prompt texts, reproduced exactly from the published systems.

A trained checkpoint only works with the prompt it was trained on, so these strings are
interface constants (R1-Ranker: ulab-uiuc/IRanker; Rank-R1: ielab/llm-rankers). Everything here
is a pure function of its arguments; rankers and training data both build prompts through it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .types import Candidate

TASKS = ("passage", "recommendation", "routing")
SCENARIOS = ("performance", "balance", "cost")
ITEM_TYPES = ("movie", "item")


def cut_candidates(
    candidates: Sequence[Candidate], task: str, cut: Callable[[list[str]], list[str]]
) -> list[Candidate]:
    """The candidates as prompts show them, their texts cut by `cut` in one call (a tokenizer
    cuts a batch faster). An LLM's name is its answer label and stays whole (cutting it could
    make two names equal); its description is cut instead."""
    if task != "routing":
        texts = cut([c.text for c in candidates])
        return [dataclasses.replace(c, text=text) for c, text in zip(candidates, texts, strict=True)]
    descriptions = cut([str(c.metadata.get("description", "")) for c in candidates])
    return [
        dataclasses.replace(c, metadata={**c.metadata, "description": description})
        for c, description in zip(candidates, descriptions, strict=True)
    ]


# --- R1-Ranker chat wrapper (raw ChatML, no chat template, ends inside an open think tag) ---

R1_SYSTEM = (
    "You are a helpful assistant. You first {verb} about the reasoning process in the mind "
    "and then provides the user with the answer."
)


def r1_chat(problem: str, *, system_verb: str = "thinks") -> str:
    """Wrap an R1-Ranker problem text; `system_verb="think"` matches the rec/routing evaluators."""
    system = R1_SYSTEM.format(verb=system_verb)
    return (
        f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n {problem} "
        "Show your work in <think> </think> tags. And return the final answer in "
        "<answer> </answer> tags.<|im_end|>\n<|im_start|>assistant\n"
        "Let me solve this step by step.\n<think>"
    )


def passage_label(position: int) -> str:
    return f"passage {position}"


def passage_list(texts: Sequence[str]) -> str:
    return "\n".join(f"passage {i}: {text}" for i, text in enumerate(texts))


def history_list(history: Sequence[str]) -> str:
    """The user's history as the Python list repr of `'i. Title'` items (upstream format)."""
    return repr([f"{i}. {title}" for i, title in enumerate(history)])


def routing_descriptions(names: Sequence[str], descriptions: Sequence[str]) -> str:
    return "\n".join(f"# {name}: {text}" for name, text in zip(names, descriptions, strict=True))


# --- IRanker: name the LEAST relevant candidate ---

IRANKER_PASSAGE = (
    "Here is a query: {query}.\nAnd here are the candidate passages:\n{passages}\n\n"
    "Please think step by step according to the content of each passage and how well it "
    "supports or relates to the query. Select the least likely passage from the candidate list. "
    'Only return the passage ID corresponding to the excluded passage (e.g., "passage x"). '
    "You MUST choose one passage from the candidate list. You can not generate content that is "
    "not in the given candidate list."
)

IRANKER_MOVIE = (
    "I've watched the following movies in the past, in order:\n{history}\n\n"
    "Now there are {n} candidate movies that I might watch next:\n{candidates}\n\n"
    "Please select the one movie that is least likely to be my next watch, according to my "
    "watching history. Please think step by step.\n"
    "You MUST choose exactly one movie from the given candidate list.\n"
    "You can NOT generate or reference movies that are not in the given candidate list.\n"
    "Return only the full name of the movie."
)

IRANKER_ITEM = (
    "I've purchased the following items in the past, in order:\n{history}\n\n"
    "Now there are {n} candidate items that I might purchase next:\n{candidates}\n\n"
    "Please select the one item that is least likely to be my next purchase, according to my "
    "purchase history. Please think step by step.\n"
    "You MUST choose exactly one item from the given candidate list.\n"
    "You can NOT generate or reference items that are not in the given candidate list.\n"
    "Return only the full name of the item."
)

IRANKER_ROUTING = (
    "I've been given the following query:\n{query}\n\n"
    "The LLM names and their descriptions are:\n{descriptions}\n\n"
    "Now there are {n} candidate LLMs that could handle this query:\n{candidates}\n\n"
    "{instruction}\n"
    "You MUST choose exactly one LLM from the given candidate list.\n"
    "You can NOT generate or reference LLMs that are not in the given candidate list.\n"
    "Return only the full name of the LLM."
)

ROUTING_ELIMINATE = {
    "performance": "Please select the one LLM that is least PERFORMANCE-EFFICIENT for handling "
    "this query, prioritizing performance and quality while still being cost-conscious. "
    "Please think step by step.",
    "balance": "Please select the one LLM that is least BALANCED for handling this query, "
    "considering both the query requirements and cost efficiency. Please think step by step.",
    "cost": "Please select the one LLM that is least COST-EFFICIENT for handling this query, "
    "prioritizing cost efficiency while still meeting the minimum requirements. "
    "Please think step by step.",
}

# --- DRanker: rank the whole list in one answer, best first, one per line ---

DRANKER_PASSAGE = (
    "## Here is a query: {query} and candidate passages:\n{passages}\n\n"
    "Please think step by step according to the content of each passage and how well it "
    "supports or relates to the query. Rank all passages from most relevant to least relevant. "
    "Return the passage IDs in order, one per line (e.g.,\npassage 1\npassage 3\npassage 2). "
    "You MUST rank all passages from the candidate list. You can not generate content that is "
    "not in the given candidate list."
)

# Upstream never released DRanker prompts for these domains; ours follow the IRanker wording.
DRANKER_MOVIE = (
    "I've watched the following movies in the past, in order:\n{history}\n\n"
    "Now there are {n} candidate movies that I might watch next:\n{candidates}\n\n"
    "Please rank all candidate movies from most likely to least likely to be my next watch, "
    "according to my watching history. Please think step by step.\n"
    "You MUST rank all movies from the given candidate list.\n"
    "You can NOT generate or reference movies that are not in the given candidate list.\n"
    "Return the full names of the movies in order, one per line."
)

DRANKER_ITEM = (
    "I've purchased the following items in the past, in order:\n{history}\n\n"
    "Now there are {n} candidate items that I might purchase next:\n{candidates}\n\n"
    "Please rank all candidate items from most likely to least likely to be my next purchase, "
    "according to my purchase history. Please think step by step.\n"
    "You MUST rank all items from the given candidate list.\n"
    "You can NOT generate or reference items that are not in the given candidate list.\n"
    "Return the full names of the items in order, one per line."
)

DRANKER_ROUTING = (
    "I've been given the following query:\n{query}\n\n"
    "The LLM names and their descriptions are:\n{descriptions}\n\n"
    "Now there are {n} candidate LLMs that could handle this query:\n{candidates}\n\n"
    "{instruction}\n"
    "You MUST rank all LLMs from the given candidate list.\n"
    "You can NOT generate or reference LLMs that are not in the given candidate list.\n"
    "Return the full names of the LLMs in order, one per line."
)

ROUTING_RANK = {
    "performance": "Please rank all candidate LLMs from most to least PERFORMANCE-EFFICIENT for "
    "handling this query, prioritizing performance and quality while still being "
    "cost-conscious. Please think step by step.",
    "balance": "Please rank all candidate LLMs from most to least BALANCED for handling this "
    "query, considering both the query requirements and cost efficiency. "
    "Please think step by step.",
    "cost": "Please rank all candidate LLMs from most to least COST-EFFICIENT for handling this "
    "query, prioritizing cost efficiency while still meeting the minimum requirements. "
    "Please think step by step.",
}


# --- IRanker multi-elimination (our variant: name the `count` least relevant in one step) ---
# The paper's wording with the single choice turned into `{count}` choices, one per line.

_MULTI_ELIMINATE = {
    "passage": (
        "Select the least likely passage from the candidate list. Only return the passage ID corresponding to the "
        'excluded passage (e.g., "passage x"). You MUST choose one passage from the candidate list.',
        "Select the {count} least likely passages from the candidate list. Only return the passage IDs "
        'corresponding to the excluded passages, one per line (e.g., "passage x"). You MUST choose {count} '
        "different passages from the candidate list.",
    ),
    "movie": (
        "select the one movie that is least likely to be my next watch",
        "select the {count} movies that are least likely to be my next watch",
    ),
    "item": (
        "select the one item that is least likely to be my next purchase",
        "select the {count} items that are least likely to be my next purchase",
    ),
    "routing": ("Please select the one LLM that is least", "Please select the {count} LLMs that are least"),
}
_MULTI_CHOOSE = {
    "movie": ("You MUST choose exactly one movie", "Return only the full name of the movie."),
    "item": ("You MUST choose exactly one item", "Return only the full name of the item."),
    "routing": ("You MUST choose exactly one LLM", "Return only the full name of the LLM."),
}


def multi_elimination(problem: str, task: str, count: int, *, item_type: str = "movie") -> str:
    """Turn a single-elimination problem text into one asking for the `count` least relevant."""
    key = item_type if task == "recommendation" else task
    single, multi = _MULTI_ELIMINATE[key]
    if single not in problem:
        raise ValueError(f"not an IRanker {task} problem")
    problem = problem.replace(single, multi.format(count=count))
    if key in _MULTI_CHOOSE:
        choose, answer = _MULTI_CHOOSE[key]
        noun = answer.removeprefix("Return only the full name of the ").rstrip(".")
        plural = "LLMs" if noun == "LLM" else f"{noun}s"
        problem = problem.replace(choose, f"You MUST choose exactly {count} different {plural}")
        problem = problem.replace(answer, f"Return only the full names of the {plural}, one per line.")
    return problem


def r1_problem(
    kind: str,
    task: str,
    query: str | Sequence[str],
    candidates: Sequence[Candidate | str],
    *,
    scenario: str = "performance",
    item_type: str = "movie",
    count: int = 1,
) -> str:
    """The problem text of one IRanker step (`kind="iranker"`, naming the `count` least relevant)
    or one DRanker call (`kind="dranker"`): the one place these prompts are assembled, for
    inference and for training rows alike. Routing candidates carry `metadata["description"]`."""
    items = [c if isinstance(c, Candidate) else Candidate(str(i), c) for i, c in enumerate(candidates)]
    texts = [c.text for c in items]
    iterative = kind == "iranker"
    if task == "passage":
        template = IRANKER_PASSAGE if iterative else DRANKER_PASSAGE
        problem = template.format(query=query, passages=passage_list(texts))
    elif task == "recommendation":
        if item_type == "movie":
            template = IRANKER_MOVIE if iterative else DRANKER_MOVIE
        else:
            template = IRANKER_ITEM if iterative else DRANKER_ITEM
        problem = template.format(history=history_list(query), n=len(texts), candidates=repr(texts))
    elif task == "routing":
        template = IRANKER_ROUTING if iterative else DRANKER_ROUTING
        descriptions = [str(c.metadata.get("description", "")) for c in items]
        problem = template.format(
            query=query,
            descriptions=routing_descriptions(texts, descriptions),
            n=len(texts),
            candidates=repr(texts),
            instruction=(ROUTING_ELIMINATE if iterative else ROUTING_RANK)[scenario],
        )
    else:
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
    return multi_elimination(problem, task, count, item_type=item_type) if count > 1 else problem


def answer_labels(task: str, texts: Sequence[str]) -> list[str]:
    """What the model answers with in R1 prompts: `passage i` for passages, the full name otherwise."""
    return [passage_label(i) for i in range(len(texts))] if task == "passage" else list(texts)


# --- Rank-R1 setwise (chat messages through the tokenizer's chat template) ---

SETWISE_SYSTEM = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant "
    "solves it. The assistant first thinks about the reasoning process in the mind and then "
    "provides the user with the answer. The reasoning process and answer are enclosed within "
    "<think> </think> and <answer> </answer> tags, respectively, i.e., <think> reasoning process "
    "here </think> <answer> answer here </answer>."
)

SETWISE_USER = (
    'Given the query: "{query}", which of the following documents is most relevant?\n{docs}\n'
    "After completing the reasoning process, please provide only the label of the most relevant "
    "document to the query, enclosed in square brackets, within the answer tags. For example, "
    "if the third document is the most relevant, the answer should be: <think> reasoning process "
    "here </think> <answer>[3]</answer>."
)


def setwise_user(query: str, texts: Sequence[str], *, label_colon: bool = False) -> str:
    """Rank-R1's user turn; documents `[i] text` (training form) or `[i]: text` (`label_colon`)."""
    sep = ": " if label_colon else " "
    docs = "\n".join(f"[{i}]{sep}{text}" for i, text in enumerate(texts, start=1))
    return SETWISE_USER.format(query=query, docs=docs)


def setwise_messages(query: str, texts: Sequence[str], *, label_colon: bool = False) -> list[dict]:
    """Rank-R1 chat messages (system and user), as training data and chat templates take them."""
    return [
        {"role": "system", "content": SETWISE_SYSTEM},
        {"role": "user", "content": setwise_user(query, texts, label_colon=label_colon)},
    ]


@dataclass(frozen=True)
class ChatFormat:
    """A chat template resolved once for one system turn: a prompt is `head + user text + tail`.

    Resolving it before a step machine runs keeps the machine free of tokenizer calls.
    """

    head: str
    tail: str

    @classmethod
    def resolve(cls, apply_template: Callable[[list[dict]], str], system: str) -> ChatFormat:
        """Render the template once around a placeholder user turn and keep what surrounds it."""
        placeholder = "\x00user-turn\x00"
        rendered = apply_template([{"role": "system", "content": system}, {"role": "user", "content": placeholder}])
        if rendered.count(placeholder) != 1:
            raise ValueError("the model's chat template does not keep the user's text as given")
        head, tail = rendered.split(placeholder)
        return cls(head, tail)

    def prompt(self, user: str) -> str:
        return self.head + user + self.tail
