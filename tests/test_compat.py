"""Host compatibility: the declared ranges hold, and the host internals the adapters lean on are still there.

Each adapter keeps what it needs of a host's non-public API in one commented place with a
`host_problems()` check; these tests run them against the installed hosts and fail naming the
host and its version. `.ci/compat` runs this file in environments built with the lowest declared
versions (uv's lowest-direct resolution), the newest, and Python 3.12 with pyserini 2.x; there
`R1RANKER_COMPAT_LOWEST=1` also requires each installed host to sit exactly on its declared floor.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
OPTIONS = {"max_new_tokens": 4, "max_candidate_tokens": 16}


def declared() -> dict[str, list[Requirement]]:
    """The requirements of every extra in pyproject.toml, by extra (self-references left out)."""
    import tomllib  # Python 3.11+, like every environment these tests run in

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    return {
        extra: [r for r in map(Requirement, requirements) if r.name != "r1ranker-plugins"]
        for extra, requirements in extras.items()
    }


def installed(name: str) -> Version | None:
    try:
        return Version(version(name))
    except PackageNotFoundError:
        return None


def floor(requirement: Requirement) -> Version | None:
    lows = [Version(s.version) for s in requirement.specifier if s.operator in (">=", "==", "~=")]
    return max(lows) if lows else None


def installed_extras() -> list[str]:
    """The extras this environment was built with: `R1RANKER_COMPAT_EXTRAS` in .ci/compat, else all (`.[dev]`)."""
    chosen = os.environ.get("R1RANKER_COMPAT_EXTRAS")
    return chosen.split(",") if chosen else list(declared())


def test_installed_hosts_are_inside_the_declared_ranges():
    """Whatever resolved this environment, each installed host satisfies every range of its extras that names it."""
    outside = [
        f"{r.name} {installed(r.name)} is outside [{extra}] {r.specifier}"
        for extra, requirements in declared().items()
        if extra in installed_extras()
        for r in requirements
        if installed(r.name) is not None and not r.specifier.contains(installed(r.name), prereleases=True)
    ]
    assert not outside, "\n".join(outside)


def wrong_floors(extras: list[str], pinned: set[str]) -> list[str]:
    """Hosts of `extras` not installed at exactly their declared floor (those in `pinned` left out)."""
    return [
        f"{r.name}: [{extra}] declares {r.specifier} but the lowest resolution installed {installed(r.name)}"
        for extra, requirements in declared().items()
        if extra in extras
        for r in requirements
        if r.name not in pinned and floor(r) is not None and installed(r.name) != floor(r)
    ]


if os.environ.get("R1RANKER_COMPAT_LOWEST"):  # defined only there: in CI a skipped test counts as failed

    def test_lowest_resolution_lands_on_every_declared_floor():
        """uv's lowest-direct resolution installs each declared floor: a floor that cannot be installed with
        the other extras (the resolver has to go higher) is a false promise. `R1RANKER_COMPAT_EXTRAS` names
        the extras installed; `R1RANKER_COMPAT_PINNED` the hosts pinned above their floor on purpose."""
        assert os.environ.get("R1RANKER_COMPAT_EXTRAS"), "R1RANKER_COMPAT_EXTRAS is not set"
        pinned = set(filter(None, os.environ.get("R1RANKER_COMPAT_PINNED", "").split(",")))
        wrong = wrong_floors(installed_extras(), pinned)
        assert not wrong, "\n".join(wrong)


# --- rerankers ------------------------------------------------------------------------------


def test_rerankers_internals_are_where_the_adapter_expects_them():
    from r1ranker_plugins.integrations import rerankers

    assert rerankers.host_problems() == []


def test_r1ranker_runs_baseranker_init(tiny_model_path):
    """R1Ranker hands (model_name_or_path, verbose) on to the next `__init__` in the MRO, BaseRanker's."""
    from rerankers.models.ranker import BaseRanker

    from r1ranker_plugins.integrations.rerankers import R1Ranker

    seen = []

    class Recording(BaseRanker):
        def __init__(self, model_name_or_path, verbose):
            seen.append((model_name_or_path, verbose))
            super().__init__(model_name_or_path, verbose)

    class Probe(R1Ranker, Recording):
        pass

    ranker = Probe(tiny_model_path, verbose=0, strategy="dranker", **OPTIONS)
    assert seen == [(tiny_model_path, 0)]
    assert (ranker.model_name_or_path, ranker.verbose) == (tiny_model_path, 0)
    assert ranker.rank("q", ["a b", "c"]).results[0].rank == 1


