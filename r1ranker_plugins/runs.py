"""Reading and writing runs: RankGPT/rank_llm JSON, TREC runs, topics and corpora.

Every reader names the file and line of a malformed record. Paths found inside a run are
never opened: texts come only from the corpus or index the caller names.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .types import Candidate, Ranking


class RunFormatError(ValueError):
    """A run, topics or corpus file is malformed; the message names the file and line."""


@dataclass
class QueryRun:
    """One query and its first-stage candidates, best first."""

    qid: str
    query: str
    candidates: list[Candidate] = field(default_factory=list)


def data_dir() -> Path:
    """Where the shared evaluation data lives: the directory `$R1RANKER_DATA` names."""
    if "R1RANKER_DATA" not in os.environ:
        raise FileNotFoundError("the evaluation data was not found: set R1RANKER_DATA to its directory")
    return Path(os.environ["R1RANKER_DATA"])


def read_rankgpt_json(path: str | Path) -> list[QueryRun]:
    """`[{"query", "hits": [{"qid", "docid", "content", "score"?, ...}]}]` (RankGPT, rank_llm)."""
    try:
        records = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise RunFormatError(f"{path}:{error.lineno}: invalid JSON ({error.msg})") from error
    if not isinstance(records, list):
        raise RunFormatError(f"{path}: expected a JSON list of {{query, hits}} records")
    runs = []
    for n, record in enumerate(records):
        where = f"{path}: record {n}"
        if not isinstance(record, dict) or "query" not in record or "hits" not in record:
            raise RunFormatError(f"{where}: needs 'query' and 'hits'")
        hits = record["hits"]
        qid = str(hits[0]["qid"]) if hits and "qid" in hits[0] else str(record.get("qid", n))
        candidates = []
        for k, hit in enumerate(hits):
            if "docid" not in hit or "content" not in hit:
                raise RunFormatError(f"{where}, hit {k}: needs 'docid' and 'content'")
            extra = {key: value for key, value in hit.items() if key not in {"docid", "content", "score"}}
            candidates.append(Candidate(str(hit["docid"]), str(hit["content"]), extra, hit.get("score")))
        runs.append(QueryRun(qid, str(record["query"]), candidates))
    return runs


def trec_rows(path: str | Path) -> Iterator[tuple[int, str, str, int, float]]:
    """The one TREC run parser: `(line number, qid, docid, rank, score)` per line, checked."""
    for number, fields in _lines(path):
        row = _trec_row(fields)
        if isinstance(row, str):
            raise RunFormatError(f"{path}:{number}: {row}")
        yield number, *row


def _trec_row(fields: list[str]) -> tuple[str, str, int, float] | str:
    """`qid Q0 docid rank score tag` as (qid, docid, rank, score), or what is wrong with it."""
    if len(fields) != 6:
        return f"expected 6 fields 'qid Q0 docid rank score tag', got {len(fields)}"
    qid, _, docid, rank, score, _ = fields
    try:
        value = float(score)
    except ValueError:
        return f"score {score!r} is not a number"
    if not rank.lstrip("-").isdigit():
        return f"rank {rank!r} is not an integer"
    return qid, docid, int(rank), value


def read_trec_run(path: str | Path) -> dict[str, list[tuple[str, float]]]:
    """TREC run `qid Q0 docid rank score tag` → per query (docid, score), best score first.

    Ties keep file order; a docid repeated within a query keeps its first line.
    """
    run: dict[str, list[tuple[str, float]]] = {}
    seen: set[tuple[str, str]] = set()
    for _, qid, docid, _, score in trec_rows(path):
        if (qid, docid) not in seen:
            seen.add((qid, docid))
            run.setdefault(qid, []).append((docid, score))
    for hits in run.values():
        hits.sort(key=lambda hit: -hit[1])
    return run


def run_docids(path: str | Path) -> dict[str, list[str]]:
    """A TREC run as qid -> docids, best first (empty when the file does not exist)."""
    if not Path(path).is_file():
        return {}
    return {qid: [docid for docid, _ in hits] for qid, hits in read_trec_run(path).items()}


def read_topics(path: str | Path) -> dict[str, str]:
    """Topics as `qid<TAB>query` lines, or BEIR `queries.jsonl` (`_id`, `text`)."""
    if str(path).endswith(".jsonl"):
        return {str(r.get("_id", r.get("id"))): r["text"] for r in _jsonl(path, needs=("text",))}
    topics = {}
    for number, line in _raw_lines(path):
        if "\t" not in line:
            raise RunFormatError(f"{path}:{number}: expected 'qid<TAB>query'")
        qid, text = line.split("\t", 1)
        topics[qid.strip()] = text.strip()
    return topics


def read_corpus(path: str | Path, ids: set[str] | None = None) -> dict[str, str]:
    """Doc texts from a BEIR directory or a JSONL file (`_id`/`id`/`docid`, `title`, `text`/`contents`).

    With `ids`, only those documents are kept, so large corpora stream through.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "corpus.jsonl"
    docs = {}
    for record in _jsonl(path):
        docid = str(record.get("_id", record.get("id", record.get("docid"))))
        if ids is not None and docid not in ids:
            continue
        body = record.get("text", record.get("contents", ""))
        title = record.get("title") or ""
        docs[docid] = f"{title} {body}".strip() if title else str(body)
    return docs


