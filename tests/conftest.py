"""Shared fixtures: the tiny local model, the shared data, and a scripted engine for logic tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from r1ranker_plugins.engines import Engine, close_all
from r1ranker_plugins.runs import data_dir
from r1ranker_plugins.testing import small_model, tiny_model
from r1ranker_plugins.types import Completion, Request

ROOT = Path(__file__).resolve().parents[1]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """In CI a skipped test is a failed test: a missing dependency must not pass silently."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI: {report.longrepr}"


@pytest.fixture(scope="session")
def tiny_model_path() -> str:
    return tiny_model()


@pytest.fixture(scope="session")
def small_model_path() -> str:
    """SmolLM2-135M-Instruct: a real pretrained instruct model, for tests about what a model writes."""
    return small_model()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return data_dir()


@pytest.fixture(scope="session")
def tokenizer(tiny_model_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_path)


@pytest.fixture(autouse=True)
def _fresh_engines(request):
    """Each test starts with no engines, so engine counters belong to that test; a module that sets
    `SHARED_ENGINES = True` keeps its engines from test to test (closed once, with the module)."""
    if getattr(request.module, "SHARED_ENGINES", False):
        yield
        return
    close_all()
    yield
    close_all()


@pytest.fixture(scope="module", autouse=True)
def _module_engines(request):
    if getattr(request.module, "SHARED_ENGINES", False):
        close_all()
    yield
    if getattr(request.module, "SHARED_ENGINES", False):
        close_all()


class ScriptedEngine(Engine):
    """Answers each request with `reply(request)`; for testing ranking logic, not models.

    It is a real `Engine` (real tokenizer, real counting and batching); only the text comes
    from the test instead of a model.
    """

    backend = "scripted"

    def __init__(self, reply: Callable[[Request], str], tokenizer) -> None:
        super().__init__("scripted")
        self.reply = reply
        self._tokenizer = tokenizer
        self.seen: list[Request] = []
        self.batch_sizes: list[int] = []

    def _generate(self, requests):
        self.count(batches=1)
        self.seen.extend(requests)
        self.batch_sizes.append(len(requests))
        out = []
        for request in requests:
            text = self.reply(request)
            if request.stop and any(s in text for s in request.stop):
                cut = min(text.find(s) + len(s) for s in request.stop if s in text)
                text = text[:cut]
            out.append(Completion(text, "stop", len(request.prompt) // 4, len(text) // 4))
        return out


@pytest.fixture
def scripted(tokenizer):
    return lambda reply: ScriptedEngine(reply, tokenizer)


@pytest.fixture(scope="session")
def lucene_index(shared_data, tmp_path_factory):
    """A Lucene index of the DL19 BM25 pool, built with `python -m pyserini.index.lucene`."""
    from r1ranker_plugins.runs import read_rankgpt_json

    dl19 = shared_data / "passage" / "dl19"
    root = tmp_path_factory.mktemp("pyserini")
    (root / "docs").mkdir()
    seen = {}
    for run in read_rankgpt_json(dl19 / "bm25_top100.json"):
        seen.update({c.id: c.text for c in run.candidates})
    with open(root / "docs" / "docs.jsonl", "w", encoding="utf-8") as out:
        for docid, text in seen.items():
            out.write(json.dumps({"id": docid, "contents": text}) + "\n")
    command = [
        sys.executable,
        "-m",
        "r1ranker_plugins.integrations.jvm",
        "pyserini.index.lucene",
        "--collection",
        "JsonCollection",
        "--input",
        str(root / "docs"),
        "--index",
        str(root / "index"),
        "--generator",
        "DefaultLuceneDocumentGenerator",
        "--threads",
        "1",
        "--storeRaw",
    ]
    subprocess.run(command, check=True, capture_output=True, timeout=300)
    return str(root / "index")


@pytest.fixture(scope="session")
def tiny_server(tiny_model_path, tmp_path_factory):
    """One vLLM OpenAI-compatible server with the tiny model, for every test module that needs one."""
    pytest.importorskip("vllm")
    from helpers import serve

    with serve(tiny_model_path, tmp_path_factory.mktemp("server") / "vllm.log") as running:
        yield running
