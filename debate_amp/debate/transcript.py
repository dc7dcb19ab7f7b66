"""Transcripts: one JSON record per debate, one JSONL file per update (DESIGN.md section 6).

A record holds everything ``debate-amp eval`` needs: the task, the question and gold answer, every turn with its
trace tree
(provenance ``human`` / ``policy`` / ``target``, per-node human calls), each continue_t with its trace, the
verdict, the catastrophe costs, the side rewards, and the alpha / lagrange_multiplier / force_stop_p in force.
Files are written atomically (a temporary file renamed into place), so a reader never sees half a file; the
reader validates every record and names ``file:line`` for a bad one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from debate_amp.debate.engine import Debate, Judgment
from debate_amp.durable import write_whole
from debate_amp.protocol import Trace

SCHEMA_VERSION = 2
"""2 added ``task`` (the registered task's name); version 1 records, written when perm was the only task, are read
as perm's."""
READABLE_VERSIONS = (1, 2)

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
    if trace.timed_out:
        node["timed_out"] = True
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
    task: str,
    force_stop_p: float,
    alpha: float | None = None,
    lagrange_multiplier: float | None = None,
) -> dict[str, Any]:
    traces = debate.traces()
    nodes = [node for trace in traces for node in trace.walk()]
    assert debate.winner is not None
    return {
        "schema_version": SCHEMA_VERSION,
        "task": task,
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
        "human_calls": debate.human_calls(),
        "model_calls": sum(1 for node in nodes if node.source.startswith("model:") and not node.op),
    } | ({"scripted": debate.scripted} if debate.scripted is not None else {})


def write_transcripts(path: str | Path, records: Iterable[dict[str, Any]]) -> Path:
    """Write records as JSONL atomically: to a temporary file in the same folder, fsynced, then renamed."""
    return write_whole(path, (json.dumps(record, separators=(",", ":")) + "\n" for record in records))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value  # not NaN


def _count(value: Any, where: str) -> str | None:
    return None if _is_int(value) and value >= 0 else f"{where} must be a count (an integer >= 0), got {value!r}"


def _trace_problem(node: Any, where: str, depth: int = 0) -> str | None:
    """What is wrong with a saved trace tree (None: nothing)."""
    if node is None:
        return None
    if depth > 64:
        return f"{where}: a trace nested more than 64 deep"
    if not isinstance(node, dict):
        return f"{where} must be an object or null, got {type(node).__name__}"
    for key in ("who", "source", "kind", "prompt", "text"):
        if key in node and not isinstance(node[key], str):
            return f"{where}.{key} must be a string, got {node[key]!r}"
    if "human_calls" in node and (problem := _count(node["human_calls"], f"{where}.human_calls")):
        return problem
    if "replaced" in node and (problem := _trace_problem(node["replaced"], f"{where}.replaced", depth + 1)):
        return problem
    children = node.get("children", [])
    if not isinstance(children, list):
        return f"{where}.children must be a list, got {type(children).__name__}"
    for i, child in enumerate(children):
        if child is None:
            return f"{where}.children[{i}] must be an object, got null"
        if problem := _trace_problem(child, f"{where}.children[{i}]", depth + 1):
            return problem
    return None


def _judgment_problem(j: Any, where: str, key: str, allowed: tuple[Any, ...] | None, t: int | None) -> str | None:
    if not isinstance(j, dict):
        return f"{where} must be an object, got {type(j).__name__}"
    if key not in j:
        return f"{where}: missing field '{key}'"
    value = j[key]
    if allowed is not None:
        if (isinstance(value, (int, float)) and not isinstance(value, bool)) or value not in allowed:  # 1 == True
            return f"{where}.{key} must be one of {', '.join(map(repr, allowed))}, got {value!r}"
    elif not (value is None or _is_number(value)):
        return f"{where}.{key} must be a number or null, got {value!r}"
    if t is not None and ("t" not in j or j["t"] != t or not _is_int(j["t"])):
        return f"{where}.t must be {t} (its position), got {j.get('t')!r}"
    if "text" in j and not isinstance(j["text"], str):
        return f"{where}.text must be a string, got {j['text']!r}"
    if "forced" in j and not isinstance(j["forced"], bool):
        return f"{where}.forced must be true or false, got {j['forced']!r}"
    return _trace_problem(j.get("trace"), f"{where}.trace")


def validate_record(record: Any) -> str | None:
    """None if ``record`` is a valid transcript record, else what is wrong with it: the fields, their types and
    ranges, down to the trace trees (a wrong type would otherwise become a wrong statistic)."""
    if not isinstance(record, dict):
        return f"a record is a JSON object, got {type(record).__name__}"
    version = record.get("schema_version")
    if isinstance(version, bool) or version not in READABLE_VERSIONS:
        known = ", ".join(map(str, READABLE_VERSIONS))
        return f"unknown schema_version {version!r} (this reader knows {known})"
    if version >= 2 and not isinstance(record.get("task"), str):
        return (
            "missing field 'task'" if "task" not in record else f"field 'task' must be a string, got {record['task']!r}"
        )
    for key, types in _REQUIRED.items():
        if key not in record:
            return f"missing field '{key}'"
        if isinstance(record[key], bool) or not isinstance(record[key], types):
            return f"field '{key}' has the wrong type ({type(record[key]).__name__})"
    for key in ("update", "human_calls", "model_calls"):
        if problem := _count(record[key], key):
            return problem
    p = record["force_stop_p"]
    if not (_is_number(p) and 0.0 <= p <= 1.0):
        return f"force_stop_p must be a probability in [0, 1], got {p!r}"
    for key in ("alpha", "lagrange_multiplier"):
        if record[key] is not None and not _is_number(record[key]):
            return f"{key} must be a number or null, got {record[key]!r}"
    if not record["turns"]:
        return "a debate has at least one turn"
    for t, turn in enumerate(record["turns"]):
        where = f"turns[{t}]"
        if not isinstance(turn, dict):
            return f"{where} must be an object, got {type(turn).__name__}"
        for key in ("side", "text", "trace"):
            if key not in turn:
                return f"{where}: missing field '{key}'"
        if "t" in turn and (not _is_int(turn["t"]) or turn["t"] != t):
            return f"{where}.t must be {t} (its position), got {turn['t']!r}"
        if turn["side"] not in ("even", "odd"):
            return f"{where}.side must be 'even' or 'odd', got {turn['side']!r}"
        if not isinstance(turn["text"], str):
            return f"{where}.text must be a string, got {turn['text']!r}"
        if "human_calls" in turn and (problem := _count(turn["human_calls"], f"{where}.human_calls")):
            return problem
        if problem := _trace_problem(turn["trace"], f"{where}.trace"):
            return problem
    for t, c in enumerate(record["continues"]):
        if problem := _judgment_problem(c, f"continues[{t}]", "continue", (True, False, None), t):
            return problem
    for t, c in enumerate(record["costs"]):
        if problem := _judgment_problem(c, f"costs[{t}]", "cost", None, t):
            return problem
    if problem := _judgment_problem(record["winner"], "winner", "side", ("even", "odd", None), None):
        return problem
    for side, reward in record["rewards"].items():
        if side not in ("even", "odd") or not _is_number(reward):
            return f"rewards must map 'even' / 'odd' to numbers, got {side!r}: {reward!r}"
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


def record_task(record: dict[str, Any]) -> str:
    """The task a (validated) record is about: its ``task`` field, or ``perm`` for a version 1 record."""
    return str(record.get("task", "perm"))