def runs_from_trec(
    run_path: str | Path, topics: dict[str, str], corpus: dict[str, str], hits: int | None = None
) -> list[QueryRun]:
    """Join a TREC run with topics and texts; a missing topic or document is an error."""
    out = []
    for qid, ranked in read_trec_run(run_path).items():
        if qid not in topics:
            raise RunFormatError(f"{run_path}: query {qid!r} is not in the topics")
        ranked = ranked[:hits] if hits else ranked
        missing = [docid for docid, _ in ranked if docid not in corpus]
        if missing:
            raise RunFormatError(
                f"{run_path}: query {qid!r}: {len(missing)} docids not in the corpus, e.g. {missing[0]!r}"
            )
        out.append(QueryRun(qid, topics[qid], [Candidate(d, corpus[d], {}, s) for d, s in ranked]))
    return out


def trec_lines(qid: str, ranking: Ranking, tag: str) -> list[str]:
    """TREC lines for one ranking; scores strictly decrease so trec_eval keeps our order."""
    return [
        f"{qid} Q0 {candidate.id} {rank} {score:.6f} {tag}"
        for rank, (candidate, score) in enumerate(zip(ranking.ranked, ranking.scores, strict=True), start=1)
    ]


class RunMismatchError(ValueError):
    """An output to resume was made with other settings (or has no record of them)."""


# What changes which queries a run takes or how fast it goes, never how a query is ranked: a resumed
# run may change these (e.g. a larger --limit extends it).
OPERATIONAL = frozenset(
    {
        "limit", "sample", "batch_size", "wave_size", "max_concurrency", "timeout", "max_retries", "backoff",
        "max_batch_size", "max_batch_tokens", "enforce_eager", "max_num_seqs", "kv_cache_memory_bytes",
        "gpu_memory_utilization",
    }
)  # fmt: skip


def data_digest(queries: Iterable[QueryRun]) -> str:
    """A fingerprint of the data ranked: every query's id and text and its candidates' ids and texts."""
    digest = hashlib.sha256()
    for run in queries:
        digest.update(json.dumps([run.qid, run.query, [(c.id, c.text) for c in run.candidates]]).encode("utf-8"))
    return digest.hexdigest()


