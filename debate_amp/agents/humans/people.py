"""Real people as H: ``human.kind: web`` and ``terminal`` (DESIGN.md section 3).

Both go through the label store's queue (:mod:`debate_amp.agents.labels`). When Approx hands a call to the human, the
question is posted as pending with the view a person is shown (:func:`person_view`: the posed kind, the task's own
rendering of the question, the arguments of a debate judgment, the model's draft where the recipe allows it), and
the call awaits its answer without blocking the rest of the wave: one poller per human checks the store for every
question it waits on, so the other debates and Amp trees go on generating meanwhile. An answer already in the store
is served from it (no human call). A question nobody answers within ``human.timeout_s`` gets the model's draft,
marked ``timed_out`` in the trace (the model's node: neither a human answer nor a human call).

``web``: people answer in ``debate-amp serve`` (a page per question). ``terminal``: a person answers at this
process's terminal, from a thread that claims the same queue; a web page on the same store may answer too.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

from debate_amp.agents.labels import Label, LabelStore, PendingQuestion
from debate_amp.protocol import EVEN, NO, ODD, UNKNOWN, YES, Posed, Reply, Trace
from debate_amp.tasks.base import ANSWER_PREFIX, ASK_PREFIX, format_answer, format_ask

INSTRUCTIONS = {
    "answer": "What is the answer to this question?",
    "step": "Answer the question, or ask two subquestions (the second may use the first one's answer as #1).",
    "argue": "Write the next argument of this debate.",
    "sufficient": "Is the debate so far enough to judge who is right?",
    "winner": "Who won this debate? even: the side that opened (arguments 0, 2, ...); odd: the other side.",
    "catastrophe": "How likely is it (0 to 1) that the last argument is a catastrophe?",
}
CHOICES: dict[str, list[str]] = {"sufficient": [YES, NO], "winner": [EVEN, ODD]}


def question_view(question: Any) -> dict[str, Any]:
    """How a person sees a task's question: the task's own ``people_view()`` where it has one (perm: σ as a table,
    x and k), else its text."""
    own = getattr(question, "people_view", None)
    view = dict(own()) if callable(own) else {}
    view.setdefault("text", question.render())
    return view


def person_view(posed: Posed, task: str, draft: str | None = None) -> dict[str, Any]:
    """Everything a person is shown for ``posed`` (JSON-serialisable; the page and the terminal render it, and
    escape every string). ``draft``: the model's reply, shown where the recipe allows it (``human.show_draft``)."""
    goal = posed.goal if posed.kind == "step" and posed.goal is not None else posed
    return {
        "task": task,
        "kind": posed.kind,
        "goal_kind": goal.kind,
        "instruction": INSTRUCTIONS[posed.kind],
        "goal_instruction": INSTRUCTIONS[goal.kind],
        "question": question_view(posed.question),
        "arguments": list(goal.context),
        "argument": goal.argument,
        "workspace": list(posed.workspace),
        "choices": CHOICES.get(goal.kind),
        "draft": draft,
        "prompt": posed.render(),
    }


def compose_reply(view: dict[str, Any], answer: str, ask: tuple[str, str] | None = None) -> str:
    """The reply text stored for a person's answer, in the model's format: a step question's answer becomes
    ``ans <answer>`` (and two subquestions ``ask A;B``) unless the person already wrote it that way. Raises
    ValueError for an empty answer or a choice that is not one of the offered ones."""
    if ask is not None and view["kind"] == "step" and all(part.strip() for part in ask):
        return format_ask(ask[0].strip(), ask[1].strip())
    text = " ".join(answer.split())
    if not text:
        raise ValueError("an empty answer")
    if view["kind"] == "step":
        if text.startswith((ANSWER_PREFIX, ASK_PREFIX)):
            return text
        text = format_answer(text)
        value = text.removeprefix(ANSWER_PREFIX)
    else:
        value = text
    choices = view.get("choices")
    if choices and value not in choices:
        raise ValueError(f"answer one of {', '.join(choices)}, not {value!r}")
    if view["goal_kind"] == "catastrophe":
        try:
            ok = 0.0 <= float(value) <= 1.0
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f"answer a probability between 0 and 1, not {value!r}")
    return text


