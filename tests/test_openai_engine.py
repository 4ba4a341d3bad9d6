"""The OpenAI-compatible engine against real vLLM server processes on 127.0.0.1 (tiny model).

One server serves the module; the crash test starts (and kills) its own. Server start-up is
~30 s on a CPU with `--enforce-eager`.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time

import pytest
from helpers import QUERY, SMALL, TEXTS, Server, free_port, serve

from r1ranker_plugins import DRanker, IRanker, SetwiseRanker
from r1ranker_plugins.engines import EngineError
from r1ranker_plugins.engines.openai import OpenAIEngine, _completion
from r1ranker_plugins.types import Request

pytestmark = pytest.mark.vllm
pytest.importorskip("vllm")
httpx = pytest.importorskip("httpx")

STRATEGIES = [IRanker, DRanker, SetwiseRanker]


@pytest.fixture
def server(tiny_server):
    return tiny_server


async def test_concurrent_aranks_and_a_sync_rank_inside_a_running_loop(tiny_model_path, server):
    ranker = SetwiseRanker(tiny_model_path, "openai", base_url=server.url, **SMALL)
    queries = [f"{QUERY} {i}" for i in range(5)]
    concurrent = await asyncio.gather(*(ranker.arank(q, TEXTS) for q in queries))
    sequential = [ranker.rank(q, TEXTS) for q in queries]  # sync path, called from this loop's thread
    assert [r.order for r in concurrent] == [r.order for r in sequential]
    assert all(sorted(r.order) == list(range(len(TEXTS))) for r in concurrent)


def test_stats_read_the_server_metrics(tiny_model_path, server):
    engine = OpenAIEngine(tiny_model_path, base_url=server.url)
    prompts = [Request("Search engines rank passages " * 60 + str(i), max_tokens=4) for i in range(4)]
    engine.generate(prompts)
    engine.generate(prompts)  # the second time every prompt's full blocks are cached
    stats = engine.stats()
    assert stats["prefix_cache_queries"] >= stats["prompt_tokens"]  # server-wide since the first request
    assert stats["prefix_cache_hits"] > 0 and 0 < stats["prefix_cache_hit_rate"] < 1
    engine.close()


def settled_stats(engine: OpenAIEngine) -> dict:
    """The server's counters once two reads agree (its metrics may trail a finished request)."""
    stats = engine.stats()
    for _ in range(25):
        time.sleep(0.2)
        stats, previous = engine.stats(), stats
        if stats == previous:
            break
    return stats


def test_reset_prefix_cache_empties_the_server_cache(tiny_model_path, server):
    engine = OpenAIEngine(tiny_model_path, base_url=server.url)
    prompts = [Request(f"Query {i}: " + "Search engines rank passages " * 60, max_tokens=2) for i in range(3)]
    engine.generate(prompts)
    engine.generate(prompts)
    warm = settled_stats(engine)
    assert warm["prefix_cache_hits"] > 0  # the second time the prompts were cached
    engine.reset_prefix_cache()
    engine.generate(prompts)
    cold = settled_stats(engine)
    assert cold["prefix_cache_queries"] > warm["prefix_cache_queries"]
    assert cold["prefix_cache_hits"] == warm["prefix_cache_hits"]  # nothing was left to hit
    engine.close()


def test_reset_prefix_cache_on_a_server_without_it_says_how_to_enable_it(tiny_model_path, server):
    proxy = FaultyProxy(server.url, [404])  # what vLLM answers outside dev mode
    try:
        engine = OpenAIEngine(tiny_model_path, base_url=proxy.url)
        with pytest.raises(EngineError, match="reset_prefix_cache not found: start vLLM with VLLM_SERVER_DEV_MODE=1"):
            engine.reset_prefix_cache()
    finally:
        proxy.close()
    engine.close()


def test_cut_off_completion_keeps_the_token_ids_the_server_returned(tokenizer):
    """Only a completion cut off by max_tokens with both id lists reported can be continued."""
    ids = tokenizer.encode(" ran out", add_special_tokens=False)
    choice = {"text": " ran out", "finish_reason": "length", "prompt_token_ids": [5, 6], "token_ids": ids}
    data = {"choices": [choice], "usage": {"prompt_tokens": 2, "completion_tokens": len(ids)}}
    assert _completion(data, tokenizer).sequence_ids == (5, 6, *ids)
    without_ids = {"text": " ran out", "finish_reason": "length"}  # a server without return_token_ids
    assert _completion({"choices": [without_ids]}, tokenizer).sequence_ids == ()
    stopped = {**choice, "finish_reason": "stop", "stop_reason": "</answer>"}
    assert _completion({"choices": [stopped]}, tokenizer).sequence_ids == ()


def test_client_errors_fail_at_once(tiny_model_path, server):
    engine = OpenAIEngine("no-such-model", base_url=server.url, tokenizer=tiny_model_path, backoff=10.0)
    start = time.monotonic()
    with pytest.raises(EngineError, match=rf"{server.url} rejected .*'no-such-model'.*HTTP 404"):
        engine.generate([Request("hello", max_tokens=4)])
    assert time.monotonic() - start < 5  # no retries, no backoff
    engine.close()


