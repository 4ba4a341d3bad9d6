"""`r1ranker serve`: a reasoning ranker behind the rerank APIs RAG stacks already speak.

    r1ranker serve --strategy iranker --model Qwen/Qwen2.5-3B-Instruct --backend vllm --port 8080

Routes: `POST /v1/rerank`, `POST /v2/rerank` (Cohere's schemas, also Jina's), `POST /rerank` (TEI's),
`GET /health`, `GET /v1/models`, `GET /metrics` (Prometheus). One ranker and one engine serve every
request through `Ranker.arank`, so rankings in flight at the same time share engine batches.

Safe to expose: it binds 127.0.0.1 unless told otherwise; with an API key (`--api-key` or
$R1RANKER_API_KEY) every route but /health needs `Authorization: Bearer KEY`; bodies, documents,
texts and rankings in flight are bounded; a request has a deadline; errors are JSON naming the
field, never a stack trace; logs hold sizes and timings, texts only with `--log-text`. SIGTERM stops
accepting and gives rankings in flight `--shutdown-grace` seconds to finish. FastAPI, uvicorn and
prometheus_client (the `serve` extra) are imported only when the command runs.
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations (names imported in
# `build_app`) at run time.
import argparse
import asyncio
import contextlib
import contextvars
import dataclasses
import hmac
import json
import logging
import os
import signal
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

from .engines import EngineError, PromptTooLongError
from .settings import Checked, _flag_type, add_ranker_flags, flag, option, options_from_args

API_KEY_ENV = "R1RANKER_API_KEY"
ROUTES = ("/v1/rerank", "/v2/rerank", "/rerank", "/health", "/v1/models", "/metrics")
RETRY_AFTER = {"busy": 1, "loading": 5, "shutdown": 5}
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
ENGINE_COUNTERS = {
    "calls": "engine calls: the batches shared between requests",
    "batches": "backend generate batches",
    "requests": "prompts generated",
    "prompt_tokens": "prompt tokens",
    "completion_tokens": "generated tokens",
    "forced_answers": "forced short answers after reasoning gave none",
    "seconds": "seconds spent generating",
}
log = logging.getLogger("r1ranker.serve")


@dataclass
class ServeSettings(Checked):
    """The server's own options (the ranker's are the ranker flags)."""

    host: str = option("127.0.0.1", "address to bind; another exposes the server beyond this machine: set --api-key")
    port: int = option(8080, "port to listen on", minimum=0)
    api_key: str | None = option(
        None, f"require Authorization: Bearer KEY on every route but /health (default: ${API_KEY_ENV}, else none)"
    )
    served_model_name: str | None = option(None, "the model name /v1/models and responses report (default: --model)")
    max_body_bytes: int = option(4 << 20, "largest request body; larger: 413", minimum=1)
    max_documents: int = option(1000, "documents per request at most", minimum=1)
    max_document_chars: int = option(100_000, "characters per document at most", minimum=1)
    max_query_chars: int = option(10_000, "characters of the query at most", minimum=1)
    max_in_flight: int = option(64, "rankings at once; together they share engine batches", minimum=1)
    max_waiting: int = option(256, "requests waiting for a ranking slot; beyond: 503 with Retry-After", minimum=0)
    request_timeout: float = option(300.0, "seconds a request may take, waiting included; then 504", minimum=0.001)
    shutdown_grace: float = option(30.0, "on SIGTERM, seconds for rankings in flight to finish; then 503", minimum=0)
    log_text: bool = option(False, "log queries and documents (otherwise logs hold sizes and timings only)")


class Problem(Exception):
    """A request the server answers with an error: HTTP status, a message naming the field, maybe Retry-After."""

    def __init__(self, status: int, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.retry_after = status, message, retry_after


# -- command line ----------------------------------------------------------------------------------


def add_serve_command(subparsers: argparse._SubParsersAction) -> None:
    """`r1ranker serve`: the ranker flags, then the server's, whose --api-key is the server's own key
    (the openai backend's key then comes from --config or $OPENAI_API_KEY)."""
    parser = subparsers.add_parser(
        "serve",
        help="serve a ranker behind the Cohere and TEI rerank APIs",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        conflict_handler="resolve",
    )
    add_ranker_flags(parser)
    server = parser.add_argument_group("server")
    for spec in dataclasses.fields(ServeSettings):
        default = "" if spec.default is None else f" (default: {spec.default})"
        text = f"{spec.metadata['help']}{default}".replace("%", "%%")
        dest = f"serve_{spec.name}"
        kind = _flag_type(ServeSettings, spec.name)
        if kind is bool:
            server.add_argument(flag(spec.name), dest=dest, action=argparse.BooleanOptionalAction, help=text)
        else:
            server.add_argument(flag(spec.name), dest=dest, type=kind, metavar=spec.name.upper(), help=text)
    parser.set_defaults(func=cmd_serve)


def serve_settings(args: argparse.Namespace) -> ServeSettings:
    given = {spec.name: getattr(args, f"serve_{spec.name}") for spec in dataclasses.fields(ServeSettings)}
    given["api_key"] = given["api_key"] or os.environ.get(API_KEY_ENV) or None
    return ServeSettings(**{key: value for key, value in given.items() if value is not None})


def cmd_serve(args: argparse.Namespace) -> int:
    from . import make_ranker
    from .integrations import require

    for module in ("fastapi", "uvicorn", "prometheus_client"):
        require(module, "serve")
    settings = serve_settings(args)
    options = options_from_args(args)
    for key in ("strategy", "model"):
        if not options.get(key):
            raise ValueError(f"--{key} is required (or a --config that names one)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ranker = make_ranker(**options)
    service = Service(ranker, settings, settings.served_model_name or options["model"])
    if settings.host not in ("127.0.0.1", "localhost", "::1") and not settings.api_key:
        log.warning("serving on %s without an API key: anyone who reaches the port can use the model", settings.host)
    # uvicorn re-raises the SIGTERM it handled once it has shut down: after a graceful stop, exit 0
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    service.run()
    if service.failure:
        raise EngineError(service.failure)
    return 0


# -- ranking -----------------------------------------------------------------------------------------

_usage: contextvars.ContextVar[Counter | None] = contextvars.ContextVar("r1ranker_usage", default=None)


def count_usage(engine: Any) -> None:
    """Count each request's own tokens though its steps share batches: the engine's async path adds
    its completions' tokens to the counter of the request (a context variable) that sent them."""
    agenerate = engine.agenerate

    async def counted(requests: list) -> list:
        completions = await agenerate(requests)
        usage = _usage.get()
        if usage is not None:
            usage.update(
                input_tokens=sum(c.prompt_tokens for c in completions),
                output_tokens=sum(c.completion_tokens for c in completions),
            )
        return completions

    engine.agenerate = counted


class Admission:
    """At most `running` rankings at once and `waiting` more queued for a slot; beyond, refused at once.

    A request takes its place in `admit`, before any await: a burst arriving together is counted as it
    arrives, not when its tasks first run. It leaves the queue on `acquire` or, if it never got a slot
    (cancelled, shut down), on `give_up`."""

    def __init__(self, running: int, waiting: int) -> None:
        self.limit, self.max_waiting = running, waiting
        self.running = self.waiting = 0
        self._slots: asyncio.Semaphore | None = None

    def admit(self) -> None:
        if self.running + self.waiting >= self.limit + self.max_waiting:
            message = f"busy: {self.running} rankings in flight and {self.waiting} waiting; retry later"
            raise Problem(503, message, RETRY_AFTER["busy"])
        self.waiting += 1

    async def acquire(self) -> None:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.limit)
        await self._slots.acquire()
        self.waiting -= 1
        self.running += 1

    def give_up(self) -> None:
        self.waiting -= 1

    def release(self) -> None:
        self.running -= 1
        assert self._slots is not None
        self._slots.release()


@dataclass
class Work:
    """One request's ranking task; `started` once it holds a slot (from then on it is never cancelled:
    its steps are in shared batches, and it finishes in the background if its request gives up)."""

    task: asyncio.Task | None = None
    started: bool = False


class Service:
    """The ranker behind the routes: admission, deadlines, readiness, draining and metrics."""

    def __init__(self, ranker: Any, settings: ServeSettings, model: str) -> None:
        self.ranker, self.settings, self.model = ranker, settings, model
        self.admission = Admission(settings.max_in_flight, settings.max_waiting)
        self.ready = self.draining = False
        self.failure: str | None = None
        self.started = int(time.time())
        self.metrics: Metrics | None = None
        self.server: Any = None
        self._tasks: set[asyncio.Task] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._expired: asyncio.Future | None = None  # set when the shutdown grace runs out
        count_usage(ranker.engine)

    # -- lifecycle ------------------------------------------------------------------------------------
    def run(self) -> None:
        import uvicorn

        service = self

        class Server(uvicorn.Server):
            def handle_exit(self, sig: int, frame: Any) -> None:
                service.drain()
                super().handle_exit(sig, frame)

        config = uvicorn.Config(
            build_app(self),
            host=self.settings.host,
            port=self.settings.port,
            access_log=False,  # Guard logs each request, without texts
            timeout_graceful_shutdown=self.settings.shutdown_grace + 5,  # a backstop: the grace answers first
            log_level="info",
        )
        self.server = Server(config)
        self.server.run()

    async def start(self) -> None:
        """At startup: load the model in a thread while /health says "loading"."""
        self._loop = asyncio.get_running_loop()
        self._expired = self._loop.create_future()
        self.metrics = Metrics(self.ranker.engine, self.admission)
        task = asyncio.create_task(asyncio.to_thread(self._load))
        self._keep(task)

    def _load(self) -> None:
        engine = self.ranker.engine
        log.info("loading %s (%s, %s)...", engine.model, engine.backend, self.ranker.label)
        try:
            engine.load()
            engine.tokenizer  # noqa: B018  (loading is the point)
        except Exception as error:
            self.failure = f"cannot load the model: {error}"
            log.error("%s", self.failure)
            if self.server is not None:
                self.server.should_exit = True
            return
        self.ready = True
        log.info("ready: serving %s on http://%s:%d", self.model, self.settings.host, self.settings.port)

    def drain(self) -> None:
        """On SIGTERM (a signal handler: hand over to the loop): refuse new rankings; after the grace,
        answer those still in flight with 503 rather than leave them to be cut off."""
        if self._loop is not None and not self.draining:
            self._loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        self.draining = True
        log.info("shutting down: %d rankings in flight, %d waiting", self.admission.running, self.admission.waiting)
        assert self._loop is not None and self._expired is not None
        self._loop.call_later(self.settings.shutdown_grace, self._expired.set_result, None)

    def _keep(self, task: asyncio.Task) -> None:
        """Hold a task until it ends (the loop keeps only weak references to tasks)."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- ranking --------------------------------------------------------------------------------------
    def check(self, query: str, texts: list[str]) -> None:
        settings = self.settings
        if not query.strip():
            raise Problem(422, "query: empty")
        if len(query) > settings.max_query_chars:
            raise Problem(422, f"query: {len(query)} characters, more than the limit of {settings.max_query_chars}")
        if not texts:
            raise Problem(422, "documents: empty; send at least one")
        if len(texts) > settings.max_documents:
            raise Problem(422, f"documents: {len(texts)} documents, more than the limit of {settings.max_documents}")
        for i, text in enumerate(texts):
            if len(text) > settings.max_document_chars:
                limit = settings.max_document_chars
                raise Problem(422, f"documents[{i}]: {len(text)} characters, more than the limit of {limit}")

    async def rank(self, query: str, texts: list[str], max_tokens: int | None = None) -> Any:
        """Rank within the deadline; an `Outcome`, or a `Problem` to answer with."""
        from .serve_api import Outcome

        if self.draining:
            raise Problem(503, "the server is shutting down", RETRY_AFTER["shutdown"])
        if not self.ready:
            raise Problem(503, self.failure or "the model is loading", RETRY_AFTER["loading"])
        self.check(query, texts)
        self.admission.admit()
        work = Work()
        work.task = asyncio.create_task(self._rank(work, query, texts, max_tokens))
        work.task.add_done_callback(lambda _: None if work.started else self.admission.give_up())
        self._keep(work.task)
        assert self._expired is not None
        timeout = self.settings.request_timeout
        await asyncio.wait({work.task, self._expired}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if work.task.done():
            outcome: Outcome = work.task.result()
            return outcome
        if work.started:  # it finishes in the background; say so if it fails
            work.task.add_done_callback(abandoned)
        else:
            work.task.cancel()  # only waiting for a slot: safe to cancel
        if self._expired.done():
            raise Problem(503, "the server shut down before this ranking finished", RETRY_AFTER["shutdown"])
        if not work.started:
            raise Problem(503, f"no ranking slot freed within {timeout:g} s; retry later", RETRY_AFTER["busy"])
        raise Problem(504, f"the ranking took longer than the server's request timeout of {timeout:g} s")

    async def _rank(self, work: Work, query: str, texts: list[str], max_tokens: int | None) -> Any:
        from .serve_api import Outcome

        await self.admission.acquire()
        work.started = True
        usage: Counter = Counter()
        _usage.set(usage)  # this task's own context
        engine = self.ranker.engine
        try:
            if max_tokens is not None:
                texts = engine.truncate_many(texts, max_tokens)
            self._fits(query, texts)
            ranking = await self.ranker.arank(query, texts)
        except PromptTooLongError as error:
            raise Problem(422, f"documents: too long for the model's context: {error}") from None
        except (ValueError, TypeError) as error:
            raise Problem(422, str(error)) from None
        except EngineError as error:
            raise Problem(500, f"the engine failed: {error}") from None
        finally:
            self.admission.release()
        warnings = sorted({step.fallback for step in ranking.trace if (step.fallback or "").startswith("engine")})
        assert self.metrics is not None
        self.metrics.documents.inc(len(texts))
        return Outcome(ranking, usage["input_tokens"], usage["output_tokens"], warnings)

    def _fits(self, query: str, texts: list[str]) -> None:
        """Refuse a request whose first prompts exceed the model's context before they join a shared
        batch, where the failure would fail every request in it (when the engine knows its context)."""
        engine = self.ranker.engine
        if engine.context_length is not None:
            engine._check_context(self.ranker.first_requests(query, texts))


def abandoned(task: asyncio.Task) -> None:
    """Log the failure of a ranking whose request has already been answered (timeout, shutdown)."""
    error = None if task.cancelled() else task.exception()
    if error is not None:
        log.warning("a ranking whose request gave up failed: %s", error)


# -- HTTP ----------------------------------------------------------------------------------------------


def build_app(service: Service) -> Any:
    """The FastAPI routes, wrapped in `Guard`."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, Response
    from pydantic import ValidationError
    from starlette.exceptions import HTTPException

    from .serve_api import CohereRequest, TEIRequest, cohere_response, describe, tei_response

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        await service.start()
        yield

    app = FastAPI(title="r1ranker", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)

    async def parse(request: Request, schema: type) -> Any:
        body = await request.body()
        if not body.strip():
            raise Problem(422, "body: empty; expected a JSON object")
        try:
            return schema.model_validate_json(body)
        except ValidationError as error:
            raise Problem(422, describe(error, list(schema.model_fields))) from None

    def note(request: Request, query: str, texts: list[str]) -> None:
        request.scope["r1ranker.documents"] = len(texts)
        if service.settings.log_text:
            log.info("query=%r documents=%r", query, texts)

    async def cohere(request: Request, version: str) -> JSONResponse:
        body = await parse(request, CohereRequest)
        job = body.job()
        note(request, job.query, job.texts)
        outcome = await service.rank(job.query, job.texts, job.max_tokens)
        return JSONResponse(cohere_response(body, outcome, version, service.model, uuid.uuid4().hex))

    @app.post("/v1/rerank")
    async def rerank_v1(request: Request) -> JSONResponse:
        return await cohere(request, "1")

    @app.post("/v2/rerank")
    async def rerank_v2(request: Request) -> JSONResponse:
        return await cohere(request, "2")

    @app.post("/rerank")
    async def rerank_tei(request: Request) -> JSONResponse:
        body = await parse(request, TEIRequest)
        job = body.job()
        note(request, job.query, job.texts)
        return JSONResponse(tei_response(body, await service.rank(job.query, job.texts)))

    @app.get("/health")
    async def health() -> JSONResponse:
        if service.ready and not service.draining:
            return JSONResponse({"status": "ok", "model": service.model})
        status = "shutting down" if service.draining else "failed" if service.failure else "loading"
        return JSONResponse({"status": status}, status_code=503)

    @app.get("/v1/models")
    async def models() -> JSONResponse:
        engine = service.ranker.engine
        card = {"id": service.model, "object": "model", "created": service.started, "owned_by": "r1ranker"}
        card |= {"strategy": service.ranker.label, "backend": engine.backend}
        return JSONResponse({"object": "list", "data": [card]})

    @app.get("/metrics")
    async def metrics() -> Response:
        assert service.metrics is not None
        return Response(service.metrics.text(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.exception_handler(Problem)
    async def problem(request: Request, error: Problem) -> JSONResponse:
        return error_response(request.url.path, error, JSONResponse)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        return error_response(request.url.path, Problem(error.status_code, str(error.detail)), JSONResponse)

    @app.exception_handler(Exception)
    async def internal(request: Request, error: Exception) -> JSONResponse:
        return error_response(request.url.path, Problem(500, "internal error; see the server log"), JSONResponse)

    return Guard(app, service)


TEI_ERRORS = {401: "Unauthorized", 413: "Validation", 422: "Validation", 503: "Overloaded", 504: "Overloaded"}


def error_body(path: str, problem: Problem) -> dict[str, Any]:
    """Cohere's error shape (`message`), or TEI's (`error`, `error_type`) on its route."""
    if path == "/rerank":
        return {"error": problem.message, "error_type": TEI_ERRORS.get(problem.status, "Backend")}
    return {"message": problem.message}


def error_response(path: str, problem: Problem, response: Any) -> Any:
    headers = {"Retry-After": str(problem.retry_after)} if problem.retry_after is not None else None
    return response(error_body(path, problem), status_code=problem.status, headers=headers)


class Guard:
    """Plain ASGI around the app: the API key and the body limit are checked before FastAPI reads a
    byte, and every request is logged (method, path, status, time, documents: never texts) and counted."""

    def __init__(self, app: Any, service: Service) -> None:
        self.app, self.service = app, service
        key = service.settings.api_key
        self.expected = f"Bearer {key}".encode() if key else None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), [0]

        async def sending(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            body, problem = None, self._authorize(scope)
            if problem is None:
                body, problem = await self._read(scope, receive)
            if problem is not None:
                await respond(sending, scope["path"], problem)
            else:
                await self.app(scope, replay(body, receive), sending)
        except Exception:  # the trace goes to the log only; the client gets a JSON 500
            log.exception("unhandled error on %s %r", scope["method"], scope["path"])
            if not status[0]:
                await respond(sending, scope["path"], Problem(500, "internal error; see the server log"))
        finally:
            self._observe(scope, status[0] or 500, time.perf_counter() - start)

    def _authorize(self, scope: dict) -> Problem | None:
        if self.expected is None or scope["path"] == "/health":
            return None
        given = dict(scope["headers"]).get(b"authorization", b"")
        if hmac.compare_digest(given, self.expected):
            return None
        return Problem(401, "missing or wrong API key: send the header Authorization: Bearer KEY")

    async def _read(self, scope: dict, receive: Any) -> tuple[bytes, Problem | None]:
        limit = self.service.settings.max_body_bytes
        too_large = Problem(413, f"body: larger than the limit of {limit} bytes")
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            return b"", too_large
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return b"", Problem(400, "the client disconnected")
            chunk, more = message.get("body", b""), message.get("more_body", False)
            size += len(chunk)
            if size > limit:
                return b"", too_large
            chunks.append(chunk)
        return b"".join(chunks), None

    def _observe(self, scope: dict, status: int, seconds: float) -> None:
        path = scope["path"]
        endpoint = path if path in ROUTES else "other"
        if self.service.metrics is not None:
            self.service.metrics.observe(endpoint, status, seconds)
        documents = scope.get("r1ranker.documents")
        extra = f" {documents} documents" if documents is not None else ""
        client = (scope.get("client") or ("-",))[0]
        log.info('%s "%s %r" %d %.0f ms%s', client, scope["method"], path, status, seconds * 1000, extra)


def replay(body: bytes | None, receive: Any) -> Any:
    """A `receive` that hands the app the body already read, then the client's next events."""
    sent = False

    async def receiving() -> dict:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body or b"", "more_body": False}

    return receiving


async def respond(send: Any, path: str, problem: Problem) -> None:
    data = json.dumps(error_body(path, problem)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    if problem.status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    if problem.status == 413:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": problem.status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


# -- metrics ---------------------------------------------------------------------------------------------


class Metrics:
    """Prometheus metrics, in a registry of their own: requests by endpoint and status, latency,
    documents ranked, rankings in flight and waiting, and the engine's counters read at each scrape."""

    def __init__(self, engine: Any, admission: Admission) -> None:
        from prometheus_client import CollectorRegistry, Gauge, Histogram
        from prometheus_client import Counter as Total

        self.registry = registry = CollectorRegistry()
        self.requests = Total(
            "r1ranker_requests", "HTTP requests by endpoint and status", ["endpoint", "status"], registry=registry
        )
        self.latency = Histogram(
            "r1ranker_request_seconds", "request latency", ["endpoint"], buckets=LATENCY_BUCKETS, registry=registry
        )
        self.documents = Total("r1ranker_documents_ranked", "documents in answered rankings", registry=registry)
        Gauge("r1ranker_rankings_in_flight", "rankings holding a slot", registry=registry).set_function(
            lambda: admission.running
        )
        Gauge("r1ranker_requests_waiting", "requests waiting for a ranking slot", registry=registry).set_function(
            lambda: admission.waiting
        )
        registry.register(EngineCollector(engine))

    def observe(self, endpoint: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)

    def text(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


class EngineCollector:
    """The engine's own counters (`engine.stats()`), as Prometheus counters."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def collect(self) -> Any:
        from prometheus_client.core import CounterMetricFamily

        stats = self.engine.stats()
        for key, text in ENGINE_COUNTERS.items():
            yield CounterMetricFamily(f"r1ranker_engine_{key}", text, value=float(stats.get(key, 0)))


__all__ = ["ServeSettings", "add_serve_command"]
