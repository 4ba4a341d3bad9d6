"""What several test modules share: a small ranking example, and a real vLLM OpenAI-compatible server
on 127.0.0.1 for the tests that talk to one."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

QUERY = "how do solar panels produce electricity"
TEXTS = [
    "Solar panels contain photovoltaic cells that turn sunlight into electricity.",
    "The stock market closed higher on Friday.",
    "An inverter converts direct current into alternating current.",
    "Bananas are rich in potassium.",
    "Silicon releases electrons when photons strike it.",
    "A recipe for rice with vegetables.",
]
SMALL = {"max_new_tokens": 8, "max_candidate_tokens": 16}  # budgets for the tiny model: fast, and always forced


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """A vLLM OpenAI server subprocess in its own process group (it forks an engine core)."""

    def __init__(
        self, model: str, log: Path, port: int | None = None, *, dtype: str = "float32", max_model_len: int = 4096
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.log = log
        env = {k: v for k, v in os.environ.items() if k != "VLLM_ENABLE_V1_MULTIPROCESSING"}
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        env["VLLM_SERVER_DEV_MODE"] = "1"  # serves POST /reset_prefix_cache
        command = [
            sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model,
            "--host", "127.0.0.1", "--port", str(self.port), "--dtype", dtype,
            "--max-model-len", str(max_model_len), "--enforce-eager",
        ]  # fmt: skip
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )

    def wait_ready(self, timeout: float = 240.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"vLLM server exited ({self.process.returncode}):\n{self._tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=2).status_code == 200:
                    return
            time.sleep(0.5)
        raise RuntimeError(f"vLLM server not ready after {timeout:.0f} s:\n{self._tail()}")

    def kill(self, sig: int = signal.SIGTERM) -> None:
        """Signal the whole group; escalate to SIGKILL if it has not exited within 15 s."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=15)

    def _tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])


@contextlib.contextmanager
def serve(model: str, log: Path, **options) -> Iterator[Server]:
    server = Server(model, log, **options)
    try:
        server.wait_ready()
        yield server
    finally:
        server.kill()