def test_unreachable_server_degrades_to_first_stage_order(tiny_model_path):
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    ranker = IRanker(
        tiny_model_path, "openai", base_url=url, max_retries=1, backoff=0.05, on_engine_error="first-stage", **SMALL
    )
    with pytest.warns(RuntimeWarning, match="first-stage order"):
        ranking = ranker.rank(QUERY, TEXTS)
    assert ranking.order == list(range(len(TEXTS)))
    assert ranking.trace[-1].fallback.startswith("engine error") and url in ranking.trace[-1].fallback
    assert "prefix_cache_queries" not in ranker.engine.stats()  # /metrics unreachable: stats still work


def test_server_killed_mid_run_raises_after_retries(tiny_model_path, tmp_path):
    with serve(tiny_model_path, tmp_path / "vllm.log") as doomed:
        engine = OpenAIEngine(tiny_model_path, base_url=doomed.url, timeout=5.0, max_retries=3, backoff=0.2)
        ranker = IRanker(engine=engine, **SMALL)
        queries = [f"{QUERY} {i}" for i in range(8)]
        first_round = engine._generate

        def first_round_then_crash(requests):
            # The server dies right after the first batch returns: IRanker needs five rounds for
            # six texts, so the second one meets a dead server (no race with a killer thread).
            completions = first_round(requests)
            if doomed.process.poll() is None:
                doomed.kill(signal.SIGKILL)
            return completions

        engine._generate = first_round_then_crash
        start = time.monotonic()
        with pytest.raises(EngineError, match=rf"{doomed.url} failed .* after 4 attempts"):
            ranker.rank_many(queries, [TEXTS] * len(queries))
        assert time.monotonic() - start < 60
        assert engine.stats()["calls"] >= 1  # the first round did complete before the crash
        engine.close()


class FaultyProxy:
    """A real HTTP proxy on 127.0.0.1 that injects faults before forwarding to the server.

    `faults` is consumed one per request: an HTTP status to answer with (500, 429, ...), a float
    number of seconds to stall before forwarding, or None to forward at once.
    """

    def __init__(self, target: str, faults: list) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.faults = list(faults)
        self.seen = 0
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output quiet
                pass

            def do_GET(self) -> None:
                self._forward(None)

            def do_POST(self) -> None:
                self._forward(self.rfile.read(int(self.headers.get("Content-Length", 0))))

            def _forward(self, body) -> None:
                with proxy.lock:
                    proxy.seen += 1
                    fault = proxy.faults.pop(0) if proxy.faults and body is not None else None
                if isinstance(fault, int):
                    self.send_response(fault)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if isinstance(fault, float):
                    time.sleep(fault)
                url = target.removesuffix("/v1") + self.path
                reply = httpx.request(
                    self.command, url, content=body, headers={"Content-Type": "application/json"}, timeout=120
                )
                self.send_response(reply.status_code)
                self.send_header("Content-Type", reply.headers.get("Content-Type", "application/json"))
                self.send_header("Content-Length", str(len(reply.content)))
                self.end_headers()
                self.wfile.write(reply.content)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_injected_500_429_and_slow_responses_are_retried(tiny_model_path, server):
    direct = IRanker(tiny_model_path, "openai", base_url=server.url, **SMALL).rank(QUERY, TEXTS)
    proxy = FaultyProxy(server.url, [500, 429, 503, 3.0, None, 500])
    try:
        engine = OpenAIEngine(tiny_model_path, base_url=proxy.url, timeout=1.5, max_retries=5, backoff=0.05)
        ranking = IRanker(engine=engine, **SMALL).rank(QUERY, TEXTS)
    finally:
        proxy.close()
    assert ranking.order == direct.order  # faults cost retries, not results
    assert proxy.seen > len(ranking.trace)  # the failed attempts did reach the proxy
    engine.close()


def test_faults_beyond_the_retry_budget_fail_clearly(tiny_model_path, server):
    proxy = FaultyProxy(server.url, [500] * 10)
    try:
        engine = OpenAIEngine(tiny_model_path, base_url=proxy.url, max_retries=2, backoff=0.01)
        with pytest.raises(EngineError, match=rf"{proxy.url} failed .* after 3 attempts.*500"):
            IRanker(engine=engine, **SMALL).rank(QUERY, TEXTS)
    finally:
        proxy.close()
    engine.close()


def test_server_killed_and_restarted_mid_run_resumes(tiny_model_path, tmp_path):
    first = Server(tiny_model_path, tmp_path / "first.log")
    first.wait_ready()
    port = first.port
    # backoff 0.5 s doubling over 8 retries waits ~2 min in all: enough for a restart (~30 s)
    engine = OpenAIEngine(tiny_model_path, base_url=first.url, timeout=10.0, max_retries=8, backoff=0.5)
    ranker = IRanker(engine=engine, **SMALL)
    queries = [f"{QUERY} {i}" for i in range(4)]
    restarted: list[Server] = []
    first_round = engine._generate

    def first_round_then_crash(requests):
        # The server dies right after the first batch returns and comes back on the same URL
        # while the second round is retrying (IRanker needs five rounds for six texts).
        completions = first_round(requests)
        if not restarted:
            first.kill(signal.SIGKILL)
            restarted.append(Server(tiny_model_path, tmp_path / "second.log", port=port))
        return completions

    engine._generate = first_round_then_crash
    try:
        rankings = ranker.rank_many(queries, [TEXTS] * len(queries))
    finally:
        first.kill()
        for server in restarted:
            server.kill()
    assert restarted and first.process.returncode == -signal.SIGKILL
    assert all(sorted(r.order) == list(range(len(TEXTS))) for r in rankings)
    assert all(not (step.fallback or "").startswith("engine error") for r in rankings for step in r.trace)
    engine.close()