# --- llama-index ----------------------------------------------------------------------------


def test_llama_index_internals_are_where_the_adapter_expects_them():
    from r1ranker_plugins.integrations import llama_index

    assert llama_index.host_problems() == []


def test_llama_index_public_methods_reach_the_adapter_hooks(tiny_model_path):
    """postprocess_nodes / apostprocess_nodes of the installed llama-index call our two hooks."""
    import asyncio

    from llama_index.core.schema import NodeWithScore, TextNode

    from r1ranker_plugins.integrations.llama_index import R1RankerPostprocessor

    calls = []

    class Counting(R1RankerPostprocessor):
        def _postprocess_nodes(self, nodes, query_bundle=None):
            calls.append("sync")
            return super()._postprocess_nodes(nodes, query_bundle)

        async def _apostprocess_nodes(self, nodes, query_bundle=None):
            calls.append("async")
            return await super()._apostprocess_nodes(nodes, query_bundle)

    post = Counting(model=tiny_model_path, top_n=1, options=OPTIONS)
    given = [NodeWithScore(node=TextNode(text=t)) for t in ("a b", "c d")]
    assert len(post.postprocess_nodes(given, query_str="a")) == 1
    assert len(asyncio.run(post.apostprocess_nodes(given, query_str="a"))) == 1
    assert calls == ["sync", "async"], f"llama-index-core {version('llama-index-core')} called {calls}"


# --- pyserini / pyjnius ---------------------------------------------------------------------


def test_pyserini_internals_are_where_the_adapter_expects_them():
    from r1ranker_plugins.integrations import jvm

    assert jvm.host_problems() == []
    assert re.fullmatch(r"anserini-[\d.]+-fatjar\.jar", Path(jvm.anserini_jar()).name)


def test_anserini_classpath_setting_is_honoured(tmp_path, monkeypatch):
    from r1ranker_plugins.integrations import jvm

    jar = Path(jvm.anserini_jar())
    (tmp_path / jar.name).symlink_to(jar)
    monkeypatch.setenv("ANSERINI_CLASSPATH", str(tmp_path))
    assert jvm.anserini_jar() == str(tmp_path / jar.name)
    (tmp_path / jar.name).unlink()
    with pytest.raises(FileNotFoundError, match=rf"pyserini {version('pyserini')}: .*ANSERINI_CLASSPATH"):
        jvm.anserini_jar()


def test_pyserini_imports_offline():
    """The modules the adapter and its tests import load without the network (pyserini 2.4.0's do not)."""
    modules = ["pyserini.search", "pyserini.search.lucene", "pyserini.index.lucene", "pyserini.eval.trec_eval"]
    lines = [f"jvm.import_pyserini({m!r})" for m in modules]
    script = "\n".join(["from r1ranker_plugins.integrations import jvm\n", *lines])
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"pyserini {version('pyserini')}: {result.stderr.strip()[-1500:]}"


def test_offline_error_says_what_to_provide():
    from r1ranker_plugins.integrations import jvm

    message = str(jvm.offline_error("pyserini.search", "Name or service not known"))
    assert f"pyserini {version('pyserini')}" in message and "pyserini.search" in message
    assert "raw.githubusercontent.com" in message and "https_proxy" in message
    assert "pip install 'pyserini>=2,<2.4'" in message and "Name or service not known" in message
