"""Packaging: the layout maps onto one import package, and the core stays light to import."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "vllm", "httpx", "pyserini", "llama_index", "langchain_core", "trl")


def test_core_import_loads_no_heavy_library():
    code = (
        "import sys, r1ranker_plugins, r1ranker_plugins.cli;"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_editable_install_maps_integrations_and_training():
    import r1ranker_plugins.integrations
    import r1ranker_plugins.training

    assert Path(r1ranker_plugins.integrations.__file__).parent == ROOT / "integrations"
    assert Path(r1ranker_plugins.training.__file__).parent == ROOT / "training"


def test_wheel_contains_the_subpackages(tmp_path):
    build = [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q"]
    subprocess.run([*build, "-w", str(tmp_path)], check=True, capture_output=True)
    [wheel] = tmp_path.glob("r1ranker_plugins-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for module in ("__init__.py", "engines/hf.py", "integrations/__init__.py", "training/__init__.py", "cli.py"):
        assert f"r1ranker_plugins/{module}" in names
    assert not any(name.startswith(("integrations/", "training/", "tests/")) for name in names)
