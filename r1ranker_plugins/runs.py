"""Reading and writing runs: RankGPT/rank_llm JSON, TREC runs, topics and corpora.

Every reader names the file and line of a malformed record. Paths found inside a run are
never opened: texts come only from the corpus or index the caller names.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

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
    """Where the shared evaluation data lives: `$R1RANKER_DATA`, else `../shared/data`."""
    if "R1RANKER_DATA" in os.environ:
        return Path(os.environ["R1RANKER_DATA"])
    for base in (Path.cwd(), Path(__file__).resolve().parents[1]):
        candidate = base.parent / "shared" / "data"
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("shared data not found: set R1RANKER_DATA to its directory")


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


def read_trec_run(path: str | Path) -> dict[str, list[tuple[str, float]]]:
    """TREC run `qid Q0 docid rank score tag` → per query (docid, score), best score first.

    Ties keep file order; a docid repeated within a query keeps its first line.
    """
    run: dict[str, list[tuple[str, float]]] = {}
    seen: set[tuple[str, str]] = set()
    for number, fields in _lines(path):
        if len(fields) != 6:
            raise RunFormatError(f"{path}:{number}: expected 6 fields 'qid Q0 docid rank score tag', got {len(fields)}")
        qid, _, docid, _, score, _ = fields
        try:
            value = float(score)
        except ValueError:
            raise RunFormatError(f"{path}:{number}: score {score!r} is not a number") from None
        if (qid, docid) not in seen:
            seen.add((qid, docid))
            run.setdefault(qid, []).append((docid, value))
    for hits in run.values():
        hits.sort(key=lambda hit: -hit[1])
    return run


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


def resume_run(path: str | Path, expected: dict[str, int]) -> set[str]:
    """Keep the complete queries of an interrupted output run and return their ids.

    A query is complete when it has exactly its expected number of distinct docids; the file is
    rewritten without partial queries, so appending the rest gives no duplicates or gaps.
    """
    path = Path(path)
    if not path.exists():
        return set()
    blocks: dict[str, list[str]] = {}
    for _, line in _raw_lines(path):
        fields = line.split()
        if len(fields) == 6:
            blocks.setdefault(fields[0], []).append(line)
    done = {
        qid
        for qid, lines in blocks.items()
        if qid in expected and len({line.split()[2] for line in lines}) == len(lines) == expected[qid]
    }
    partial = path.with_name(path.name + ".partial")
    partial.write_text("".join("\n".join(blocks[qid]) + "\n" for qid in blocks if qid in done), encoding="utf-8")
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
