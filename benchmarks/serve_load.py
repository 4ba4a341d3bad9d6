"""`r1ranker serve` under load: many concurrent clients against the same requests sent one at a time.

A bounded run on loopback. `--requests` rerank requests (TREC DL19 and DL20 queries in turn, each with
its BM25 top-`--documents`) go to a server started here, first one at a time, then from
`--concurrency` clients at once, each phase on a fresh server (no prefix cache carried over). Reports
throughput (requests/s) of each phase and their ratio, p50/p95/p99 latency, errors, whether every
response is a valid ranking (every document once, scores strictly decreasing in (0, 1]), and the
server's peak RSS. Target: a ratio of at least 8 on vLLM for CPU with the tiny model, no request lost.

    python benchmarks/serve_load.py --requests 400 --concurrency 64 --out runs/serve_load.json

Prints the JSON and a table; `--sequential-requests N` times the first N requests one at a time
(the default: all of them). Other flags after `--` go to `r1ranker serve`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

from r1ranker_plugins.runs import data_dir, read_rankgpt_json
from r1ranker_plugins.testing import tiny_model

TARGET = 8.0


def requests_for(count: int, documents: int, datasets: Sequence[str]) -> list[dict[str, Any]]:
    """`count` Cohere v2 bodies: the data sets' queries in turn, repeated as needed."""
    runs = [run for name in datasets for run in read_rankgpt_json(data_dir() / "passage" / name / "bm25_top100.json")]
    bodies = (
        {"model": "r1ranker", "query": r.query, "documents": [c.text for c in r.candidates[:documents]]} for r in runs
    )
    return list(itertools.islice(itertools.cycle(bodies), count))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def server(args: argparse.Namespace, log: Path) -> Iterator[tuple[str, int]]:
    """A fresh `r1ranker serve` on a free loopback port; yields (url, pid), stops it with SIGTERM."""
    port = free_port()
    command = [
        sys.executable, "-m", "r1ranker_plugins.cli", "serve", "--strategy", args.strategy, "--model", args.model,
        "--backend", args.backend, "--max-new-tokens", str(args.max_new_tokens),
        "--max-candidate-tokens", str(args.max_candidate_tokens), "--port", str(port),
        "--max-in-flight", str(args.concurrency), *args.server_args,
    ]  # fmt: skip
    if args.backend == "vllm":
        command += ["--enforce-eager", "--max-model-len", "4096", "--dtype", args.dtype]
    with log.open("ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited ({process.returncode}); see {log}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server was not ready in 600 s; see {log}")
            time.sleep(0.5)
        yield url, process.pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident set (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for process {pid}")


def valid(response: httpx.Response, documents: int) -> bool:
    """Every document once, best first, scores strictly decreasing in (0, 1]."""
    if response.status_code != 200:
        return False
    results = response.json()["results"]
    scores = [r["relevance_score"] for r in results]
    ordered = all(a > b for a, b in itertools.pairwise(scores)) and all(0 < s <= 1 for s in scores)
    return sorted(r["index"] for r in results) == list(range(documents)) and ordered


async def phase(url: str, bodies: list[dict[str, Any]], concurrency: int) -> dict[str, Any]:
    """Send every body with `concurrency` clients at most; latencies, errors and validity."""
    latencies: list[float] = []
    errors: list[str] = []
    valid_rankings = 0
    pending = iter(bodies)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async with httpx.AsyncClient(base_url=url, timeout=3600, limits=limits) as client:

        async def worker() -> None:
            nonlocal valid_rankings
            for body in pending:
                start = time.perf_counter()
                try:
                    response = await client.post("/v2/rerank", json=body)
                except httpx.HTTPError as error:
                    errors.append(repr(error))
                    continue
                latencies.append(time.perf_counter() - start)
                if response.status_code != 200:
                    errors.append(f"{response.status_code}: {response.text[:200]}")
                valid_rankings += valid(response, len(body["documents"]))

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - start
    cuts = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else latencies * 99
    return {
        "requests": len(bodies),
        "answered": len(latencies),
        "errors": len(errors),
        "error_samples": errors[:5],
        "valid_rankings": valid_rankings,
        "seconds": round(seconds, 2),
        "requests_per_s": round(len(bodies) / seconds, 3),
        "p50_s": round(cuts[49], 3),
        "p95_s": round(cuts[94], 3),
        "p99_s": round(cuts[98], 3),
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="hub id or local path (default: the tiny random-weight model)")
    parser.add_argument("--strategy", default="iranker")
    parser.add_argument("--backend", default="vllm")
    parser.add_argument("--dtype", default="float32", help="vllm dtype (default: float32, the tiny model's)")
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--sequential-requests", type=int, help="time the first N one at a time (default: all)")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--documents", type=int, default=20)
    parser.add_argument("--datasets", nargs="+", default=["dl19", "dl20"])
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--max-candidate-tokens", type=int, default=48)
    parser.add_argument("--log", type=Path, help="server log (default: a temporary file)")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    parser.add_argument("server_args", nargs=argparse.REMAINDER, help="after --: more r1ranker serve flags")
    args = parser.parse_args(argv)
    args.model = args.model or tiny_model()
    args.server_args = [a for a in args.server_args if a != "--"]
    log = args.log or Path(tempfile.mkstemp(prefix="serve_load-", suffix=".log")[1])

    bodies = requests_for(args.requests, args.documents, args.datasets)
    sequential = bodies[: args.sequential_requests or len(bodies)]
    warmup = bodies[: min(4, len(bodies))]
    rows = {}
    for name, sent, clients in (("one_at_a_time", sequential, 1), ("concurrent", bodies, args.concurrency)):
        with server(args, log) as (url, pid):
            asyncio.run(phase(url, warmup, len(warmup)))  # first calls pay one-off costs
            rows[name] = {**asyncio.run(phase(url, sent, clients)), "clients": clients, "peak_rss_mib": 0.0}
            rows[name]["peak_rss_mib"] = round(peak_rss_mib(pid), 1)
    ratio = rows["concurrent"]["requests_per_s"] / rows["one_at_a_time"]["requests_per_s"]
    lost = sum(row["requests"] - row["answered"] for row in rows.values())
    report = {
        "model": args.model,
        "strategy": args.strategy,
        "backend": args.backend,
        "documents": args.documents,
        "max_new_tokens": args.max_new_tokens,
        "max_candidate_tokens": args.max_candidate_tokens,
        "phases": rows,
        "throughput_ratio": round(ratio, 2),
        "target_ratio": TARGET,
        "lost": lost,
        "met": ratio >= TARGET and lost == 0 and all(row["errors"] == 0 for row in rows.values()),
    }
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    columns = ["clients", "requests", "errors", "valid_rankings", "requests_per_s", "p50_s", "p95_s", "p99_s"]
    print(f"{'phase':>14}  " + "  ".join(f"{c:>14}" for c in [*columns, "peak_rss_mib"]), file=sys.stderr)
    for name, row in rows.items():
        cells = [row[c] for c in [*columns, "peak_rss_mib"]]
        print(f"{name:>14}  " + "  ".join(f"{c!s:>14}" for c in cells), file=sys.stderr)
    print(f"throughput ratio {ratio:.2f} (target {TARGET:g}), lost {lost}", file=sys.stderr)
    return report


if __name__ == "__main__":
    main()
