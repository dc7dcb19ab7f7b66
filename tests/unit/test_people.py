"""Real people as H (issue 15): the label store's queue, the web human waiting on it, timeouts, the terminal."""

import asyncio
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from debate_amp.agents.humans.people import QueuedHuman, compose_reply, person_view
from debate_amp.agents.labels import LabelStore
from debate_amp.combinators import Approx
from debate_amp.debate.transcript import trace_to_dict
from debate_amp.protocol import Posed, Reply, Trace
from debate_amp.samplers import Always
from debate_amp.tasks.perm import PermQuestion

ROOT = Path(__file__).resolve().parents[2]
SIGMA = (3, 7, 0, 1, 6, 2, 5, 4)


def posed(x: int, k: int = 1, kind: str = "answer") -> Posed:
    return Posed(kind, PermQuestion(SIGMA, x, k))  # type: ignore[arg-type]


def queue(store: LabelStore, *questions: Posed) -> list[str]:
    for p in questions:
        assert store.post(p, person_view(p, "perm"))
    return [p.key() for p in questions]


def test_a_claimed_question_is_leased_to_one_person_and_answered_once(tmp_path):
    store = LabelStore(tmp_path / "labels.sqlite")
    k0, k1, k2 = queue(store, posed(0), posed(1), posed(2))
    assert not store.post(posed(0), {})  # already queued
    a, b = store.claim("ann", lease_s=60), store.claim("bob", lease_s=60)
    assert a is not None and b is not None
    assert (a.key, b.key) == (k0, k1) and a.leased_to == "ann"
    assert store.claim("ann", lease_s=60).key == k0  # ann still holds hers: the same question again
    assert store.answer(k0, "3", "ann") is True
    assert store.answer(k0, "4", "bob") is False  # the first answer stays
    assert store.get(k0) == "3" and store.label(k0).human == "ann"
    assert {k: label.answer for k, label in store.labels([k0, k1, "not a key"]).items()} == {k0: "3"}
    assert not store.post(posed(0), {})  # answered: never queued again
    # a lease that ran out is offered to someone else; a released question at once
    assert store.claim("cat", lease_s=60).key == k2
    assert store.claim("dan", lease_s=60) is None
    assert store.claim("dan", now=time.time() + 61).key == k1
    store.release(k1, "dan")
    assert store.claim("eve").key == k1
    # a withdrawn question leaves the queue unless someone holds it
    assert not store.withdraw(k1) and store.withdraw(k2) is False  # both held (eve, cat)
    store.release(k2, "cat")
    assert store.withdraw(k2) and [q.key for q in store.pending()] == [k1]
    with pytest.raises(KeyError):
        store.answer(k2, "1", "cat")
    assert len(store) == 1


def test_two_processes_answering_at_once_store_every_answer_once(tmp_path):
    db = tmp_path / "labels.sqlite"
    store = LabelStore(db)
    keys = queue(store, *[posed(x, k) for x in range(8) for k in range(1, 6)])
    script = textwrap.dedent(
        """
        import sys
        from debate_amp.agents.labels import LabelStore
        store, person, got = LabelStore(sys.argv[1]), sys.argv[2], []
        while (q := store.claim(person, lease_s=600)) is not None:
            assert store.answer(q.key, person, person), q.key
            got.append(q.key)
        print(" ".join(got))
        """
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(db), name], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        for name in ("ann", "bob")
    ]
    answered = [proc.communicate(timeout=120)[0].split() for proc in procs]
    assert all(proc.returncode == 0 for proc in procs)
    assert sorted(answered[0] + answered[1]) == sorted(keys)  # each question answered by exactly one of them
    assert len(store) == len(keys) and store.pending() == []
    assert {label.human for label in store} <= {"ann", "bob"}


class Drafts:
    """A model whose draft is always ``7`` (with a token and a log-probability, as a policy's)."""

    calls = 0

    async def __call__(self, p: Posed) -> Reply:
        self.calls += 1
        return Reply("7", Trace("model:policy", p, "7", token_ids=[55], logprobs=[-0.1]))


def answer_later(db: Path, answer: str, person: str, delay: float = 0.3) -> threading.Thread:
    def work() -> None:
        store = LabelStore(db)
        deadline = time.monotonic() + 30
        while (q := store.claim(person)) is None:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        time.sleep(delay)
        store.answer(q.key, answer, person)
        store.close()

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


