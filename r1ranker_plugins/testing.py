"""Test helpers: a tiny, locally built, random-weight Qwen2 model, and a simulated judge.

The test-suite and demos need a real Hugging Face checkpoint (config, weights,
tokenizer, chat template) that loads offline in transformers and vLLM and runs
in milliseconds on a CPU.  :func:`tiny_model` builds one from scratch without
touching the network.  :class:`SimulatedJudge` is an engine that answers from
relevance labels, for studying the ranking algorithms (not models).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .engines.base import Engine
from .types import Completion, Request

__all__ = ["SimulatedJudge", "query_key", "tiny_model"]

DEFAULT_SYSTEM_PROMPT = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."

# Qwen2.5-style chat template: default system prompt, ChatML turns.
CHAT_TEMPLATE = (
    "{%- if messages[0]['role'] != 'system' %}"
    "{{- '<|im_start|>system\\n" + DEFAULT_SYSTEM_PROMPT + "<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- endif %}"
)

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

# Tokenizer training text: generic English from the ranking domain plus the
# tags that prompts and parsers in this package use, so they get merged tokens.
_CORPUS = """\
Search engines rank passages by how relevant they are to a query. A good ranker
reads every passage, compares them, and returns the most useful ones first.
The user asked a question about the weather, the history of a city, or the best
way to cook rice, and the system retrieved twenty candidate documents.
Language models can reason step by step before they give a final answer.
They think about the query, weigh the evidence in each passage, and then write
an ordered list of identifiers such as [3] > [1] > [2].
Movies and games are popular topics for recommendation. A viewer who liked a
science fiction film may enjoy another movie with space travel and robots.
A player who enjoyed a strategy game might like a puzzle or a role playing game.
Reviews, ratings, titles, genres and release years help to describe each item.
The model reads the instruction, the query and the candidates, then answers.
Retrieval, reranking, recall, precision and ndcg are common evaluation words.
Please rank the following passages based on their relevance to the search query.
Output the ranking in descending order of relevance using the identifiers only.
<think> The first passage mentions the topic directly, so it is relevant. </think>
<answer> [2] > [1] > [3] </answer>
passage 0 passage 1 passage 2 passage 3 passage 4 passage 5 passage 6 passage 7
passage 8 passage 9 passage 10 passage 11 passage 12 passage 13 passage 14
passage 15 passage 16 passage 17 passage 18 passage 19
[1] [2] [3] [4] [5] [6] [7] [8] [9] [10] [11] [12] [13] [14] [15] [16] [17] [18]
[19] [20] 0 1 2 3 4 5 6 7 8 9 10 100 1000 2024 The A I You We It This That
"""

_QWEN2_PRETOKENIZE_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# Saved files whose presence means a previous build finished.
_REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


def _default_path() -> Path:
    env = os.environ.get("R1RANKER_TINY_MODEL")
    if env:
        return Path(env)
    return Path.home() / ".cache" / "r1ranker_plugins" / "tiny-qwen2"


def _is_complete(path: Path) -> bool:
    return all((path / name).is_file() for name in _REQUIRED_FILES)


def tiny_model(path: str | os.PathLike[str] | None = None) -> str:
    """Build (once) a tiny random-weight Qwen2 causal LM and return its directory.

    The weights are random: the model produces gibberish and is only meant for
    tests and demos that need a real, offline-loadable checkpoint (transformers
    or vLLM).  Nothing is downloaded.  The tokenizer is a byte-level BPE trained
    on a small built-in corpus with Qwen2.5-style special tokens and chat
    template.  Weights are seeded, and their scale is large enough that greedy
    decoding gives the same tokens batched (left-padded) and one prompt at a time.

    ``path`` defaults to ``$R1RANKER_TINY_MODEL`` or
    ``~/.cache/r1ranker_plugins/tiny-qwen2``.  The directory is built in a
    temporary sibling and renamed into place under a file lock, so concurrent
    callers never see a half-written model.
    """
    target = Path(path).expanduser() if path is not None else _default_path()
    if _is_complete(target):
        return str(target)

    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target.parent / f".{target.name}.lock")):
        if _is_complete(target):
            return str(target)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            tmp.chmod(0o755)  # mkdtemp's 0o700 would survive the rename
            _build(tmp)
            try:
                os.replace(tmp, target)  # also replaces an empty directory
            except OSError as err:
                msg = f"{target} exists and is not a tiny_model build; remove it or pass another path"
                raise FileExistsError(msg) from err
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return str(target)


def _build(out: Path) -> None:
    import torch
    from tokenizers import (
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        trainers,
    )
    from transformers import (
        GenerationConfig,
        PreTrainedTokenizerFast,
        Qwen2Config,
        Qwen2ForCausalLM,
    )

    # Same normalizer/pre-tokenizer as Qwen2Tokenizer, which transformers 5
    # re-applies on load: the ids must not depend on the loading library.
    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_QWEN2_PRETOKENIZE_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=4096,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_CORPUS.splitlines(keepends=True), trainer=trainer)

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        padding_side="left",
        chat_template=CHAT_TEMPLATE,
        model_max_length=32768,
    )
    eos_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    pad_id = tokenizer.convert_tokens_to_ids("<|endoftext|>")

    config = Qwen2Config(
        vocab_size=-(-len(tokenizer) // 64) * 64,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,  # head_dim 32: vLLM kernels need >= 32
        num_key_value_heads=1,
        max_position_embeddings=32768,
        # Large init gives logits with std ~4, so float rounding (~1e-5) does not
        # flip the greedy argmax between batched and one-at-a-time decoding.
        initializer_range=0.5,
        tie_word_embeddings=True,
        dtype="float32",
        bos_token_id=pad_id,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        architectures=["Qwen2ForCausalLM"],
    )
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config).to(torch.float32)
    model.generation_config = GenerationConfig(
        bos_token_id=pad_id, eos_token_id=eos_id, pad_token_id=pad_id, do_sample=False
    )
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    _add_compat_keys(out)


def _add_compat_keys(out: Path) -> None:
    """Add the keys older transformers releases (e.g. vLLM's) read instead of the new ones."""
    config_file = out / "config.json"
    config = json.loads(config_file.read_text())
    config.setdefault("torch_dtype", "float32")
    config.setdefault("rope_theta", config.get("rope_parameters", {}).get("rope_theta", 10000.0))
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")

    tok_file = out / "tokenizer_config.json"
    tok_config = json.loads(tok_file.read_text())
    tok_config["tokenizer_class"] = "Qwen2Tokenizer"  # not "TokenizersBackend" (v5 only)
    tok_config.setdefault("chat_template", CHAT_TEMPLATE)
    tok_file.write_text(json.dumps(tok_config, indent=2, ensure_ascii=False) + "\n")


# --- simulated judge ------------------------------------------------------------------------------


def query_key(query: str | Sequence[str]) -> str:
    """The label key of a query: the text itself, or a recommendation history's items joined."""
    return query if isinstance(query, str) else "\x1e".join(query)


ERROR_MODELS = ("uniform", "local")


class SimulatedJudge(Engine):
    """A SIMULATION, for algorithm studies only: an engine that answers from relevance labels.

    It reads each request's `meta` (kind, ids, labels, query) instead of the prompt, looks up
    the grades (`labels`: query key -> {candidate id: grade}; unknown ids grade 0) and answers
    in the model's format (`<think>...</think>\n<answer>LABEL</answer>`, or `LABEL</answer>` for
    a forced answer), so the rankers' real prompt and parsing paths run. Numbers it produces
    measure the ranking algorithm under a judge of known quality, never a model.

    Decisions: "least" names the lowest grade (ties: the last shown, so tied candidates keep
    their first-stage order), "most" the highest (ties: the first shown), "order" sorts by
    grade (ties keep prompt order). Two error models, both wrong with probability `error_rate`
    per decision; they differ in what a wrong answer is:

    - "uniform" (default, the pessimistic extreme): a wrong "least"/"most" decision names a
      uniformly random other shown candidate, as likely the best as a near miss. A "least"
      answer with a `count` > 1 is `count` such decisions in a row, each over the candidates
      not yet named, so it errs as that many one-name calls would (in distribution): asking
      for several names at once neither adds errors nor hides them.
    - "local" (errors between neighbours, as a noisy scorer makes them): every answer is read
      off one noisy order, the grade order after one left-to-right pass that swaps each
      adjacent pair with probability `error_rate`; "least" names its last `count`, "most" its
      first.

    An "order" answer is that noisy order under both models. Each request's RNG is seeded from
    (seed, query, kind, ids), so answers do not depend on batching.

    Queries are matched by key; a query the ranker truncated is matched to the unique label
    key it is a prefix of. Token counts use a real tokenizer (`tokenizer`: a tokenizer object,
    or a path/hub id; default: the tiny model's).
    """

    backend = "simulated"

    def __init__(
        self,
        labels: Mapping[str, Mapping[str, int]],
        error_rate: float = 0.0,
        seed: int = 0,
        tokenizer: Any = None,
        error_model: str = "uniform",
    ) -> None:
        if not 0.0 <= error_rate <= 1.0:
            raise ValueError(f"error_rate must be in [0, 1], got {error_rate}")
        if error_model not in ERROR_MODELS:
            raise ValueError(f"error_model must be one of {ERROR_MODELS}, got {error_model!r}")
        super().__init__("simulated-judge", error_rate=error_rate, seed=seed, error_model=error_model)
        self.labels = {key: dict(grades) for key, grades in labels.items()}
        self.error_rate = error_rate
        self.error_model = error_model
        self.seed = seed
        self._tokenizer = tokenizer

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None or isinstance(self._tokenizer, str | os.PathLike):
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(str(self._tokenizer or tiny_model()))
        return self._tokenizer

    def _generate(self, requests: Sequence[Request]) -> list[Completion]:
        self.count(batches=1)
        replies = [self.reply(request) for request in requests]
        encode = self.tokenizer
        prompt_ids = encode([r.prompt for r in requests], add_special_tokens=False)["input_ids"]
        reply_ids = encode(replies, add_special_tokens=False)["input_ids"]
        return [
            Completion(text, "stop", len(p), len(c)) for text, p, c in zip(replies, prompt_ids, reply_ids, strict=True)
        ]

    def resolve(self, query: str | Sequence[str]) -> str:
        """The label key for a (possibly truncated) query."""
        key = query_key(query)
        if key in self.labels:
            return key
        prefix = key.rstrip("\ufffd")
        found = [k for k in self.labels if k.startswith(prefix)]
        if len(found) != 1:
            what = "no labels" if not found else f"{len(found)} queries sharing this prefix"
            raise KeyError(f"simulated judge: {what} for query {key[:60]!r} (raise max_query_tokens)")
        return found[0]

    def decide(self, meta: Mapping[str, Any]) -> list[int]:
        """Shown positions: the chosen candidate for "least"/"most", the full order for "order"."""
        key = self.resolve(meta["query"])
        kind = meta["asked"] if meta["kind"] == "forced_answer" else meta["kind"]
        grades = [self.labels[key].get(str(i), 0) for i in meta["ids"]]
        digest = hashlib.sha256(json.dumps([self.seed, key, kind, list(meta["ids"])]).encode("utf-8")).digest()
        rng = random.Random(int.from_bytes(digest[:8], "big"))
        n = len(grades)
        count = int(meta.get("count", 1))
        if kind == "order" or self.error_model == "local":
            order = sorted(range(n), key=lambda i: -grades[i])
            for i in range(n - 1):
                if rng.random() < self.error_rate:
                    order[i], order[i + 1] = order[i + 1], order[i]
            if kind == "order":
                return order
            if kind not in ("least", "most"):
                raise ValueError(f"simulated judge: unknown request kind {kind!r}")
            return order[-count:][::-1] if kind == "least" else order[:1]
        if kind == "least":
            named: list[int] = []
            for _ in range(min(count, n)):
                left = [i for i in range(n) if i not in named]
                pick = min(left, key=lambda i: (grades[i], -i))
                if len(left) > 1 and rng.random() < self.error_rate:
                    pick = rng.choice([i for i in left if i != pick])
                named.append(pick)
            return named
        if kind == "most":
            best = max(range(n), key=lambda i: (grades[i], -i))
        else:
            raise ValueError(f"simulated judge: unknown request kind {kind!r}")
        if n > 1 and rng.random() < self.error_rate:
            best = rng.choice([i for i in range(n) if i != best])
        return [best]

    def reply(self, request: Request) -> str:
        answer = "\n".join(request.meta["labels"][i] for i in self.decide(request.meta))
        if request.meta["kind"] == "forced_answer":
            return f"{answer}</answer>"
        think = "Simulated judge: decided from relevance labels.</think>"
        opening = "" if request.prompt.rstrip().endswith("<think>") else "<think>"
        return f"{opening}{think}\n<answer>{answer}</answer>"
