"""Packaging: the layout maps onto one import package, and the core stays light to import."""

from __future__ import annotations

import os
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


def test_the_wheel_builds_without_warnings_and_runs_the_demo_installed(tmp_path, tiny_model_path):
    """`pip install .` (not editable): the wheel holds every subpackage and its data, the build warns of
    nothing, and `r1ranker demo` runs from the installed copy, away from the source tree."""
    build = [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-w", str(tmp_path)]
    built = subprocess.run(build, check=True, capture_output=True, text=True, cwd=tmp_path)
    assert "warning" not in (built.stdout + built.stderr).lower().replace("warning: location", "")
    [wheel] = tmp_path.glob("r1ranker_plugins-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for module in (
        "__init__.py", "engines/hf.py", "datasets/tasks.py", "integrations/__init__.py", "training/__init__.py",
        "cli.py", "training/configs/tiny.yaml", "training/accelerate/multi-gpu.yaml", "training/deepspeed/zero2.json",
    ):  # fmt: skip
        assert f"r1ranker_plugins/{module}" in names
    assert not any(name.startswith(("integrations/", "training/", "tests/", "docs/")) for name in names)

    site = tmp_path / "site"
    install = [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)]
    subprocess.run(install, check=True, capture_output=True)
    env = {**os.environ, "PYTHONPATH": str(site)}
    code = "import r1ranker_plugins, sys; print(r1ranker_plugins.__file__); sys.exit(r1ranker_plugins.cli.main())"
    demo = ["demo", "--queries", "1", "--depth", "3", "--max-new-tokens", "4", "--model", tiny_model_path]
    result = subprocess.run(
        [sys.executable, "-c", f"import r1ranker_plugins.cli; {code}", *demo],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines()[0].startswith(str(site)) and "[setwise]" in result.stdout
