"""Every example runs offline with the tiny model and the shared data."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
# A guard against a hung example, not a speed limit: under load on a 2-core machine the LangChain and
# LlamaIndex examples alone took 620-646 s (issue #25), so 600 s failed good runs.
TIMEOUT = 1800


@pytest.mark.parametrize(
    ("script", "args", "expect"),
    [
        ("rerankers_quickstart.py", [], "inverter"),
        ("langchain_compression.py", ["--docs", "300"], "  "),
        ("llama_index_scifact.py", ["--docs", "300"], "  "),
        ("pyserini_dl19.py", ["--queries", "1", "--hits", "5"], "ndcg_cut_10"),
    ],
)
def test_example_runs_offline(tiny_model_path, script, args, expect):
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args], capture_output=True, text=True, timeout=TIMEOUT, cwd=EXAMPLES
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "RANDOM-WEIGHT" in result.stdout and expect in result.stdout
