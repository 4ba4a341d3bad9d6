"""`r1ranker train`: GRPO (TRL) on ranking tasks, with an optional SFT warm start and LoRA.

The config is data: a YAML file read with `yaml.safe_load` into small dataclasses, unknown keys
rejected. The `trainer:` section is passed to TRL's `GRPOConfig` as is (so every GRPO option —
vLLM rollouts, `beta`, `num_generations`, `report_to`, saving — is available without code here),
`sft.trainer` to `SFTConfig`, `lora` to peft's `LoraConfig`.

Output layout (`output_dir`): `checkpoint-N/` (GRPO, resumable), `sft/` (warm start; `sft/final`
is its model), `final/` (full model + tokenizer + `r1ranker.json`, loadable by `IRanker(model=...)`),
`adapter/` (LoRA runs: the adapter alone, for `SetwiseRanker(lora=...)`), `r1ranker-training.json`
(what was trained on, for the model card).
"""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from r1ranker_plugins.checkpoint import CONFIG_VERSION, PROMPT_VERSION, write_ranker_config
from r1ranker_plugins.datasets import EvalSet, rng_for

from .data import (
    STRATEGIES,
    DataConfig,
    build_examples,
    held_out_keys,
    load_evalsets,
    relevance_prior,
    sft_examples,
    to_dataset,
)
from .rewards import DEFAULT_REWARDS, reward_functions

TINY, SMALL = "tiny", "small"  # model values meaning `r1ranker_plugins.testing.tiny_model()` / `small_model()`
TRAINING_SUMMARY = "r1ranker-training.json"


@dataclass
class LoraSection:
    """peft LoRA settings (Rank-R1: r=16, alpha=32). `merge`: also save the merged full model."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: str | list[str] = "all-linear"
    merge: bool = True


@dataclass
class SftSection:
    """Warm start on generated well-formed completions (`data.sft_examples`) before GRPO.

    `examples`: how many (cycling through the training examples with fresh answers); None = one each.
    `eliminate` (IRanker): which non-relevant candidate the answers name, "random" or "prior" (the
    one least often relevant across the training examples, `data.relevance_prior`).
    `trainer`: `SFTConfig` arguments.
    """

    examples: int | None = None
    reasoning: str = ""
    eliminate: str = "random"
    trainer: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.eliminate not in ("random", "prior"):
            raise ValueError(f"sft.eliminate must be 'random' or 'prior', got {self.eliminate!r}")


@dataclass
class TrainConfig:
    """One training run. `data`: one source, or a list of sources whose examples are mixed.
    `held_out`: evaluation sets whose test queries no training example may come from (checked by
    text, see `data.held_out_keys`). `trainer` holds `GRPOConfig` arguments; `rewards` names
    functions in `rewards.REWARDS` (default: the strategy's reward plus format terms)."""

    model: str
    strategy: str
    data: list[DataConfig]
    held_out: list[str] = field(default_factory=list)
    output_dir: str = "runs/train"
    rewards: list[str] | None = None
    trainer: dict[str, Any] = field(default_factory=dict)
    lora: LoraSection | None = None
    sft: SftSection | None = None

    def __post_init__(self) -> None:
        if isinstance(self.data, DataConfig):
            self.data = [self.data]
        if not self.data:
            raise ValueError("data: give at least one source")
        if len({(source.system_verb, source.label_colon) for source in self.data}) > 1:
            raise ValueError("data: every source must use the same system_verb and label_colon (one prompt)")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.sft is not None and self.sft.eliminate != "random" and self.strategy != "iranker":
            raise ValueError(f"sft.eliminate applies to IRanker answers; strategy is {self.strategy!r}")
        reward_functions(self.reward_names)

    @property
    def reward_names(self) -> list[str]:
        return list(self.rewards) if self.rewards is not None else list(DEFAULT_REWARDS[self.strategy])


# -- config loading ---------------------------------------------------------------------------------


def _section(cls: type, raw: Any, where: str) -> Any:
    """Build dataclass `cls` from a mapping, naming unknown and missing keys."""
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: expected a mapping, got {type(raw).__name__}")
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(raw) - set(names))
    if unknown:
        raise ValueError(f"{where}: unknown key {unknown[0]!r}; expected some of {names}")
    required = [
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    missing = [name for name in required if name not in raw]
    if missing:
        raise ValueError(f"{where}: missing key {missing[0]!r}")
    return cls(**raw)


def _check_arguments(arguments: Mapping[str, Any], config_class: type, where: str) -> None:
    known = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(arguments) - known)
    if unknown:
        raise ValueError(f"{where}: {unknown[0]!r} is not a {config_class.__name__} argument")


