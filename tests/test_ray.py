"""Reranking on Ray (`rank_on_ray`, `r1ranker rerank --ray`) on a real local cluster of vLLM replicas.

The cluster is this machine's, on the loopback address; replicas hold real vLLM engines with the tiny
model (float32, greedy: the same tokens batched or alone), one CPU and one OpenMP thread each.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_cli import check_valid_run, read_run

from r1ranker_plugins.cli import main
from r1ranker_plugins.datasets import load_dataset
from r1ranker_plugins.ray_jobs import rank_on_ray
from r1ranker_plugins.runs import QueryRun, read_rankgpt_json

# Ray reads these when imported: a cluster on the loopback address only, and no usage report.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
ray = pytest.importorskip("ray")

ENGINE = ["--backend", "vllm", "--enforce-eager", "--max-model-len", "4096", "--dtype", "float32"]
FAST = ["--max-new-tokens", "4", "--max-candidate-tokens", "24"]
OPTIONS = {
    "backend": "vllm",
    "enforce_eager": True,
    "max_model_len": 4096,
    "dtype": "float32",
    "max_new_tokens": 4,
    "max_candidate_tokens": 24,
}


@pytest.fixture(scope="module")
def cluster() -> str:
    """A local Ray cluster of 2 CPUs for the module; its address, for command lines to join it."""
    previous = signal.getsignal(signal.SIGTERM)
    ray.init(address="local", num_cpus=2, include_dashboard=False)
    signal.signal(signal.SIGTERM, previous)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "r1ranker_plugins.cli", *args]


@pytest.mark.vllm
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Ray Data's own, about its settings
def test_two_replicas_rank_397_queries_as_one_process_does(cluster, tiny_model_path, tmp_path):
    """DL19 + DL20 + SciFact from a Ray Dataset on 2 replicas: every query's order and every step's
    completion equal those of the single-process `rerank` (rank_many) over the same queries."""
    pytest.importorskip("vllm")
    runs = [
        QueryRun(f"{name}-{q.qid}", q.query, q.candidates)
        for name in ("dl19", "dl20", "scifact")
        for q in load_dataset(name).queries
    ]
    assert len(runs) == 397
    source = tmp_path / "all.json"
    source.write_text(
        json.dumps(
            [
                {"query": r.query, "hits": [{"qid": r.qid, "docid": c.id, "content": c.text} for c in r.candidates]}
                for r in runs
            ]
        )
    )
    out, trace = tmp_path / "one.trec", tmp_path / "one.jsonl"
    flags = ["--strategy", "iranker", "--model", tiny_model_path, "--depth", "5", *ENGINE, *FAST]
    single = [*cli("rerank", "--input", str(source), "--output", str(out), "--trace", str(trace)), *flags]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # as a replica has: one thread on this 2-core machine
    subprocess.run(single, check=True, capture_output=True, env=env, timeout=900)
    expected = {qid: [docid for docid, _, _ in rows] for qid, rows in read_run(out).items()}
    steps = {}
    for line in trace.read_text().splitlines():
        record = json.loads(line)
        steps[record["qid"]] = [step["completion"] for step in record["steps"]]

    rows = [
        {"qid": r.qid, "query": r.query, "candidates": [{"id": c.id, "text": c.text} for c in r.candidates]}
        for r in runs
    ]
    options = {"strategy": "iranker", "model": tiny_model_path, "depth": 5, **OPTIONS}
    rankings, summary = rank_on_ray(ray.data.from_items(rows), options, replicas=2, queries_per_batch=32)

    assert len(expected) == len(rankings) == 397
    for run in runs:
        ranking = rankings[run.qid]
        assert [c.id for c in ranking.ranked] == expected[run.qid], run.qid
        assert [step.completion for step in ranking.trace] == steps[run.qid], run.qid
    assert summary["ranked"] == 397 and [r["queries"] > 0 for r in summary["per_replica"]] == [True, True]
    assert summary["engine"]["model_loads"] == 2 and summary["engine"]["answers"]["iranker"]["steps"] == 397 * 4


def replica_processes() -> list:
    """This cluster's replica processes (descendants of this process, which started it), busy ones first."""
    import psutil

    found = []
    for process in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):  # a process that has just exited
            title = (process.cmdline() or [""])[0]
            if title.startswith("ray::Replica"):
                found.append((".rank" not in title, process.pid, process))
    return [process for *_, process in sorted(found)]


