"""Typed settings: one declaration per strategy and per backend, checked once, shared by every entry point.

Each strategy declares its options as a dataclass (`IRankerSettings`, ...) and each backend its
engine options (`VLLMOptions`, ...), with help text in the field metadata. From these alone come:

- the checks when a ranker is built: an unknown or misspelled option, or one the chosen strategy or
  backend does not take, is a `ValueError` naming it and the closest valid name;
- the command-line flags of `r1ranker rerank`, `r1ranker eval` and `r1ranker serve`;
- `--config ranker.yaml` / `make_ranker(config=...)`: the same options as one flat mapping
  (`strategy`, `model`, `backend`, then any ranker or engine option), so an experiment is one file.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .prompts import TASKS

ENGINE_ERROR_POLICIES = ("raise", "first-stage")
SPEC_KEYS = ("strategy", "model", "backend")  # what picks the ranker and engine, beside the options


def option(default: Any = None, help: str = "", *, choices: Iterable[Any] | None = None, minimum: float | None = None):
    """A settings field: its default, one line of help, and the values it accepts (checked on build)."""
    metadata = {"help": help, "choices": tuple(choices) if choices is not None else None, "minimum": minimum}
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata=metadata)
    return field(default=default, metadata=metadata)


class Checked:
    """Mixin for settings dataclasses: check every field's type, `choices` and `minimum`."""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for spec in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, spec.name)
            choices, minimum = spec.metadata.get("choices"), spec.metadata.get("minimum")
            if value is None:
                continue
            hint = hints[spec.name]
            members = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
            kinds = tuple(typing.get_origin(k) or k for k in members)
            if Any in kinds:
                continue
            kinds += (int,) if float in kinds else ()  # 1 is a fine float
            if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
                raise ValueError(f"{spec.name} must be {' or '.join(k.__name__ for k in kinds)}, got {value!r}")
            if choices is not None and value not in choices:
                raise ValueError(f"unknown {spec.name} {value!r}; expected one of {choices}")
            if minimum is not None and value < minimum:
                raise ValueError(f"{spec.name} must be >= {minimum}, got {value}")


@dataclass
class RankerSettings(Checked):
    """What every ranker takes."""

    task: str = option("passage", "passage, recommendation (the query is a user's history) or routing", choices=TASKS)
    depth: int | None = option(None, "rerank only the first N candidates; the rest keep their order below", minimum=1)
    max_new_tokens: int = option(1024, "generation budget of each step", minimum=1)
    temperature: float = option(0.0, "sampling temperature; 0 is greedy", minimum=0.0)
    max_candidate_tokens: int = option(256, "cut each candidate text to N tokens of the model's tokenizer", minimum=1)
    max_query_tokens: int = option(128, "cut the query to N tokens", minimum=1)
    batch_size: int = option(1024, "requests per engine call at most", minimum=1)
    on_engine_error: str = option(
        "raise", "when the engine fails: raise, or warn and keep the first-stage order", choices=ENGINE_ERROR_POLICIES
    )


# -- checking options by name --------------------------------------------------------------------


def names(cls: type) -> list[str]:
    return [spec.name for spec in dataclasses.fields(cls)]


def closest(name: str, valid: Iterable[str]) -> str:
    """`; did you mean 'x'?` for the nearest valid name, or nothing when none is near."""
    found = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.6)
    return f"; did you mean {found[0]!r}?" if found else ""


def split_options(
    settings: type, backend: str | None, options: Mapping[str, Any], *, who: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Options → (ranker settings, engine options), or a ValueError naming the first that fits neither.

    `settings` is the strategy's settings dataclass and `who` its name in messages;
    `backend=None`: the caller brings its own engine, so no engine option applies.
    """
    from .engines import ENGINE_OPTIONS

    if backend is not None and backend not in ENGINE_OPTIONS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {sorted(ENGINE_OPTIONS)}")
    ranker, engine = names(settings), names(ENGINE_OPTIONS[backend]) if backend else []
    ranker_options, engine_options = {}, {}
    for key, value in options.items():
        if key in ranker:
            ranker_options[key] = value
        elif key in engine:
            engine_options[key] = value
        else:
            raise ValueError(_misplaced(key, who, backend, ranker + engine))
    return ranker_options, engine_options


def _misplaced(key: str, who: str, backend: str | None, valid: list[str]) -> str:
    from . import STRATEGIES
    from .engines import ENGINE_OPTIONS

    owners = [name for name, cls in STRATEGIES.items() if key in names(cls.Settings)]
    if owners:
        return f"option {key!r} belongs to the {' and '.join(owners)} strategy, not {who}"
    backends = [name for name, cls in ENGINE_OPTIONS.items() if key in names(cls)]
    if backends and backend is None:
        return f"option {key!r} configures an engine; it does not apply to the engine= given"
    if backends:
        return f"option {key!r} belongs to the {' and '.join(backends)} backend, not {backend}"
    return f"unknown option {key!r} for {who} on the {backend or 'given'} engine{closest(key, valid)}"


def build(cls: type, values: Mapping[str, Any], where: str) -> Any:
    """`cls(**values)`, with unknown names reported as a ValueError naming the closest valid one."""
    valid = names(cls)
    for key in values:
        if key not in valid:
            raise ValueError(f"unknown option {key!r} for {where}{closest(key, valid)}")
    return cls(**values)


# -- config files --------------------------------------------------------------------------------


def read_config(path: str | Path) -> dict[str, Any]:
    """A ranker config: YAML or JSON, one flat mapping of `strategy`, `model`, `backend` and options."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config {path} does not exist")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        config = json.loads(text)
    else:
        import yaml

        config = yaml.safe_load(text)
    if not isinstance(config, dict):
        raise ValueError(f"{path}: expected a mapping of options")
    return config