def differences(old: Any, new: Any, where: str = "") -> list[str]:
    """What differs between two settings records, as `key: old -> new` (operational keys ignored)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new)):
            if key not in OPERATIONAL:
                out += differences(old.get(key), new.get(key), f"{where}{key}.")
        return out
    return [] if old == new else [f"{where.rstrip('.')}: {old!r} -> {new!r}"]


class RunWriter:
    """Writes a TREC run (and traces) as rankings arrive, beside a record of what made it.

    Resuming: when `path` exists, its record must match `record` (else `RunMismatchError`
    naming what differs, and the flag that starts over); its complete queries are kept
    (`done`) and partial ones dropped, so appending the rest gives no duplicates or gaps.
    `overwrite` starts over. The files are created with the first ranking, so a run that
    ranks nothing leaves no empty file behind.
    """

    def __init__(
        self,
        path: str | Path,
        record: dict[str, Any],
        expected: dict[str, int],
        *,
        tag: str,
        record_path: str | Path | None = None,
        trace: str | Path | None = None,
        overwrite: bool = False,
        flag: str = "--output",
    ) -> None:
        self.path = Path(path)
        self.record_path = Path(record_path) if record_path else self.path.with_name(self.path.name + ".settings.json")
        self.trace = Path(trace) if trace else None
        self.record = record
        self.tag = tag
        if self.path.is_dir():
            raise IsADirectoryError(f"{flag} {self.path} is a directory; give the path of a run file")
        if overwrite:
            for old in (self.path, self.record_path, self.trace):
                if old is not None:
                    old.unlink(missing_ok=True)
        self.done = self._resume(expected, flag)
        self._out: Any = None
        self._traces: Any = None

    def _resume(self, expected: dict[str, int], flag: str) -> set[str]:
        if not self.path.is_file() or self.path.stat().st_size == 0:
            return set()
        if not self.record_path.is_file():
            raise RunMismatchError(
                f"{self.path} exists but holds no record of the settings that made it ({self.record_path.name}); "
                f"pass --overwrite to replace it, or choose another {flag}"
            )
        old = json.loads(self.record_path.read_text(encoding="utf-8"))
        changed = differences(old, self.record)
        if changed:
            raise RunMismatchError(
                f"{self.path} was made with other settings ({'; '.join(changed)}); "
                f"pass --overwrite to replace it, or choose another {flag}"
            )
        return resume_run(self.path, expected)

    def write(self, qid: str, ranking: Ranking, trace: dict[str, Any] | None = None) -> None:
        """Append one query's ranking (one write, flushed) and its trace line."""
        if self._out is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.record_path.write_text(json.dumps(self.record, indent=1, sort_keys=True) + "\n", encoding="utf-8")
            self._out = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())
            if self.trace is not None:
                self._traces = open(self.trace, "a", encoding="utf-8")  # noqa: SIM115
        self._out.write("\n".join(trec_lines(qid, ranking, self.tag)) + "\n")
        self._out.flush()
        if self._traces is not None:
            self._traces.write(json.dumps({"qid": qid, **(trace or {})}) + "\n")
            self._traces.flush()
        self.done.add(qid)

    def close(self) -> None:
        for handle in (self._out, self._traces):
            if handle is not None:
                handle.close()

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()


def resume_run(path: str | Path, expected: dict[str, int]) -> set[str]:
    """Keep the complete queries of an interrupted output run and return their ids.

    A query is complete when it has exactly its expected number of distinct docids; the file is
    rewritten without partial queries, so appending the rest gives no duplicates or gaps.
    """
    path = Path(path)
    if not path.exists():
        return set()
    blocks: dict[str, list[str]] = {}
    docids: dict[str, set[str]] = {}
    for _, line in _raw_lines(path):
        row = _trec_row(line.split())
        if isinstance(row, tuple):  # else a line cut short by the interruption
            blocks.setdefault(row[0], []).append(line)
            docids.setdefault(row[0], set()).add(row[1])
    done = {qid for qid, lines in blocks.items() if len(docids[qid]) == len(lines) == expected.get(qid)}
    lines = [line for qid in blocks if qid in done for line in blocks[qid]]
    partial = path.with_name(path.name + ".partial")
    partial.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    partial.replace(path)
    return done


def write_trec_run(path: str | Path, rankings: Iterable[tuple[str, Ranking]], tag: str) -> None:
    with open(path, "w", encoding="utf-8") as out:
        for qid, ranking in rankings:
            out.write("\n".join(trec_lines(qid, ranking, tag)) + "\n")


def _raw_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if line.strip():
                yield number, line.rstrip("\n")


def _lines(path: str | Path) -> Iterator[tuple[int, list[str]]]:
    for number, line in _raw_lines(path):
        yield number, line.split()


def _jsonl(path: str | Path, needs: tuple[str, ...] = ()) -> Iterator[dict]:
    for number, line in _raw_lines(path):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise RunFormatError(f"{path}:{number}: invalid JSON ({error.msg})") from error
        if not isinstance(record, dict) or any(key not in record for key in needs):
            raise RunFormatError(f"{path}:{number}: expected an object with {needs}")
        yield record
