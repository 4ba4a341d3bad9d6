"""vLLM engine: the fast backend, with automatic prefix caching and optional LoRA.

Every `generate` is one `LLM.generate` call over the whole list, sent as token ids encoded in
one batch; vLLM's scheduler does the continuous batching, and its prefix cache reuses the shared
heads of a query's prompts (the instruction, the query, and for a forced-answer step, sent as the
tokens the model saw and wrote, the whole original prompt and reasoning).
"""

from __future__ import annotations

import dataclasses
import gc
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..settings import Checked, option
from ..types import Completion, Request
from .base import Engine, EngineError, first_line, prompt_ids


@dataclass
class VLLMOptions(Checked):
    """Engine options of the vllm backend (in-process `vllm.LLM`)."""

    dtype: str = option("auto", "weights' dtype: auto, float32, bfloat16 or float16")
    revision: str | None = option(None, "model revision on the Hub (branch, tag or commit)")
    max_model_len: int | None = option(None, "context length (default: the model's)", minimum=1)
    gpu_memory_utilization: float | None = option(
        None, "share of GPU memory to use (vLLM's default 0.9); on a CPU, the share of RAM to reserve", minimum=0.0
    )
    kv_cache_memory_bytes: int | None = option(None, "KV cache size in bytes (CPU default: 1 GiB)", minimum=1)
    tensor_parallel_size: int = option(1, "GPUs to shard the model over", minimum=1)
    kv_cache_dtype: str = option("auto", "KV cache dtype, e.g. fp8 (on a CPU: needs AVX-512 or AMX)")
    lora: str | None = option(None, "LoRA adapter (hub id or path), served through LoRARequest")
    max_lora_rank: int = option(64, "largest LoRA rank to serve", minimum=1)
    enable_prefix_caching: bool = option(True, "reuse the KV cache of shared prompt prefixes")
    enforce_eager: bool = option(False, "skip graph compilation: faster start, slower generation")
    max_num_seqs: int | None = option(None, "sequences in flight at most (vLLM's default)", minimum=1)
    seed: int = option(0, "sampling seed")
    trust_remote_code: bool = option(False, "run code shipped with the model (off unless asked)")
    vllm_kwargs: dict[str, Any] = option({}, "any other vllm.LLM argument, as a JSON object")


class VLLMEngine(Engine):
    """One lazily built `vllm.LLM` per engine; generation is serialised (LLM is not thread-safe)."""

    backend = "vllm"
    Options = VLLMOptions
    libraries = ("vllm", "transformers")
    loads_weights = True
    config: VLLMOptions

    def __init__(self, model: str, **options: Any) -> None:
        """`options`: see `VLLMOptions`."""
        super().__init__(model, **options)
        config = self.config
        llm_args = {
            k: v for k, v in dataclasses.asdict(config).items() if k not in ("lora", "max_lora_rank", "vllm_kwargs")
        }
        self.llm_args: dict[str, Any] = {**llm_args, **config.vllm_kwargs}
        if config.lora:
            self.llm_args.update(enable_lora=True, max_lora_rank=config.max_lora_rank, max_loras=1)
        self._llm: Any = None
        self._lora_request: Any = None
        self._lock = threading.RLock()

    @property
    def context_length(self) -> int | None:
        """`max_model_len` when set; otherwise vLLM decides at load time and enforces it itself."""
        return self.llm_args.get("max_model_len")

    def _load(self) -> Any:
        with self._lock:
            if self._llm is None:
                args = {key: value for key, value in self.llm_args.items() if value is not None}
                args |= _cpu_defaults(args)
                from vllm import LLM
                from vllm.lora.request import LoRARequest

                try:
                    self._llm = LLM(model=self.model, **args)
                except Exception as error:  # vLLM raises many types for a bad model or config
                    raise EngineError(f"cannot start vLLM for model {self.model!r}: {first_line(error)}") from error
                _track(self._llm, in_process=_in_process())
                if self.config.lora:
                    self._lora_request = LoRARequest("r1ranker-lora", 1, self.config.lora)
                self.count(model_loads=1)
            return self._llm

    def _generate(self, requests: Sequence[Request]) -> list[Completion]:
        with self._lock:
            llm = self._load()  # first: it sets the CPU defaults before vllm is imported
            from vllm import SamplingParams
            from vllm.inputs import TokensPrompt

            params = [
                SamplingParams(
                    temperature=r.temperature,
                    max_tokens=r.max_tokens,
                    stop=list(r.stop) or None,
                    include_stop_str_in_output=True,
                    ignore_eos=r.ignore_eos,
                )
                for r in requests
            ]
            encoded = prompt_ids(self.tokenizer, requests)
            try:
                outputs = llm.generate(
                    [TokensPrompt(prompt_token_ids=ids) for ids in encoded],
                    params,
                    use_tqdm=False,
                    lora_request=self._lora_request,
                )
            except Exception as error:
                raise EngineError(f"vLLM failed on model {self.model!r}: {first_line(error)}") from error
        self.count(
            batches=1,
            prefix_cache_queries=sum(len(ids) for ids in encoded),
            prefix_cache_hits=sum(o.num_cached_tokens or 0 for o in outputs),
        )
        tokenizer = self.tokenizer
        completions = []
        for ids, output in zip(encoded, outputs, strict=True):
            best = output.outputs[0]
            cut_off = best.finish_reason == "length"
            completions.append(
                Completion(
                    text=full_text(tokenizer, best.text, best.token_ids, best.stop_reason),
                    finish_reason="length" if cut_off else "stop",
                    prompt_tokens=len(ids),
                    completion_tokens=len(best.token_ids),
                    sequence_ids=(*ids, *best.token_ids) if cut_off else (),
                )
            )
        return completions

    def backend_stats(self) -> dict[str, Any]:
        """Prefix-cache tokens, counted per request (vLLM's Prometheus counters are process-wide)."""
        with self._counts_lock:
            queries = self._counts["prefix_cache_queries"]
            hits = self._counts["prefix_cache_hits"]
        return {
            "prefix_cache_queries": queries,
            "prefix_cache_hits": hits,
            "prefix_cache_hit_rate": hits / queries if queries else 0.0,
        }

    def reset_prefix_cache(self) -> None:
        """Forget cached prefixes, so a benchmark run starts cold and inherits no earlier work."""
        with self._lock:
            if self._llm is not None:
                self._llm.reset_prefix_cache()

    def load(self) -> None:
        self._load()

    def close(self) -> None:
        with self._lock:
            llm, self._llm, self._lora_request = self._llm, None, None
        if llm is None:
            return
        doomed = _release(llm)
        del llm
        while doomed:
            doomed.pop().llm_engine.engine_core.shutdown()
        gc.collect()  # vLLM's object graph has cycles: free the weights and KV cache now