def test_the_web_human_waits_without_blocking_the_wave_and_the_trace_names_the_person(tmp_path):
    store = LabelStore(tmp_path / "labels.sqlite")
    human = QueuedHuman(store, "perm", timeout_s=30, poll_s=0.02)
    model = Drafts()
    approx = Approx(human, model, Always())
    finished: list[str] = []

    async def model_alone() -> None:  # another call of the same wave: it must not wait for the person
        for x in range(5):
            await model(posed(x))
            await asyncio.sleep(0.01)
        finished.append("model")

    async def both() -> Reply:
        reply, _ = await asyncio.gather(approx(posed(0)), model_alone())
        finished.append("human")
        return reply

    worker = answer_later(tmp_path / "labels.sqlite", "3", "ann")
    reply = asyncio.run(both())
    worker.join()
    assert finished == ["model", "human"]
    assert reply.text == "3" and reply.trace.source == "human:ann" and reply.trace.human_calls == 1
    assert reply.trace.replaced is not None and reply.trace.replaced.text == "7"
    assert human.calls == 1 and human.timeouts == 0
    shown = store.label(posed(0).key())
    assert shown is not None and shown.human == "ann"
    # asked again: served from the store, no human call, no queue
    again = asyncio.run(approx(posed(0)))
    assert again.text == "3" and again.trace.from_store and again.trace.total_human_calls() == 0
    assert store.pending() == [] and human.calls == 1


def test_the_draft_is_shown_and_stands_in_when_nobody_answers_in_time(tmp_path):
    store = LabelStore(tmp_path / "labels.sqlite")
    human = QueuedHuman(store, "perm", timeout_s=0.3, poll_s=0.02)
    seen: list[dict] = []

    async def watch_and_ask() -> Reply:
        task = asyncio.ensure_future(Approx(human, Drafts(), Always())(posed(1, 2)))
        while not store.pending():
            await asyncio.sleep(0.01)
        seen.extend(q.view for q in store.pending())
        return await task

    t0 = time.monotonic()
    reply = asyncio.run(watch_and_ask())
    assert 0.3 <= time.monotonic() - t0 < 5
    assert seen and seen[0]["draft"] == "7" and seen[0]["kind"] == "answer"
    assert reply.text == "7" and reply.trace.timed_out and reply.trace.source == "model:policy"
    assert reply.trace.replaced is None and reply.trace.total_human_calls() == 0 and reply.trace.token_ids == [55]
    assert trace_to_dict(reply.trace)["timed_out"] is True
    assert human.timeouts == 1 and human.calls == 0
    assert store.pending() == [] and len(store) == 0  # withdrawn; nothing stored
    hidden = QueuedHuman(store, "perm", timeout_s=0.05, show_draft=False, poll_s=0.02)
    asyncio.run(Approx(hidden, Drafts(), Always())(posed(2)))
    # (withdrawn after its timeout, so read the view while posting)
    view = person_view(posed(2), "perm", None)
    assert view["draft"] is None and view["question"]["table"]["rows"][2] == [2, 0]


def test_a_person_s_typed_answer_becomes_the_model_format():
    step = person_view(posed(1, 2).step(), "perm")
    assert compose_reply(step, "5") == "ans 5"
    assert compose_reply(step, "ask 1^1;#1^1") == "ask 1^1;#1^1"
    assert compose_reply(step, "", ask=("1^1", "#1^1")) == "ask 1^1;#1^1"
    winner = person_view(Posed("winner", PermQuestion(SIGMA, 1, 2), context=("7",)), "perm")  # type: ignore[arg-type]
    assert winner["choices"] == ["even", "odd"] and winner["arguments"] == ["7"]
    assert compose_reply(winner, " odd ") == "odd"
    with pytest.raises(ValueError, match="one of even, odd"):
        compose_reply(winner, "maybe")
    winner_step = person_view(Posed("winner", PermQuestion(SIGMA, 1, 2), context=("7",)).step(), "perm")  # type: ignore[arg-type]
    assert compose_reply(winner_step, "even") == "ans even"
    with pytest.raises(ValueError, match="one of even, odd"):
        compose_reply(winner_step, "5")
    cat = person_view(Posed("catastrophe", PermQuestion(SIGMA, 1, 2), context=("7",), argument=0), "perm")  # type: ignore[arg-type]
    assert compose_reply(cat, "0.25") == "0.25"
    for bad in ("2", "x", ""):
        with pytest.raises(ValueError):
            compose_reply(cat, bad)