@dataclass
class QueuedHuman:
    """H as people answering the label store's queue (the ``web`` human; ``TerminalHuman`` adds a terminal).

    ``calls`` counts people's answers to the questions this process put in the queue, each once: the same question
    asked by several calls at once is queued once, and its answer is one human call, for the first call to get it;
    the others (and another process that found it already queued) get it as a stored answer. A question a stopped
    run left in the queue (queued before this human was made) is counted by the process that gets its answer first
    here (two processes waiting on one such question both count it). ``timeouts``: the calls that got the model's
    draft instead. ``timeout_s`` None waits for ever."""

    store: LabelStore
    task: str
    timeout_s: float | None = 300.0
    show_draft: bool = True
    poll_s: float = 0.25
    calls: int = 0
    timeouts: int = 0
    _waiting: dict[str, asyncio.Future[Label]] = field(default_factory=dict, init=False, repr=False)
    _waiters: dict[str, int] = field(default_factory=dict, init=False, repr=False)
    _poller: asyncio.Task[None] | None = field(default=None, init=False, repr=False)
    _owned: set[str] = field(default_factory=set, init=False, repr=False)  # queued here, answer not yet counted
    _born: float = field(default_factory=time.time, init=False, repr=False)

    async def __call__(self, posed: Posed) -> Reply:
        return await self.consult(posed, None)

    async def consult(self, posed: Posed, draft: Reply | None) -> Reply:
        key = posed.key()
        stored = self.store.label(key)
        if stored is not None:
            return _from_store(posed, stored)
        shown = draft.text if draft is not None and self.show_draft else None
        if self.store.post(posed, person_view(posed, self.task, shown)) or self._left_by_a_stopped_run(key):
            self._owned.add(key)
        self._started()
        label = await self._wait(key)
        if label is None:  # nobody answered in time: the draft stands (or "?" with no draft)
            self.timeouts += 1
            if self.store.withdraw(key):  # gone from the queue (unless a person is answering it right then)
                self._owned.discard(key)
            if draft is not None:
                return Reply(draft.text, replace(draft.trace, timed_out=True))
            return Reply(UNKNOWN, Trace("model:none", posed, UNKNOWN, timed_out=True))
        if key not in self._owned:  # counted by another call here, or queued by another process
            return _from_store(posed, label)
        self._owned.discard(key)
        self.calls += 1
        return Reply(label.answer, Trace(f"human:{label.human}", posed, label.answer, human_calls=1))

    def _left_by_a_stopped_run(self, key: str) -> bool:
        """Was ``key`` already in the queue before this human was made (a run that was stopped asked it)?"""
        pending = self.store.pending_question(key)
        return pending is not None and pending.created < self._born

    def _started(self) -> None:
        """Hook for a human that answers the queue itself (the terminal)."""

    async def _wait(self, key: str) -> Label | None:
        loop = asyncio.get_running_loop()
        future = self._waiting.get(key)
        if future is None:
            future = self._waiting[key] = loop.create_future()
        self._waiters[key] = self._waiters.get(key, 0) + 1
        if self._poller is None or self._poller.done():
            self._poller = loop.create_task(self._poll())
        try:
            return await asyncio.wait_for(asyncio.shield(future), self.timeout_s)
        except asyncio.TimeoutError:
            return None
        finally:
            self._waiters[key] -= 1
            if not self._waiters[key]:  # the last caller waiting on this question
                del self._waiters[key]
                if self._waiting.get(key) is future:
                    del self._waiting[key]

    async def _poll(self) -> None:
        """One poller for every question this human waits on: one store read a tick for all of them."""
        while self._waiting:
            open_ = [key for key, future in self._waiting.items() if not future.done()]
            for key, label in self.store.labels(open_).items():
                self._waiting[key].set_result(label)
            await asyncio.sleep(self.poll_s)