@pytest.mark.vllm
def test_a_killed_replica_is_replaced_and_every_query_ranked_once(cluster, tiny_model_path, shared_data):
    pytest.importorskip("vllm")
    source = shared_data / "passage" / "dl19" / "bm25_top100.json"
    seen: list[str] = []
    killed: list[int] = []

    def on_result(qid, ranking):
        seen.append(qid)
        if not killed:  # mid-run: most batches are still to come
            victim = replica_processes()[0]
            victim.send_signal(signal.SIGKILL)
            killed.append(victim.pid)

    options = {"strategy": "iranker", "model": tiny_model_path, "depth": 10, **OPTIONS}
    rankings, summary = rank_on_ray(str(source), options, replicas=2, queries_per_batch=4, on_result=on_result)

    assert killed and not rankings  # streamed to on_result, not kept
    qids = [r.qid for r in read_rankgpt_json(source)]
    assert sorted(seen) == sorted(qids) and len(seen) == 43  # each query exactly once
    assert sorted(r["restarts"] for r in summary["per_replica"]) == [0, 1]
    assert sum(r["queries"] for r in summary["per_replica"]) == 43


def wait_for_queries(path: Path, count: int, process: subprocess.Popen, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if path.exists() and len(read_run(path)) >= count:
            return
        time.sleep(0.1)
    raise AssertionError(f"{path} did not reach {count} queries (exit code {process.poll()})")


@pytest.mark.vllm
def test_an_interrupted_ray_rerank_resumes_without_duplicates_or_gaps(cluster, tiny_model_path, shared_data, tmp_path):
    """Ctrl-C, then SIGTERM, then a run to the end: each stops cleanly keeping what is written, each
    rerun resumes from it, and the final run holds every query once."""
    pytest.importorskip("vllm")
    source = shared_data / "passage" / "dl19" / "bm25_top100.json"
    out = tmp_path / "run.trec"
    flags = ["--strategy", "iranker", "--model", tiny_model_path, "--depth", "20", *ENGINE, *FAST]
    ray_flags = ["--ray", "--ray-address", cluster, "--replicas", "2", "--queries-per-batch", "2"]
    command = cli("rerank", "--input", str(source), "--output", str(out), *flags, *ray_flags)
    kept = 0
    for sig in (signal.SIGINT, signal.SIGTERM):
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for_queries(out, kept + 2, process)
        process.send_signal(sig)
        _, err = process.communicate(timeout=120)
        assert process.returncode == 130, err[-3000:]
        assert "Traceback" not in err
        if kept:
            assert f"resuming: {kept} of 43 queries" in err
        kept = len(read_run(out))
        assert f"interrupted: {kept} of 43 queries kept in {out}; rerun to resume" in err
        assert kept < 43
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert rerun.returncode == 0 and f"resuming: {kept} of 43 queries" in rerun.stderr, rerun.stderr[-3000:]
    summary = json.loads(next(line for line in reversed(rerun.stderr.splitlines()) if line.startswith('{"queries"')))
    assert summary["ranked"] == 43 - kept and summary["replicas"] == 2
    check_valid_run(out, {r.qid: [c.id for c in r.candidates] for r in read_rankgpt_json(source)})


@pytest.mark.parametrize("policy", ["raise", "first-stage"])
def test_an_engine_failure_follows_on_engine_error(cluster, tiny_model_path, shared_data, tmp_path, capsys, policy):
    """Replicas with the OpenAI backend towards a port where nothing listens."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    source = shared_data / "passage" / "dl19" / "bm25_top100.json"
    out = tmp_path / "run.trec"
    args = ["rerank", "--input", str(source), "--limit", "3", "--output", str(out), "--strategy", "iranker"]
    args += ["--model", tiny_model_path, "--backend", "openai", "--base-url", dead, "--max-retries", "0"]
    args += ["--depth", "5", "--on-engine-error", policy, "--ray", "--replicas", "2", "--queries-per-batch", "2"]
    code = main([*args, *FAST])
    err = capsys.readouterr().err
    runs = read_rankgpt_json(source)[:3]
    if policy == "raise":
        assert code == 2 and "error: " in err and dead in err and "Traceback" not in err
        assert not out.exists()
    else:
        assert code == 0
        first_stage = {r.qid: [c.id for c in r.candidates] for r in runs}
        check_valid_run(out, first_stage)
        assert {qid: [d for d, _, _ in rows] for qid, rows in read_run(out).items()} == first_stage


def test_without_ray_the_error_names_the_extra(tiny_model_path, shared_data, tmp_path):
    source = shared_data / "passage" / "dl19" / "bm25_top100.json"
    code = "import sys; sys.modules['ray'] = None; from r1ranker_plugins.cli import main; sys.exit(main(sys.argv[1:]))"
    args = ["rerank", "--input", str(source), "--limit", "1", "--output", str(tmp_path / "o.trec")]
    args += ["--strategy", "dranker", "--model", tiny_model_path, "--ray"]
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert 'install it with: pip install "r1ranker-plugins[ray]"' in result.stderr