TERMINAL_SCRIPT = """
import asyncio, sys
from debate_amp.agents.humans.people import TerminalHuman
from debate_amp.agents.labels import LabelStore
from debate_amp.combinators import Approx
from debate_amp.protocol import Posed, Reply, Trace
from debate_amp.samplers import Always
from debate_amp.tasks.perm import PermQuestion

class Draft:
    async def __call__(self, p):
        return Reply("7", Trace("model:policy", p, "7"))

human = TerminalHuman(LabelStore(sys.argv[1]), "perm", timeout_s=60, poll_s=0.02, person="tess")
reply = asyncio.run(Approx(human, Draft(), Always())(Posed("answer", PermQuestion((3, 7, 0, 1, 6, 2, 5, 4), 1, 2))))
print(f"REPLY {reply.text} FROM {reply.trace.source}", flush=True)
"""


def test_the_terminal_human_answers_at_a_real_pseudo_terminal(tmp_path):
    pexpect = pytest.importorskip("pexpect")
    db = tmp_path / "labels.sqlite"
    child = pexpect.spawn(sys.executable, ["-c", TERMINAL_SCRIPT, str(db)], cwd=str(ROOT), encoding="utf-8", timeout=60)
    try:
        child.expect(r"question: σ\^2\(1\): apply σ 2 times to 1 \(s=37016254 x=1 k=2\)")
        child.expect(r"  1 \| 7")  # σ as a table
        child.expect(r"model's draft \(Enter to accept\): 7")
        child.expect("> ")
        child.sendline("6")
        child.expect("stored: 6")
        child.expect(r"REPLY 6 FROM human:tess")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    label = LabelStore(db).label(posed(1, 2).key())
    assert label is not None and (label.answer, label.human) == ("6", "tess")


