import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from debate_amp.agents.humans.replay import ReplayHuman, UnseenQuestion, load_jsonl_labels
from debate_amp.agents.humans.synthetic import SyntheticHuman
from debate_amp.agents.labels import LabeledHuman, LabelStore
from debate_amp.protocol import Posed
from debate_amp.tasks.perm import PermHuman, PermQuestion

ROOT = Path(__file__).resolve().parents[2]
SIGMA = (3, 7, 0, 1, 6, 2, 5, 4)


def ask(agent, posed):
    return asyncio.run(agent(posed))


def test_a_repeated_question_costs_no_human_call(tmp_path):
    store = LabelStore(tmp_path / "labels.sqlite")
    human = SyntheticHuman(PermHuman())
    labeled = LabeledHuman(human, store)
    posed = Posed("answer", PermQuestion(SIGMA, 0, 1)).step()
    first = ask(labeled, posed)
    second = ask(labeled, posed)
    assert first.text == second.text == "ans 3"
    assert human.calls == 1
    assert first.trace.human_calls == 1 and second.trace.human_calls == 0 and second.trace.from_store
    assert len(store) == 1
    store.close()
    reopened = LabelStore(tmp_path / "labels.sqlite")
    assert reopened.get(posed.key()) == "ans 3"
    assert [(lab.kind, lab.answer, lab.human) for lab in reopened] == [("step", "ans 3", "synthetic")]


def test_replay_from_store_and_jsonl(tmp_path):
    store = LabelStore(tmp_path / "labels.sqlite")
    labeled = LabeledHuman(SyntheticHuman(PermHuman()), store)
    seen = [Posed("answer", PermQuestion(SIGMA, x, 1)) for x in range(4)]
    for posed in seen:
        ask(labeled, posed)
    assert store.export_jsonl(tmp_path / "labels.jsonl") == 4
    unseen = Posed("answer", PermQuestion(SIGMA, 5, 1))
    for labels in (store, load_jsonl_labels(tmp_path / "labels.jsonl")):
        replay = ReplayHuman(labels)
        assert [ask(replay, p).text for p in seen] == [str(SIGMA[x]) for x in range(4)]
        with pytest.raises(UnseenQuestion, match="no recorded answer"):
            ask(replay, unseen)
    fallback = SyntheticHuman(PermHuman())
    replay = ReplayHuman(store, fallback=fallback)
    assert ask(replay, unseen).text == "2" and fallback.calls == 1 and replay.misses == 1


def test_bad_jsonl_line_names_file_and_line(tmp_path):
    path = tmp_path / "labels.jsonl"
    path.write_text(json.dumps({"kind": "answer", "prompt": "p", "answer": "1"}) + "\n{not json\n")
    with pytest.raises(ValueError, match=r"labels.jsonl:2: not a label line"):
        load_jsonl_labels(path)


_WRITER = """
import asyncio, sys
from debate_amp.agents.humans.synthetic import SyntheticHuman
from debate_amp.agents.labels import LabeledHuman, LabelStore
from debate_amp.protocol import Posed
from debate_amp.tasks.perm import PermHuman, PermTask

store = LabelStore(sys.argv[1], fsync=sys.argv[2] == "fsync")
human = LabeledHuman(SyntheticHuman(PermHuman()), store)
async def main():
    for q in PermTask(8, 1).questions(100000, seed=0):
        posed = Posed("answer", q)
        reply = await human(posed)
        print(posed.key(), reply.text, flush=True)   # the answer is used only after the store returned
asyncio.run(main())
"""


@pytest.mark.parametrize("fsync", ["fsync", "commit only"])
def test_sigkill_loses_no_used_answer(tmp_path, fsync):
    db = tmp_path / "labels.sqlite"
    writer = [sys.executable, "-c", _WRITER, str(db), fsync]
    proc = subprocess.Popen(writer, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    used = []
    deadline = time.monotonic() + 60
    while len(used) < 200 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line:
            used.append(line.split())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert len(used) >= 200
    store = LabelStore(db)
    assert all(store.get(key) == answer for key, answer in used)
    assert len(store) >= len({key for key, _ in used})


def test_fsync_sets_sqlites_synchronous_level(tmp_path):
    """FULL (2) flushes every answer to the disk, people's store; NORMAL (1) commits to the write-ahead log, the
    trainer's store for a machine human (the SIGKILL test above holds for both)."""
    full, normal = LabelStore(tmp_path / "a.sqlite"), LabelStore(tmp_path / "b.sqlite", fsync=False)
    assert full._db.execute("PRAGMA synchronous").fetchone()[0] == 2
    assert normal._db.execute("PRAGMA synchronous").fetchone()[0] == 1
    assert (
        full._db.execute("PRAGMA journal_mode").fetchone()[0]
        == normal._db.execute("PRAGMA journal_mode").fetchone()[0]
        == "wal"
    )
