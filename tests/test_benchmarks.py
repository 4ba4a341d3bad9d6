"""The throughput and batching benchmarks run end to end on a few queries: how their figures are derived, not their
values."""

from __future__ import annotations

import importlib.util
import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.vllm
pytest.importorskip("vllm")

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_throughput_alternates_the_modes_and_reports_medians(tiny_model_path, shared_data, tmp_path):
    out = tmp_path / "throughput.json"
    command = [
        sys.executable, str(BENCHMARKS / "throughput.py"), "--strategy", "dranker", "--queries", "4",
        "--depth", "4", "--max-new-tokens", "4", "--repeats", "2", "--out", str(out),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=BENCHMARKS)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout) == json.loads(out.read_text())  # stdout is the JSON alone: vLLM logs to stderr
    rank_many, loop = json.loads(out.read_text())
    assert (rank_many["mode"], loop["mode"]) == ("rank_many", "loop")
    assert rank_many["same_orders_as_other_mode"] and loop["queries"] == 4
    for row in (rank_many, loop):
        assert len(row["queries_per_s_runs"]) == 2 and min(row["queries_per_s_runs"]) > 0
        assert row["queries_per_s"] == pytest.approx(statistics.median(row["queries_per_s_runs"]), rel=0.01)
    paired = [m / lo for m, lo in zip(rank_many["queries_per_s_runs"], loop["queries_per_s_runs"], strict=True)]
    assert rank_many["speedup_vs_loop"] == pytest.approx(statistics.median(paired), rel=0.01)
    assert rank_many["mean_batch"] == 4.0 and loop["mean_batch"] == 1.0
    raw_gain = rank_many["raw_completion_tokens_per_s"] / loop["replayed_completion_tokens_per_s"]
    assert rank_many["raw_speedup"] == pytest.approx(raw_gain, rel=0.01) and loop["raw_speedup"] is None


def test_min_new_tokens_varies_lengths_by_prompt_alone():
    """Each prompt gets its own length in [min, max], the same every time it is sent (so both
    modes generate the same tokens); a request already that short keeps its budget."""
    spec = importlib.util.spec_from_file_location("throughput", BENCHMARKS / "throughput.py")
    throughput = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(throughput)
    from r1ranker_plugins.engines import Engine
    from r1ranker_plugins.types import Request

    engine = throughput.FixedLengthEngine(Engine("unused"), min_new_tokens=64)
    lengths = [engine.length(Request(f"prompt {i}", max_tokens=512)) for i in range(200)]
    assert all(64 <= n <= 512 for n in lengths) and len(set(lengths)) > 100
    assert engine.length(Request("prompt 7", max_tokens=512)) == lengths[7]
    assert engine.length(Request("prompt 7", max_tokens=40)) == 40
    assert throughput.FixedLengthEngine(Engine("unused")).length(Request("prompt 7", max_tokens=512)) == 512


def test_batching_times_each_batch_size_and_reports_medians(tiny_model_path, shared_data, tmp_path):
    out = tmp_path / "batching.json"
    command = [
        sys.executable, str(BENCHMARKS / "batching.py"), "--batch-sizes", "3", "1", "--max-new-tokens", "4",
        "--datasets", "dl19", "--repeats", "2", "--out", str(out),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=BENCHMARKS)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout) == json.loads(out.read_text())
    one, three = json.loads(out.read_text())
    assert (one["batch_size"], three["batch_size"]) == (1, 3)
    assert (one["completion_tokens"], three["completion_tokens"]) == (4, 12)  # ignore_eos: every token generated
    assert three["prompt_tokens"] > 2 * one["prompt_tokens"]  # three different queries' prompts
    for row in (one, three):
        runs = row["completion_tokens_per_s_runs"]
        assert len(runs) == 2 and min(runs) > 0
        assert row["completion_tokens_per_s"] == pytest.approx(statistics.median(runs), abs=0.1)  # rounded to 0.1
    assert one["gain_vs_smallest_batch"] == 1.0
    assert three["gain_vs_smallest_batch"] == pytest.approx(
        three["completion_tokens_per_s"] / one["completion_tokens_per_s"], abs=0.006
    )  # rounded to 0.01
    assert out.with_suffix(".png").stat().st_size > 0