def test_the_labels_command_lists_exports_and_answers_the_queue(tmp_path, capsys):
    from debate_amp.agents.humans.replay import load_jsonl_labels
    from debate_amp.cli import main

    db = tmp_path / "labels.sqlite"
    store = LabelStore(db)
    (first,) = queue(store, posed(1, 2))
    store.put(posed(0), "3", "ann")
    assert main(["labels", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "1 answers, 1 questions pending" in out and "by who answered: ann 1" in out
    assert "pending answer: s=37016254 x=1 k=2" in out
    # answered at the terminal from standard input (the same loop as human.kind=terminal)
    proc = subprocess.run(
        [sys.executable, "-m", "debate_amp.cli", "labels", str(db), "--answer", "--person", "zed"],
        input="6\n", capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "stored: 6" in proc.stdout and store.label(first).human == "zed" and store.pending() == []
    assert main(["labels", str(db), "--export", str(tmp_path / "labels.jsonl")]) == 0
    assert load_jsonl_labels(tmp_path / "labels.jsonl") == {posed(0).key(): "3", first: "6"}
    with pytest.raises(SystemExit) as e:  # an existing file is never written over
        main(["labels", str(db), "--export", str(tmp_path / "labels.jsonl")])
    assert e.value.code == 2 and "already exists" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["labels", str(tmp_path / "nope.sqlite")])
    assert e.value.code == 2 and "no such run directory or label store" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------------
# One answer, one human call (the same question asked several times at once, here or in another process)


def test_one_answer_to_a_question_asked_three_times_at_once_is_one_human_call(tmp_path):
    db = tmp_path / "labels.sqlite"
    # two processes sharing one store: two humans, each on its own connection
    here = QueuedHuman(LabelStore(db), "perm", timeout_s=30, poll_s=0.02)
    there = QueuedHuman(LabelStore(db), "perm", timeout_s=30, poll_s=0.02)
    worker = answer_later(db, "3", "ann", delay=0.2)

    async def ask() -> list[Reply]:
        return list(await asyncio.gather(here(posed(0)), here(posed(0)), there(posed(0))))

    replies = asyncio.run(ask())
    worker.join()
    store = LabelStore(db)
    assert [r.text for r in replies] == ["3", "3", "3"] and {r.trace.source for r in replies} == {"human:ann"}
    # the first call posted it: its process counts the answer, every other call gets it as a stored one
    assert (here.calls, there.calls) == (1, 0) and len(store) == 1 and store.pending() == []
    assert [r.trace.human_calls for r in replies] == [1, 0, 0]
    assert [r.trace.from_store for r in replies] == [False, True, True]
    assert here.timeouts == there.timeouts == 0


ASK_SCRIPT = """
import asyncio, sys
from debate_amp.agents.humans.people import QueuedHuman
from debate_amp.agents.labels import LabelStore
from debate_amp.protocol import Posed
from debate_amp.tasks.perm import PermQuestion

human = QueuedHuman(LabelStore(sys.argv[1]), "perm", timeout_s=60, poll_s=0.02)
posed = Posed("answer", PermQuestion((3, 7, 0, 1, 6, 2, 5, 4), 0, 1))


async def ask():
    task = asyncio.ensure_future(human(posed))
    await asyncio.sleep(0.1)  # posted (or found queued) and waiting
    print("waiting", flush=True)
    return await task

reply = asyncio.run(ask())
print(reply.text, human.calls, reply.trace.human_calls, flush=True)
"""


def test_two_processes_asking_the_same_question_count_one_answer_once(tmp_path):
    db = tmp_path / "labels.sqlite"
    here = QueuedHuman(LabelStore(db), "perm", timeout_s=60, poll_s=0.02)
    there = subprocess.Popen(
        [sys.executable, "-c", ASK_SCRIPT, str(db)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )  # fmt: skip
    try:
        assert there.stdout is not None and there.stdout.readline().strip() == "waiting"
        worker = answer_later(db, "3", "ann", delay=0.3)
        reply = asyncio.run(here(posed(0)))
        out, _ = there.communicate(timeout=60)
    finally:
        there.kill()
    worker.join()
    text, there_calls, there_trace_calls = out.split()
    assert reply.text == text == "3"
    assert here.calls + int(there_calls) == 1 == len(LabelStore(db))  # summed over the processes: the one answer
    assert reply.trace.human_calls + int(there_trace_calls) == 1


def test_a_question_a_stopped_run_left_in_the_queue_is_counted_by_the_run_that_asks_it_again(tmp_path):
    db = tmp_path / "labels.sqlite"
    stopped = LabelStore(db)  # its process was killed while two questions waited; ann holds the first
    for x in (1, 0):
        assert stopped.post(posed(x), person_view(posed(x), "perm"))
    held = stopped.claim("ann", lease_s=600)
    assert held is not None and held.key == posed(1).key()
    time.sleep(0.01)
    resumed = QueuedHuman(LabelStore(db), "perm", timeout_s=30, poll_s=0.02)

    async def ask() -> list[Reply]:
        asked = asyncio.gather(Approx(resumed, Drafts(), Always())(posed(0)), resumed(posed(1)))
        await asyncio.sleep(0.1)  # both asked again, both still queued as the stopped run left them
        assert sorted(q.key for q in stopped.pending()) == sorted([posed(0).key(), posed(1).key()])
        stopped.answer(posed(1).key(), "4", "ann")
        worker = answer_later(db, "3", "bob", delay=0.0)
        replies = await asked
        worker.join()
        return list(replies)

    replies = asyncio.run(ask())
    assert [r.text for r in replies] == ["3", "4"] and [r.trace.human_calls for r in replies] == [1, 1]
    assert resumed.calls == 2 == len(stopped) and stopped.pending() == []


def test_the_model_human_works_out_a_question_asked_twice_in_one_wave_once():
    from debate_amp.agents.humans.frozen_model import ModelHuman
    from debate_amp.agents.labels import LabeledHuman
    from debate_amp.tasks.perm import perfect_generate

    seen: list[str] = []

    def generate(prompts, limits):
        seen.extend(prompts)
        return perfect_generate(prompts, limits)

    model = ModelHuman(generate)

    async def ask(agent) -> list[Reply]:
        return list(await asyncio.gather(agent(posed(1, 2)), agent(posed(1, 2)), agent(posed(3))))

    replies = asyncio.run(ask(model))
    assert len(seen) == 2 and model.calls == 2  # one generation, one call, for the two identical questions
    assert replies[0].text == replies[1].text == "4"  # σ²(1)
    assert [r.trace.human_calls for r in replies] == [1, 0, 1]
    assert replies[1].trace.from_store and replies[1].trace.source == "human:model"
    # behind the label store (as a run has it): the calls are the answers the store keeps
    store = LabelStore(":memory:")
    model = ModelHuman(generate)
    replies = asyncio.run(ask(LabeledHuman(model, store, name="model")))
    assert model.calls == len(store) == 2 and sum(r.trace.total_human_calls() for r in replies) == 2
    # asked again later, without the store (or before its answer reached it): worked out once, counted once
    model = ModelHuman(generate)
    seen.clear()
    again = [asyncio.run(model(posed(1, 2))) for _ in range(2)]
    assert len(seen) == 1 and model.calls == 1 and [r.trace.human_calls for r in again] == [1, 0]