CPU_KV_CACHE_BYTES = 1 << 30


def _cpu_defaults(args: dict[str, Any]) -> dict[str, Any]:
    """Without CUDA: run the engine core in this process, and size the KV cache at 1 GiB unless told.

    On CPU, vLLM reads `gpu_memory_utilization` as the share of the machine's RAM to reserve
    (0.9 by default: most of it, and refused when other processes hold memory). A KV cache of
    1 GiB serves the small models a CPU runs. An explicit `gpu_memory_utilization`,
    `kv_cache_memory_bytes` or `VLLM_CPU_KVCACHE_SPACE` is left to vLLM as given. A separate
    engine-core process only adds start-up time here.
    """
    import torch

    if torch.cuda.is_available():
        return {}
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    told = {"gpu_memory_utilization", "kv_cache_memory_bytes"} & set(args) or os.environ.get("VLLM_CPU_KVCACHE_SPACE")
    return {} if told else {"kv_cache_memory_bytes": CPU_KV_CACHE_BYTES}


def _in_process() -> bool:
    import vllm.envs

    return not vllm.envs.VLLM_ENABLE_V1_MULTIPROCESSING


# An in-process engine core's shutdown tears down torch.distributed state that is global to the
# process and shared by every other in-process LLM; so closed in-process LLMs are kept until the
# last one closes, and then all are shut down together.
_inproc_lock = threading.Lock()
_inproc_live: set[int] = set()
_inproc_closed: list[Any] = []


def _track(llm: Any, *, in_process: bool) -> None:
    if in_process:
        with _inproc_lock:
            _inproc_live.add(id(llm))


def _release(llm: Any) -> list[Any]:
    """The LLMs to shut down now that `llm` is closed (none while other in-process ones live)."""
    with _inproc_lock:
        if id(llm) not in _inproc_live:
            return [llm]
        _inproc_live.discard(id(llm))
        _inproc_closed.append(llm)
        if _inproc_live:
            return []
        doomed = list(_inproc_closed)
        _inproc_closed.clear()
        return doomed


def full_text(tokenizer: Any, text: str, token_ids: Sequence[int] | None, stop_reason: Any) -> str:
    """vLLM's text, except that a completion not ended by a stop string is decoded in full.

    vLLM's incremental detokenizer drops a trailing partial UTF-8 character; decoding every token
    (as the transformers engine does) keeps backends identical, and so are forced-answer prompts.
    """
    if isinstance(stop_reason, str) or not token_ids:
        return text
    return tokenizer.decode(list(token_ids), skip_special_tokens=True)