# -- command-line flags ----------------------------------------------------------------------------


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _flag_type(cls: type, name: str) -> Any:
    """The argparse type of a field: its annotation without `None` (a mapping is given as JSON)."""
    annotation = typing.get_type_hints(cls)[name]
    if isinstance(annotation, types.UnionType):
        annotation = next(arg for arg in typing.get_args(annotation) if arg is not type(None))
    return json.loads if typing.get_origin(annotation) is dict or annotation is dict else annotation


def option_fields() -> dict[str, tuple[type, dataclasses.Field, list[str]]]:
    """Every ranker and engine option once: its dataclass, its field, and what takes it."""
    from . import STRATEGIES
    from .engines import ENGINE_OPTIONS

    out: dict[str, tuple[type, dataclasses.Field, list[str]]] = {}
    owners = [(name, cls.Settings) for name, cls in STRATEGIES.items()]
    owners += [(f"{name} backend", cls) for name, cls in ENGINE_OPTIONS.items()]
    for owner, cls in owners:
        for spec in dataclasses.fields(cls):
            out.setdefault(spec.name, (cls, spec, []))[2].append(owner)
    return out


def add_ranker_flags(parser: argparse.ArgumentParser, *, strategies: Iterable[str] | None = None) -> None:
    """`--config`, `--strategy`, `--model`, `--backend` and a flag for every option, from the declarations.

    Flags default to "not given", so a config file's values stand unless a flag overrides them;
    the help shows each option's own default and, unless every strategy takes it, what does.
    """
    from . import STRATEGIES
    from .engines import ENGINE_OPTIONS

    choices = list(strategies) if strategies is not None else sorted(STRATEGIES)
    ranker = parser.add_argument_group("ranker (flags override --config)")
    ranker.add_argument("--config", help="YAML or JSON file of ranker settings: strategy, model, backend, options")
    ranker.add_argument("--strategy", choices=choices, help="ranking strategy")
    ranker.add_argument("--model", help="hub id or local path of the ranking LLM")
    ranker.add_argument("--backend", choices=sorted(ENGINE_OPTIONS), help="generation engine (default: transformers)")
    engine = parser.add_argument_group("engine options")
    common = names(RankerSettings)
    for name, (cls, spec, owners) in option_fields().items():
        default = spec.default if spec.default is not dataclasses.MISSING else spec.default_factory()  # type: ignore[misc]
        takes = "" if name in common else f" [{', '.join(owners)}]"
        text = f"{spec.metadata.get('help', '')}{takes} (default: {default})".replace("%", "%%")
        group = engine if owners[0].endswith(" backend") else ranker
        kind = _flag_type(cls, name)
        if kind is bool:
            group.add_argument(flag(name), action=argparse.BooleanOptionalAction, default=None, help=text)
        else:
            group.add_argument(flag(name), type=kind, default=None, choices=spec.metadata.get("choices"), help=text)


def options_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The config file's mapping, overridden by every flag given: what `make_ranker(**...)` takes."""
    config = read_config(args.config) if getattr(args, "config", None) else {}
    given = {key: getattr(args, key) for key in (*SPEC_KEYS, *option_fields()) if getattr(args, key, None) is not None}
    return {**config, **given}


__all__ = [
    "ENGINE_ERROR_POLICIES",
    "TASKS",
    "RankerSettings",
    "add_ranker_flags",
    "build",
    "option",
    "options_from_args",
    "read_config",
    "split_options",
]


def options_markdown() -> str:
    """Every option as a markdown table (docs/options.md is this, regenerated and checked by a test)."""
    lines = [
        "| option | CLI flag | default | takes it | meaning |",
        "|---|---|---|---|---|",
    ]
    common = names(RankerSettings)
    for name, (_, spec, owners) in option_fields().items():
        default = spec.default if spec.default is not dataclasses.MISSING else spec.default_factory()  # type: ignore[misc]
        takes = "every strategy" if name in common else ", ".join(owners)
        lines.append(f"| `{name}` | `{flag(name)}` | `{default!r}` | {takes} | {spec.metadata.get('help', '')} |")
    return "\n".join(lines) + "\n"
