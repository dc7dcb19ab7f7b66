"""Training with real people as H (issue 15): a run that waits on people through its label store, is killed while
questions are pending, and resumes. People are played here by threads answering the store's queue as a web page or
a terminal would (the browser itself is driven in tests/integration/test_serve.py)."""

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from debate_amp.agents.humans.people import compose_reply
from debate_amp.agents.labels import LabelStore
from debate_amp.debate.transcript import read_transcripts
from tests.integration.test_train import TINY

ROOT = Path(__file__).resolve().parents[2]
PEOPLE = [
    "human.kind=web",
    "human.timeout_s=300",
    "trainer.rehearsal_examples=0",
    "sampler.p=1.0",
    "sampler.per_update=2",  # two questions for people an update: what a test can answer quickly
    "amp.questions_per_update=0",  # every human call inside a debate, so the transcripts show who answered
    "amp.curriculum_probe=0",
    "trainer.save_every=1",
    "trainer.eval_size=4",
]


def _command(out: Path, name: str, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "debate_amp.train", "recipes/default.yaml",
        *TINY, *PEOPLE, f"run.output_dir={out}", f"run.name={name}", "--no-progress", *extra,
    ]  # fmt: skip


def _answer(store: LabelStore, person: str) -> bool:
    """Answer one pending question as ``person`` would (a choice's first option, else the draft, else 0)."""
    question = store.claim(person)
    if question is None:
        return False
    view = question.view
    text = (view["choices"] or [None])[0] or view.get("draft") or "0"
    store.answer(question.key, compose_reply(view, text), person)
    return True


def _wait(condition, proc: subprocess.Popen, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"the run ended while waiting for {what}: {proc.stderr.read()[-3000:]}"  # type: ignore[union-attr]
        assert time.monotonic() < deadline, f"no {what} after {timeout}s"
        time.sleep(0.05)


def test_a_run_waits_on_people_is_killed_with_questions_pending_and_resumes(tmp_path):
    run_dir = tmp_path / "people"
    proc = subprocess.Popen(
        _command(tmp_path, "people", "trainer.updates=3"), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        _wait(lambda: (run_dir / "labels.sqlite").exists(), proc, "a label store")
        store = LabelStore(run_dir / "labels.sqlite")
        _wait(lambda: len(store.pending()) >= 1, proc, "a pending question")
        time.sleep(1.0)
        assert proc.poll() is None and len(store) == 0  # the run is waiting on people, nothing answered yet
        # ann answers until the first update is checkpointed and the second asks its first question
        checkpoint = run_dir / "checkpoints" / "update_000001" / "state.json"

        def ann_until_checkpointed() -> bool:
            # Looked at before answering: once update 1 is checkpointed ann answers nothing more, so update 2
            # cannot finish (on a loaded machine, answering first let it, and the resume began at update 2).
            if checkpoint.exists():
                return len(store.pending()) >= 1
            _answer(store, "ann")
            return False

        _wait(ann_until_checkpointed, proc, "a checkpoint and a pending question after it")
        answered = {label.key: label.answer for label in store}
        pending = {q.key for q in store.pending()}
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert pending
    # The kill lost no answer, and the questions pending then are offered again.
    store = LabelStore(run_dir / "labels.sqlite")
    assert {label.key: label.answer for label in store} == answered
    assert {label.human for label in store} == {"ann"}
    assert pending <= {q.key for q in store.pending()}
    offered = store.claim("bob")
    assert offered is not None and offered.key in pending
    store.release(offered.key, "bob")

    # Resume with people answering (a thread playing "bob"): the run finishes its updates.
    stop = threading.Event()

    def bob() -> None:
        db = LabelStore(run_dir / "labels.sqlite")
        while not stop.is_set():
            if not _answer(db, "bob"):
                time.sleep(0.05)
        db.close()

    worker = threading.Thread(target=bob, daemon=True)
    worker.start()
    try:
        resumed = subprocess.run(
            _command(tmp_path, "people", "trainer.updates=3", "--resume"), cwd=ROOT, capture_output=True, text=True,
            timeout=300,
        )  # fmt: skip
    finally:
        stop.set()
        worker.join(timeout=10)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming {run_dir} from update 1" in resumed.stdout
    store = LabelStore(run_dir / "labels.sqlite")
    assert {label.key: label.answer for label in store}.items() >= answered.items()
    people = {label.human for label in store}
    assert people == {"ann", "bob"}
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [row["update"] for row in rows if "update" in row][-1] == 3
    assert all(row.get("amp/human_timeouts", 0) == 0 for row in rows)
    # the transcripts name who answered each human node: a person, never "synthetic"
    sources = human_sources(run_dir)
    assert sources and sources <= {"human:ann", "human:bob"}


def human_sources(run_dir: Path) -> set[str]:
    """Who answered the human nodes of every debate in the run's transcripts (``human:ann``, ...)."""
    return {
        node["source"]
        for path in sorted((run_dir / "transcripts").glob("*.jsonl"))
        for record in read_transcripts(path)
        for node in _nodes(record)
        if node["who"] == "human"
    }


def _nodes(record: dict):
    stack = [turn.get("trace") for turn in record["turns"]]
    stack += [c.get("trace") for c in record["continues"]] + [record["winner"].get("trace")]
    while stack:
        node = stack.pop()
        if node is None:
            continue
        yield node
        stack.extend(node.get("children", []))
        if node.get("replaced"):
            stack.append(node["replaced"])
