"""Transcripts: one JSON record per debate, one JSONL file per update (DESIGN.md section 6).

A record holds everything ``debate-amp eval`` needs: the question and gold answer, every turn with its trace tree
(provenance ``human`` / ``policy`` / ``target``, per-node human calls), each continue_t with its trace, the
verdict, the catastrophe costs, the side rewards, and the alpha / lagrange_multiplier / force_stop_p in force.
Files are written atomically (a temporary file renamed into place), so a reader never sees half a file; the
reader validates every record and names ``file:line`` for a bad one.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from debate_amp.debate.engine import Debate, Judgment
from debate_amp.protocol import Trace

SCHEMA_VERSION = 1

_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "schema_version": int,
    "run": str,
    "update": int,
    "question_id": str,
    "question": str,
    "gold": (str, type(None)),
    "turns": list,
    "continues": list,
    "winner": dict,
    "costs": list,
    "rewards": dict,
    "alpha": (float, int, type(None)),
    "lagrange_multiplier": (float, int, type(None)),
    "force_stop_p": (float, int),
    "human_calls": int,
    "model_calls": int,
}


class TranscriptError(ValueError):
    """A transcript line that is not a valid record; the message starts with ``file:line:``."""


def trace_to_dict(trace: Trace) -> dict[str, Any]:
    node: dict[str, Any] = {
        "who": trace.who,
        "source": trace.source,
        "kind": trace.posed.kind,
        "prompt": trace.posed.render(),
        "text": trace.text,
        "human_calls": trace.human_calls,
    }
    if trace.op:
        node["op"] = trace.op
    if trace.from_store:
        node["from_store"] = True
    if trace.token_ids:
        node["token_ids"] = list(trace.token_ids)
        node["logprobs"] = [round(lp, 6) for lp in trace.logprobs or []]
    if trace.replaced is not None:
        node["replaced"] = trace_to_dict(trace.replaced)
    if trace.children:
        node["children"] = [trace_to_dict(child) for child in trace.children]
    return node


def _judgment(j: Judgment, key: str) -> dict[str, Any]:
    out = {key: j.value, "text": j.text, "parsed": j.parsed}
    if j.forced:
        out["forced"] = True
    out["trace"] = None if j.trace is None else trace_to_dict(j.trace)
    return out


def debate_to_record(
    debate: Debate,
    *,
    run: str,
    update: int,
    question_id: str,
    question: str,
    gold: str | None,
    force_stop_p: float,
    alpha: float | None = None,
    lagrange_multiplier: float | None = None,
) -> dict[str, Any]:
    traces = debate.traces()
    nodes = [node for trace in traces for node in trace.walk()]
    assert debate.winner is not None
    return {
        "schema_version": SCHEMA_VERSION,
        "run": run,
        "update": update,
        "question_id": question_id,
        "question": question,
        "gold": gold,
        "turns": [
            {
                "t": t,
                "side": turn.side,
                "text": turn.text,
                "human_calls": turn.trace.total_human_calls(),
                "trace": trace_to_dict(turn.trace),
            }
            for t, turn in enumerate(debate.turns)
        ],
        "continues": [{"t": t, **_judgment(j, "continue")} for t, j in enumerate(debate.continues)],
        "winner": _judgment(debate.winner, "side"),
        "costs": [{"t": t, **_judgment(j, "cost")} for t, j in enumerate(debate.costs)],
        "rewards": debate.rewards,
        "alpha": alpha,
        "lagrange_multiplier": lagrange_multiplier,
        "force_stop_p": force_stop_p,
        "human_calls": sum(node.human_calls for node in nodes),
        "model_calls": sum(1 for node in nodes if node.source.startswith("model:") and not node.op),
    }


def write_transcripts(path: str | Path, records: Iterable[dict[str, Any]]) -> Path:
    """Write records as JSONL atomically: to a temporary file in the same folder, fsynced, then renamed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            for record in records:
                f.write(json.dumps(record, separators=(",", ":")) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def validate_record(record: Any) -> str | None:
    """None if ``record`` is a valid transcript record, else what is wrong with it."""
    if not isinstance(record, dict):
        return f"a record is a JSON object, got {type(record).__name__}"
    version = record.get("schema_version")
    if version != SCHEMA_VERSION:
        return f"unknown schema_version {version!r} (this reader knows {SCHEMA_VERSION})"
    for key, types in _REQUIRED.items():
        if key not in record:
            return f"missing field '{key}'"
        if isinstance(record[key], bool) or not isinstance(record[key], types):
            return f"field '{key}' has the wrong type ({type(record[key]).__name__})"
    for t, turn in enumerate(record["turns"]):
        for key in ("side", "text", "trace"):
            if key not in turn:
                return f"turns[{t}]: missing field '{key}'"
    if not record["turns"]:
        return "a debate has at least one turn"
    if "side" not in record["winner"]:
        return "winner: missing field 'side'"
    return None


def parse_record(line: str, where: str) -> dict[str, Any]:
    """One JSONL line as a validated record; a bad one raises :class:`TranscriptError` starting ``where:`` (the
    caller's ``file:line``)."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        what = "truncated record" if not line.endswith("\n") else "not valid JSON"
        raise TranscriptError(f"{where}: {what} ({e.msg} at column {e.colno})") from None
    problem = validate_record(record)
    if problem is not None:
        raise TranscriptError(f"{where}: {problem}")
    return record


def read_transcripts(path: str | Path) -> Iterator[dict[str, Any]]:
    """Yield the records of a JSONL transcript file; a bad line raises :class:`TranscriptError` naming file:line."""
    with open(path) as f:
        for lineno, line in enumerate(f, start=1):
            if line.strip():
                yield parse_record(line, f"{path}:{lineno}")
