"""OpenAI-compatible completions client, for a vLLM server (`vllm serve` / the api_server module).

Each request is its own `POST {base_url}/completions` with the raw prompt text; the server does
the batching, so all requests of a call are sent at once, bounded by `max_concurrency`. The
sync path runs on a private event loop in its own thread (it works inside a caller's running
loop); `agenerate` awaits the requests in the caller's loop directly. A request that starts with
tokens the model saw (a forced answer after a cut-off completion) is sent as token ids, which the
server reports with vLLM's `return_token_ids`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..settings import Checked, option
from ..types import Completion, Request
from .base import Engine, EngineError, load_tokenizer, prompt_ids
from .vllm import full_text

PREFIX_METRICS = {
    "prefix_cache_queries": "vllm:prefix_cache_queries_total",
    "prefix_cache_hits": "vllm:prefix_cache_hits_total",
}


class _Retry(Exception):
    """A failure worth another attempt: connection errors, timeouts, HTTP 429 and 5xx."""


@dataclass
class OpenAIOptions(Checked):
    """Engine options of the openai backend (an OpenAI-compatible server such as `vllm serve`)."""

    base_url: str | None = option(None, "the server's API root, e.g. http://localhost:8000/v1 (required)")
    api_key: str | None = option(None, "bearer key (default: $OPENAI_API_KEY)")
    tokenizer: str | None = option(None, "hub id or path of the served model's tokenizer (default: the model)")
    max_concurrency: int = option(64, "requests in flight at most", minimum=1)
    timeout: float = option(60.0, "seconds per request", minimum=0.001)
    max_retries: int = option(4, "retries of a failed request (connection errors, timeouts, 429, 5xx)", minimum=0)
    backoff: float = option(0.5, "first retry delay in seconds; doubles each retry", minimum=0.0)


class OpenAIEngine(Engine):
    """Sends prompts to a running server; the local tokenizer only truncates and formats.

    `model` is the served model name; `tokenizer` (hub id or path) defaults to it.
    """

    backend = "openai"

    Options = OpenAIOptions
    libraries = ("httpx", "transformers")
    config: OpenAIOptions

    def __init__(self, model: str, **options: Any) -> None:
        """`options`: see `OpenAIOptions`."""
        super().__init__(model, **options)
        config = self.config
        if not config.base_url:
            raise ValueError("the openai backend needs base_url (--base-url), e.g. http://localhost:8000/v1")
        self.base_url = config.base_url.rstrip("/")
        self.api_key = config.api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        self.tokenizer_name = config.tokenizer or model
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        # one client (connection pool) and one semaphore per event loop: neither may cross loops
        self._clients: dict[int, tuple[asyncio.AbstractEventLoop, Any, asyncio.Semaphore]] = {}
        self._baseline: dict[str, float] | None = None

    def _load_tokenizer(self) -> Any:
        return load_tokenizer(self.tokenizer_name, hint=f" for {self.base_url} (pass tokenizer=...)")

    # -- generation ----------------------------------------------------------------------
    def _generate(self, requests: Sequence[Request]) -> list[Completion]:
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(target=self._loop.run_forever, name="r1ranker-openai", daemon=True)
                self._thread.start()
            loop = self._loop
        return asyncio.run_coroutine_threadsafe(self._complete_all(requests), loop).result()

    def calling(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()  # no batcher: the server batches what arrives together

    async def agenerate(self, requests: Sequence[Request]) -> list[Completion]:
        """Concurrent callers' requests go straight to the server, which batches them."""
        if not requests:
            return []
        start = time.perf_counter()
        completions = await self._complete_all(list(requests))
        self._record(requests, completions, time.perf_counter() - start)
        return completions

    async def _complete_all(self, requests: Sequence[Request]) -> list[Completion]:
        client, semaphore = self._client()
        if self._baseline is None:  # prefix-cache stats count from this engine's first request
            self._baseline = {}
            self._baseline.update(await self._read_metrics(client) or {})
        tokenizer = self.tokenizer
        tasks = [asyncio.ensure_future(self._complete(client, semaphore, tokenizer, r)) for r in requests]
        try:
            completions = list(await asyncio.gather(*tasks))
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        self.count(batches=1)
        return completions

    async def _complete(
        self, client: Any, semaphore: asyncio.Semaphore, tokenizer: Any, request: Request
    ) -> Completion:
        import httpx

        payload: dict[str, Any] = {
            "model": self.model,
            "prompt": request.prompt if not request.prefix_ids else prompt_ids(tokenizer, [request])[0],
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "include_stop_str_in_output": True,  # vLLM extras from here on
            "add_special_tokens": False,  # the prompt is fully formatted already
            "return_token_ids": True,
        }
        if request.stop:
            payload["stop"] = list(request.stop)
        if request.ignore_eos:
            payload["ignore_eos"] = True
        attempts = self.config.max_retries + 1
        last = ""
        for attempt in range(attempts):
            if attempt:
                await asyncio.sleep(self.config.backoff * 2 ** (attempt - 1) * (1 + random.random()))
            try:
                async with semaphore:
                    response = await client.post("/completions", json=payload)
                if response.status_code == 429 or response.status_code >= 500:
                    raise _Retry(f"HTTP {response.status_code}: {response.text[:200]}")
                if response.status_code >= 400:
                    raise EngineError(
                        f"{self.base_url} rejected a completion for model {self.model!r}: "
                        f"HTTP {response.status_code}: {response.text[:300]}"
                    )
                return _completion(response.json(), tokenizer)
            except (_Retry, httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as error:
                last = f"{type(error).__name__}: {error}" if not isinstance(error, _Retry) else str(error)
            except (KeyError, IndexError, TypeError, ValueError) as error:
                raise EngineError(f"{self.base_url} sent an unexpected completion response: {error!r}") from error
        raise EngineError(f"{self.base_url} failed for model {self.model!r} after {attempts} attempts: {last}")

    def _client(self) -> tuple[Any, asyncio.Semaphore]:
        import httpx

        loop = asyncio.get_running_loop()
        with self._lock:
            for key in [k for k, (each, _, _) in self._clients.items() if each.is_closed()]:
                del self._clients[key]  # its loop is gone, so are its connections
            entry = self._clients.get(id(loop))
            if entry is None:
                client = httpx.AsyncClient(
                    base_url=self.base_url,
                    headers={"Authorization": f"Bearer {self.api_key}"},
                    timeout=self.config.timeout,
                    limits=httpx.Limits(
                        max_connections=self.config.max_concurrency,
                        max_keepalive_connections=self.config.max_concurrency,
                    ),
                )
                entry = self._clients[id(loop)] = (loop, client, asyncio.Semaphore(self.config.max_concurrency))
        return entry[1], entry[2]

    # -- stats and shutdown ----------------------------------------------------------------
    def backend_stats(self) -> dict[str, Any]:
        """The server's prefix-cache counters since this engine's first request (shared server-wide).

        Empty when the server's /metrics cannot be read: stats never fail on it.
        """
        import httpx

        if self._baseline is None:
            return {}
        try:
            response = httpx.get(self._metrics_url(), timeout=2.0)
            response.raise_for_status()
        except httpx.HTTPError:
            return {}
        now = _parse_metrics(response.text)
        if not now:
            return {}
        out: dict[str, Any] = {key: int(now.get(key, 0) - self._baseline.get(key, 0)) for key in PREFIX_METRICS}
        queries = out["prefix_cache_queries"]
        out["prefix_cache_hit_rate"] = out["prefix_cache_hits"] / queries if queries else 0.0
        return out

    async def _read_metrics(self, client: Any) -> dict[str, float] | None:
        import httpx

        try:
            response = await client.get(self._metrics_url(), timeout=2.0)
            response.raise_for_status()
        except httpx.HTTPError:
            return None
        return _parse_metrics(response.text)

    def reset_prefix_cache(self) -> None:
        """Forget the server's cached prefixes, so a benchmark run starts cold and inherits no earlier work.

        vLLM serves `POST /reset_prefix_cache` only in dev mode (`VLLM_SERVER_DEV_MODE=1`); any
        other server is an `EngineError` saying so, never a silently warm cache.
        """
        import httpx

        url = f"{self._server_root()}/reset_prefix_cache"
        try:
            response = httpx.post(url, timeout=self.config.timeout)
        except httpx.HTTPError as error:
            raise EngineError(f"cannot reset the prefix cache at {url}: {error!r}") from error
        if response.status_code == 404:
            raise EngineError(f"{url} not found: start vLLM with VLLM_SERVER_DEV_MODE=1 to reset its prefix cache")
        if response.is_error:
            raise EngineError(f"{url} failed: HTTP {response.status_code} {response.text[:200]}")

    def _metrics_url(self) -> str:
        return f"{self._server_root()}/metrics"

    def _server_root(self) -> str:
        return self.base_url.removesuffix("/v1")

    def close(self) -> None:
        """Close every connection pool and stop the private loop; a later call starts them again."""
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
            loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        for each, client, _ in clients:
            if each is loop or each.is_closed():
                continue
            with contextlib.suppress(RuntimeError):  # another caller's loop: close there, unawaited
                each.call_soon_threadsafe(lambda c=client: asyncio.ensure_future(c.aclose()))
        if loop is not None:
            private = [client for each, client, _ in clients if each is loop]
            if private:
                asyncio.run_coroutine_threadsafe(private[0].aclose(), loop).result(timeout=10)
            loop.call_soon_threadsafe(loop.stop)
            if thread is not None:
                thread.join(timeout=10)
            loop.close()


def _completion(data: dict[str, Any], tokenizer: Any) -> Completion:
    choice = data["choices"][0]
    usage = data.get("usage") or {}
    cut_off = choice.get("finish_reason") == "length"
    known = choice.get("prompt_token_ids") is not None and choice.get("token_ids") is not None
    return Completion(
        text=full_text(tokenizer, choice["text"], choice.get("token_ids"), choice.get("stop_reason")),
        finish_reason="length" if cut_off else "stop",
        prompt_tokens=int(usage.get("prompt_tokens", 0)),
        completion_tokens=int(usage.get("completion_tokens", 0)),
        sequence_ids=(*choice["prompt_token_ids"], *choice["token_ids"]) if cut_off and known else (),
    )


def _parse_metrics(text: str) -> dict[str, float]:
    """Sum each prefix-cache counter over its label sets (Prometheus text, `name{labels} value`)."""
    names = {metric: key for key, metric in PREFIX_METRICS.items()}
    out: dict[str, float] = {}
    for line in text.splitlines():
        key = names.get(line.split("{", 1)[0].split(" ", 1)[0])
        if key is not None:
            out[key] = out.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
    return out