def config_from_dict(raw: Any, source: str = "config") -> TrainConfig:
    """A `TrainConfig` from parsed YAML; every section checked against what it feeds."""
    from trl import GRPOConfig, SFTConfig

    if not isinstance(raw, Mapping):
        raise ValueError(f"{source}: expected a mapping at the top level")
    values = dict(raw)
    sources = values.get("data")
    sources = sources if isinstance(sources, list) else [sources]
    values["data"] = [_section(DataConfig, raw, f"{source}: data[{i}]") for i, raw in enumerate(sources)]
    if values.get("lora") is not None:
        values["lora"] = _section(LoraSection, values["lora"], f"{source}: lora")
    if values.get("sft") is not None:
        values["sft"] = _section(SftSection, values["sft"], f"{source}: sft")
        _check_arguments(values["sft"].trainer, SFTConfig, f"{source}: sft.trainer")
    config = _section(TrainConfig, values, source)
    _check_arguments(config.trainer, GRPOConfig, f"{source}: trainer")
    if "output_dir" in config.trainer:
        raise ValueError(f"{source}: set output_dir at the top level, not in trainer")
    return config


def load_config(path: str | Path) -> TrainConfig:
    """Read a training YAML file (safe loader only)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"training config {path} does not exist")
    return config_from_dict(yaml.safe_load(path.read_text(encoding="utf-8")), str(path))


# -- training ---------------------------------------------------------------------------------------


def resolve_model(model: str) -> str:
    """`tiny` and `small` name the local test models (`r1ranker_plugins.testing`); anything else is a hub id or path."""
    from r1ranker_plugins import testing

    return {TINY: testing.tiny_model, SMALL: testing.small_model}.get(model, lambda: model)()


def base_model_name(model: str) -> str:
    """What a checkpoint names as its base: the Hub id of the `small` test model, else `model` as given."""
    from r1ranker_plugins.testing import SMALL_MODEL_ID

    return SMALL_MODEL_ID if model == SMALL else model


def _peft_config(lora: LoraSection | None) -> Any:
    if lora is None:
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        task_type="CAUSAL_LM",
    )


def _save_full(trainer: Any, directory: Path) -> None:
    """The full model (LoRA merged in) and tokenizer, as `from_pretrained` and the rankers load it."""
    model = trainer.model
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    model.save_pretrained(directory)
    trainer.processing_class.save_pretrained(directory)


def ranker_config(
    config: TrainConfig, evalsets: Sequence[EvalSet], examples: Sequence[dict[str, Any]], *, adapter: bool = False
) -> dict[str, Any]:
    """What `r1ranker.json` records: the strategy and prompt settings the data was built with. A model
    trained on several tasks defaults to the one it saw most examples of (adapters pass no task)."""
    tasks = Counter(example["task"] for example in examples)
    out: dict[str, Any] = {
        "config_version": CONFIG_VERSION,
        "prompt_version": PROMPT_VERSION,
        "strategy": config.strategy,
        "task": tasks.most_common(1)[0][0],
        "tasks": sorted(tasks),
        "base_model": base_model_name(config.model),
        "adapter": adapter,
    }
    if config.strategy == "setwise":
        out["label_colon"] = config.data[0].label_colon
    else:
        out["system_verb"] = config.data[0].system_verb
        for key in ("scenario", "item_type"):
            values = {evalset.options[key] for evalset in evalsets if key in evalset.options}
            if len(values) == 1:
                out[key] = values.pop()
    return out


def _warn_cut_completions(pairs: list[dict[str, Any]], model: str, max_length: int) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    texts = [p["prompt"] + p["completion"] for p in pairs if isinstance(p["prompt"], str)]
    cut = sum(len(ids) > max_length for ids in tokenizer(texts, add_special_tokens=False)["input_ids"])
    if cut:
        warnings.warn(
            f"sft.trainer.max_length={max_length} cuts {cut} of {len(texts)} warm-start examples, whose"
            " completions come last and are lost; raise it or leave it unset",
            stacklevel=3,
        )


def _run_sft(config: TrainConfig, model: str, examples: list[dict[str, Any]], out: Path) -> str:
    """Warm start; returns the model GRPO starts from. Skipped when `sft/final` already exists (resume)."""
    from trl import SFTConfig, SFTTrainer

    final = out / "sft" / "final"
    if (final / "config.json").is_file():
        return str(final)
    sft = config.sft
    assert sft is not None
    count = sft.examples or len(examples)
    cycled = [examples[i % len(examples)] for i in range(count)]
    prior = relevance_prior(examples) if sft.eliminate == "prior" else None
    pairs = sft_examples(cycled, config.strategy, seed=config.data[0].seed, reasoning=sft.reasoning, prior=prior)
    # SFTConfig cuts sequences at 1024 tokens by default, from the end: a long ranking prompt would
    # lose its whole completion and the warm start would train on nothing. Keep full sequences.
    arguments = {"report_to": "none", "max_length": None, **sft.trainer}
    if arguments["max_length"] is not None:
        _warn_cut_completions(pairs, model, int(arguments["max_length"]))
    trainer = SFTTrainer(
        model=model,
        args=SFTConfig(output_dir=str(out / "sft"), **arguments),
        train_dataset=to_dataset(pairs),
        peft_config=_peft_config(config.lora),
    )
    trainer.train()
    _save_full(trainer, final)
    trainer.state.save_to_json(str(final / "trainer_state.json"))  # steps and loss of the warm start
    return str(final)


def training_examples(config: TrainConfig, tokenizer: Any) -> tuple[list[EvalSet], list[dict[str, Any]]]:
    """Every source's sets and examples, held-out queries removed, mixed in one seeded order."""
    held_out = held_out_keys(config.held_out, data=config.data[0].data) if config.held_out else set()
    evalsets, examples = [], []
    for source in config.data:
        sets = load_evalsets(source, tokenizer, held_out)
        evalsets += sets
        examples += build_examples(source, config.strategy, sets)
    rng_for("training-mix", config.strategy, config.data[0].seed).shuffle(examples)
    return evalsets, examples


