"""Hugging Face transformers engine: the small, dependency-light fallback.

Batched `generate` with left padding; requests that share sampling settings run together,
sorted by length so padding stays small.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..settings import Checked, option
from ..types import Completion, Request
from .base import Engine, EngineError, first_line, prompt_ids


@dataclass
class TransformersOptions(Checked):
    """Engine options of the transformers backend."""

    dtype: str = option("auto", "weights' dtype: auto, float32, bfloat16 or float16")
    revision: str | None = option(None, "model revision on the Hub (branch, tag or commit)")
    lora: str | None = option(None, "LoRA adapter (hub id or path), merged into the weights")
    device: str | None = option(None, "torch device, e.g. cuda:0 (default: the CPU)")
    max_batch_size: int = option(32, "sequences per generate call at most", minimum=1)
    max_batch_tokens: int = option(65536, "padded tokens per generate call at most", minimum=1)
    trust_remote_code: bool = option(False, "run code shipped with the model (off unless asked)")
    seed: int = option(0, "sampling seed")


class TransformersEngine(Engine):
    backend = "transformers"
    Options = TransformersOptions
    libraries = ("torch", "transformers")
    loads_weights = True
    config: TransformersOptions

    def __init__(self, model: str, **options: Any) -> None:
        """`options`: see `TransformersOptions`."""
        super().__init__(model, **options)
        self._model = None
        self._context_length: int | None = None
        self._lock = threading.RLock()

    def _load_tokenizer(self) -> Any:
        tokenizer = super()._load_tokenizer()
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        return tokenizer

    @property
    def context_length(self) -> int | None:
        if self._context_length is None:
            from transformers import AutoConfig

            try:
                config = AutoConfig.from_pretrained(
                    self.model, revision=self.config.revision, trust_remote_code=self.config.trust_remote_code
                )
            except (OSError, ValueError) as error:
                raise EngineError(f"cannot load the config of {self.model!r}: {first_line(error)}") from error
            self._context_length = getattr(config, "max_position_embeddings", None) or 0
        return self._context_length or None

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                import torch
                from transformers import AutoModelForCausalLM

                try:
                    model = AutoModelForCausalLM.from_pretrained(
                        self.model,
                        revision=self.config.revision,
                        dtype=self.config.dtype if self.config.dtype == "auto" else getattr(torch, self.config.dtype),
                        trust_remote_code=self.config.trust_remote_code,
                    )
                except (OSError, ValueError) as error:
                    raise EngineError(f"cannot load model {self.model!r}: {first_line(error)}") from error
                if self.config.lora:
                    from peft import PeftModel

                    model = PeftModel.from_pretrained(model, self.config.lora).merge_and_unload()
                if self.config.device:
                    model = model.to(self.config.device)
                self._model = model.eval()
                self.count(model_loads=1)
            return self._model

    def load(self) -> None:
        self._load()
        self.tokenizer  # noqa: B018

    def close(self) -> None:
        with self._lock:
            self._model = None

    def _generate(self, requests: Sequence[Request]) -> list[Completion]:
        model = self._load()
        tokenizer = self.tokenizer
        out: list[Completion | None] = [None] * len(requests)
        groups: dict[tuple, list[int]] = defaultdict(list)
        for i, request in enumerate(requests):
            key = (request.max_tokens, request.temperature, request.stop, request.ignore_eos)
            groups[key].append(i)
        with self._lock:
            for (max_tokens, temperature, stop, ignore_eos), indices in groups.items():
                encoded = dict(zip(indices, prompt_ids(tokenizer, [requests[i] for i in indices]), strict=True))
                for chunk in self._chunks(sorted(indices, key=lambda i: len(encoded[i])), encoded, max_tokens):
                    prompts = [encoded[i] for i in chunk]
                    texts = self._run(model, prompts, max_tokens, temperature, stop, ignore_eos)
                    for i, completion in zip(chunk, texts, strict=True):
                        out[i] = completion
        return out  # type: ignore[return-value]

    def _chunks(self, order: list[int], encoded: dict[int, list[int]], max_tokens: int):
        chunk: list[int] = []
        for i in order:
            longest = max(len(encoded[i]), *(len(encoded[j]) for j in chunk)) if chunk else len(encoded[i])
            if chunk and (
                len(chunk) >= self.config.max_batch_size
                or (len(chunk) + 1) * (longest + max_tokens) > self.config.max_batch_tokens
            ):
                yield chunk
                chunk = []
            chunk.append(i)
        if chunk:
            yield chunk

    def _run(
        self,
        model: Any,
        prompts: list[list[int]],
        max_tokens: int,
        temperature: float,
        stop: tuple[str, ...],
        ignore_eos: bool,
    ) -> list[Completion]:
        import torch

        tokenizer = self.tokenizer
        width = max(len(p) for p in prompts)
        pad = tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
        attention = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
        options: dict[str, Any] = {"do_sample": temperature > 0, "max_new_tokens": max_tokens}
        if ignore_eos:
            options.update(min_new_tokens=max_tokens)
        elif stop:  # a real model goes on after `</answer>` unless told to stop
            options["stopping_criteria"] = [_StopStrings(tokenizer, stop, width)]
        if temperature > 0:
            torch.manual_seed(self.config.seed)
            options["temperature"] = temperature
        else:  # silence generation_config's sampling defaults under greedy decoding
            options.update(temperature=None, top_p=None, top_k=None)
        with torch.inference_mode():
            output = model.generate(
                input_ids=input_ids.to(model.device),
                attention_mask=attention.to(model.device),
                pad_token_id=pad,
                **options,
            )
        self.count(batches=1)
        # finished rows are padded: the first eos or pad token ends a completion
        eos = set(_as_list(model.generation_config.eos_token_id)) | {tokenizer.eos_token_id, pad}
        completions = []
        for prompt, row in zip(prompts, output[:, width:].tolist(), strict=True):
            ended = None if ignore_eos else next((k for k, t in enumerate(row) if t in eos), None)
            ids = row[: ended + 1] if ended is not None else row
            text = tokenizer.decode(ids, skip_special_tokens=True)
            stopped = _cut_at_stop(text, stop)  # cut afterwards: stop_strings costs ~1 s per call
            cut_off = ended is None and stopped is None and len(ids) >= max_tokens
            completions.append(
                Completion(
                    text=stopped if stopped is not None else text,
                    finish_reason="length" if cut_off else "stop",
                    prompt_tokens=len(prompt),
                    completion_tokens=len(ids),
                    sequence_ids=(*prompt, *ids) if cut_off else (),
                )
            )
        return completions


class _StopStrings:
    """Per-row stop strings for `generate`: a row ends once its generated tail holds one.

    transformers' own `stop_strings` precomputes tables over the whole vocabulary on every call
    (about a second); decoding the last few generated tokens of each row costs microseconds.
    """

    def __init__(self, tokenizer: Any, stop: tuple[str, ...], prompt_width: int) -> None:
        self.tokenizer = tokenizer
        self.stop = stop
        self.prompt_width = prompt_width
        self.window = max(len(s) for s in stop) + 1  # tokens: at least one character each

    def __call__(self, input_ids: Any, scores: Any, **_: Any) -> Any:
        import torch

        tails = self.tokenizer.batch_decode(input_ids[:, self.prompt_width :][:, -self.window :])
        return torch.tensor([any(s in tail for s in self.stop) for tail in tails], device=input_ids.device)


def _as_list(value: Any) -> list[int]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _cut_at_stop(text: str, stop: tuple[str, ...]) -> str | None:
    """Text up to and including the first stop string (vLLM's include_stop_str_in_output)."""
    hits = [(text.find(s), s) for s in stop if s in text]
    if not hits:
        return None
    position, string = min(hits)
    return text[: position + len(string)]