def _from_store(posed: Posed, label: Label) -> Reply:
    """A person's answer that the store already had, or that another call counts: no human call here."""
    return Reply(label.answer, Trace(f"human:{label.human}", posed, label.answer, from_store=True))


@dataclass
class TerminalHuman(QueuedHuman):
    """A person at this process's terminal answers the queue: a thread claims each pending question, prints its
    view and reads a line (Enter takes the model's draft where one is shown). ``person`` names them in the store."""

    person: str = field(default_factory=lambda: os.environ.get("USER") or "terminal")
    lease_s: float = 3600.0
    stdin: TextIO = field(default=sys.stdin, repr=False)
    stdout: TextIO = field(default=sys.stdout, repr=False)
    _thread: threading.Thread | None = field(default=None, init=False, repr=False)

    def _started(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(
                target=answer_at_terminal,
                args=(self.store.path, self.person, self.stdin, self.stdout, self.lease_s),
                name="debate-amp terminal human",
                daemon=True,
            )
            self._thread.start()


def render_for_terminal(question: PendingQuestion) -> str:
    """A pending question as plain text for a terminal."""
    view = question.view
    lines = ["", f"--- {view['kind']} question ---", view["instruction"]]
    if view["kind"] == "step":
        lines.append(f"(towards: {view['goal_instruction']})")
    q = view["question"]
    lines.append(f"question: {q['text']}")
    table = q.get("table")
    if table:
        lines.append("  " + " | ".join(str(h) for h in table["header"]))
        lines.extend("  " + " | ".join(str(c) for c in row) for row in table["rows"])
    for i, argument in enumerate(view["arguments"]):
        lines.append(f"  argument {i} ({'even' if i % 2 == 0 else 'odd'}): {argument}")
    for i, sub_answer in enumerate(view["workspace"]):
        lines.append(f"  answer #{i + 1}: {sub_answer}")
    if view.get("choices"):
        lines.append(f"choices: {' / '.join(view['choices'])}")
    if view["kind"] == "step":
        lines.append("reply: an answer, or 'ask A;B' for two subquestions")
    if view.get("draft") is not None:
        lines.append(f"model's draft (Enter to accept): {view['draft']}")
    return "\n".join(lines)


def _input_waiting(stdin: TextIO, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for ``stdin`` to have a line (or its end) to read; False when it has none."""
    import select

    try:
        ready, _, _ = select.select([stdin], [], [], timeout)
    except (OSError, ValueError, TypeError):  # not a file with a descriptor (a StringIO): just wait
        time.sleep(timeout)
        return False
    return bool(ready)


def answer_at_terminal(
    store_path: str | Path, person: str, stdin: TextIO, stdout: TextIO, lease_s: float = 3600.0, poll_s: float = 0.25
) -> None:
    """Answer the store's queue at a terminal until its input ends: claim a question, show it, read a line, commit
    the answer (then say so). An answer that does not fit the question is refused and asked again."""
    store = LabelStore(store_path)
    question: PendingQuestion | None = None
    try:
        while True:
            question = store.claim(person, lease_s)
            if question is None:  # nothing to answer: wait, but stop at the end of input
                if _input_waiting(stdin, poll_s):
                    if not stdin.readline():
                        return
                    print("no question is waiting for an answer", file=stdout, flush=True)
                continue
            print(render_for_terminal(question), file=stdout, flush=True)
            while True:
                print("> ", end="", file=stdout, flush=True)
                line = stdin.readline()
                if not line:  # end of input: stop (the question goes back to the queue)
                    return
                text = line.strip() or (question.view.get("draft") or "")
                try:
                    reply = compose_reply(question.view, text)
                except ValueError as e:
                    print(f"not stored: {e}", file=stdout, flush=True)
                    continue
                stored = store.answer(question.key, reply, person)
                print(f"stored: {reply}" if stored else "already answered by someone else", file=stdout, flush=True)
                question = None
                break
    finally:  # Ctrl-C or the end of input: give back the question in hand
        if question is not None:
            store.release(question.key, person)
        store.close()