def train(config: TrainConfig, *, output_dir: str | Path | None = None, resume: str | bool | None = None) -> Path:
    """Run the whole recipe and return the `final/` checkpoint directory.

    `resume`: True for the newest `checkpoint-N` in the output directory, or a checkpoint path;
    default: the `trainer.resume_from_checkpoint` value of the config.
    """
    from transformers import AutoTokenizer, set_seed
    from trl import GRPOConfig, GRPOTrainer

    started = time.perf_counter()
    out = Path(output_dir or config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    arguments = {"report_to": "none", **config.trainer}
    resume = arguments.pop("resume_from_checkpoint", None) if resume is None else resume
    set_seed(int(arguments.get("seed", 42)))

    model = resolve_model(config.model)
    evalsets, examples = training_examples(config, AutoTokenizer.from_pretrained(model))
    if config.sft is not None:
        model = _run_sft(config, model, examples, out)

    trainer = GRPOTrainer(
        model=model,
        reward_funcs=reward_functions(config.reward_names),
        args=GRPOConfig(output_dir=str(out), **arguments),
        train_dataset=to_dataset(examples),
        peft_config=_peft_config(config.lora),
    )
    trainer.train(resume_from_checkpoint=resume or None)

    final = out / "final"
    if config.lora is not None:
        trainer.save_model(str(out / "adapter"))
        trainer.processing_class.save_pretrained(out / "adapter")
        write_ranker_config(out / "adapter", ranker_config(config, evalsets, examples, adapter=True))
    if config.lora is None or config.lora.merge:
        _save_full(trainer, final)
        write_ranker_config(final, ranker_config(config, evalsets, examples))
    summary = {
        "config": dataclasses.asdict(config),
        "examples": len(examples),
        "task_mix": dict(Counter(example["task_name"] for example in examples)),
        "held_out": {"sets": config.held_out, "dropped": sum(e.options.get("held_out_dropped", 0) for e in evalsets)},
        "rewards": config.reward_names,
        "global_step": trainer.state.global_step,
        "minutes": round((time.perf_counter() - started) / 60, 2),
        "log_history": trainer.state.log_history,
    }
    for directory in (final, out / "adapter"):
        if directory.is_dir():
            (directory / TRAINING_SUMMARY).write_text(json.dumps(summary, indent=1, default=str), encoding="utf-8")
    return final if final.is_dir() else out / "adapter"
