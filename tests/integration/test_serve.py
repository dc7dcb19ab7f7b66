"""``debate-amp serve`` in a real browser (Playwright driving Debian's headless Chromium) against a real uvicorn.

Chromium comes from Debian (``make chromium``, which ``make test`` runs), never from ``playwright install``.
Without it these tests fail when ``CI`` is set and are skipped otherwise (as ``test_report.py``).
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest

from debate_amp.agents.humans.people import person_view
from debate_amp.agents.humans.synthetic import SyntheticHuman
from debate_amp.agents.labels import LabelStore
from debate_amp.agents.model_agent import ModelAgent
from debate_amp.cli import main
from debate_amp.combinators import amp_approx
from debate_amp.debate.engine import ScriptedDebater, run_debates
from debate_amp.debate.transcript import debate_to_record, write_transcripts
from debate_amp.eval.transcripts import load
from debate_amp.protocol import Posed
from debate_amp.samplers import Never
from debate_amp.serve.app import create_app
from debate_amp.serve.judgments import JudgeSession, read_judgments
from debate_amp.tasks.perm import PermHuman, PermLiar, PermQuestion, PermTask, perfect_generate, render_question

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SIGMA = (3, 7, 0, 1, 6, 2, 5, 4)
XSS = "<script>window.__xss=1</script>"


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for the module; each test opens its own contexts (cookies) in it."""
    if CHROMIUM is None:
        message = "chromium not found: install it with `make chromium` (Debian: apt-get install -y chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@contextmanager
def serving(app) -> Iterator[str]:
    """``app`` on uvicorn in a background thread, on a free loopback port; yields its URL."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)


def post(store: LabelStore, posed: Posed, draft: str | None = None) -> str:
    assert store.post(posed, person_view(posed, "perm", draft))
    return posed.key()


def enter_name(page, url: str, name: str) -> None:
    page.goto(url)
    page.fill("input[name=name]", name)
    page.click("button[type=submit]")


class SlowStore(LabelStore):
    """A label store that takes half a second to commit an answer, and notes when the commit returned."""

    committed_at: float | None = None

    def answer(self, key, answer, person):
        time.sleep(0.5)
        stored = super().answer(key, answer, person)
        self.committed_at = time.time()
        return stored


def test_an_answer_is_stored_with_the_name_before_the_page_says_so(browser, tmp_path):
    from playwright.sync_api import expect

    store = SlowStore(tmp_path / "labels.sqlite")
    first = post(store, Posed("answer", PermQuestion(SIGMA, 5, 6)), draft="7")  # sigma^6(5) = 4
    second = post(store, Posed("answer", PermQuestion(SIGMA, 2, 3)))
    with serving(create_app(store)) as url:
        page = browser.new_context().new_page()
        enter_name(page, url, "ann")
        expect(page.locator("#question")).to_contain_text("x=5 k=6")
        expect(page.locator("#answer")).to_have_value("7")  # the model's draft is the default
        assert page.locator("#notice").count() == 0
        page.fill("#answer", "4")
        with page.expect_response(lambda r: r.request.method == "POST") as posted:
            page.click("#submit")
        expect(page.locator("#notice")).to_have_text("stored: 4")
        label = store.label(first)
        assert (label.answer, label.human) == ("4", "ann")
        # the browser had no answer to its post (let alone the page saying "stored") before the commit returned
        timing = posted.value.request.timing
        assert store.committed_at is not None
        assert (timing["startTime"] + timing["responseStart"]) / 1000 >= store.committed_at - 0.005
        expect(page.locator("#question")).to_contain_text("x=2 k=3")  # then the next question
        assert page.locator("input[name=key]").first.get_attribute("value") == second
    store.close()


def test_model_written_markup_is_shown_as_text(browser, tmp_path):
    from playwright.sync_api import expect

    store = LabelStore(tmp_path / "labels.sqlite")
    evil = '"><img src=x onerror="window.__xss=2">'
    winner = Posed("winner", PermQuestion(SIGMA, 5, 6), context=("5^6=4 via 3", XSS)).step((evil,))
    post(store, winner, draft=f"ask {XSS};{evil}")
    post(store, Posed("answer", PermQuestion(SIGMA, 1, 2)), draft=evil + XSS)
    with serving(create_app(store)) as url:
        page = browser.new_context().new_page()
        enter_name(page, url, "<b>eve</b>")
        expect(page.locator("#arguments")).to_contain_text(XSS)
        assert XSS in page.inner_text("#arguments")  # rendered text, which a script element's source is not
        assert evil in page.inner_text("#workspace")
        assert page.inner_text("#draft") == f"ask {XSS};{evil}"
        assert page.inner_text("#person") == "<b>eve</b>"
        assert page.locator("script, img").count() == 0
        assert page.evaluate("typeof window.__xss") == "undefined"
        page.click("button[value=odd]")  # a step towards a winner question: the choice is stored as ``ans odd``
        expect(page.locator("#notice")).to_have_text("stored: ans odd")
        assert store.get(winner.key()) == "ans odd" and store.label(winner.key()).human == "<b>eve</b>"
        assert page.input_value("#answer") == evil + XSS  # a draft prefilled into an attribute stays text
        assert page.locator("script, img").count() == 0 and page.evaluate("typeof window.__xss") == "undefined"
    store.close()


def test_two_people_at_once_get_different_questions_and_every_answer_is_stored_once(browser, tmp_path):
    from playwright.sync_api import expect

    store = LabelStore(tmp_path / "labels.sqlite")
    keys = [post(store, Posed("answer", PermQuestion(SIGMA, x, 2 + x))) for x in range(5)]
    answered: dict[str, str] = {}
    with serving(create_app(store)) as url:
        pages = {name: browser.new_context().new_page() for name in ("ann", "bob")}
        for name, page in pages.items():
            enter_name(page, url, name)
        shown = {name: page.locator("input[name=key]").first.get_attribute("value") for name, page in pages.items()}
        assert shown["ann"] != shown["bob"] and set(shown.values()) <= set(keys)
        while pages:
            for name, page in list(pages.items()):
                if page.locator("#empty").count():
                    del pages[name]
                    continue
                key = page.locator("input[name=key]").first.get_attribute("value")
                assert key not in answered  # never offered twice
                page.fill("#answer", name)
                page.click("#submit")
                expect(page.locator("#notice")).to_have_text(f"stored: {name}")
                answered[key] = name
    assert sorted(answered) == sorted(keys) and set(answered.values()) == {"ann", "bob"}
    assert len(store) == len(keys) and store.pending() == []
    assert all(store.label(k).human == who for k, who in answered.items())
    store.close()


@pytest.fixture()
def transcripts(tmp_path):
    """Five saved debates (the perfect policy against the scripted liar, the liar opening in the last two), judged by
    Amp~(H, M_target) with the perfect model: a transcript file as the trainer writes it."""
    human = SyntheticHuman(PermHuman())
    amp_policy = amp_approx(human, ModelAgent(perfect_generate, "policy"), Never())
    amp_target = amp_approx(human, ModelAgent(perfect_generate, "target"), Never())
    questions = PermTask(8, 15).eval_questions(5, seed=4)
    liar = ScriptedDebater(PermLiar(seed=0))

    def play():
        return run_debates(questions[:3], amp_policy, amp_target, 2, odd=liar) + run_debates(
            questions[3:], amp_policy, amp_target, 2, even=liar
        )

    # in a thread of its own: run_debates starts an event loop, and this one has Playwright's running
    with ThreadPoolExecutor(1) as pool:
        debates = pool.submit(play).result()
    records = [
        debate_to_record(
            d,
            run="serve",
            update=1,
            question_id=f"q{i}",
            question=render_question(d.question),
            gold=str(d.question.gold),
            task="perm",
            force_stop_p=0.0,
        )
        for i, d in enumerate(debates)
    ]
    return write_transcripts(tmp_path / "transcripts" / "update_000001.jsonl", records)


def test_judge_five_debates_in_the_browser_then_eval_scores_them(browser, transcripts, capsys):
    from playwright.sync_api import expect

    rows = load([transcripts]).rows
    assert [r.even_right for r in rows] == [True, True, True, False, False]
    session = JudgeSession.from_transcripts([transcripts])
    assert session.store.path == transcripts.parent / "human_judgments.sqlite"
    typed = {}  # question_id -> (initial answer, winner)
    with serving(create_app(None, judge=session)) as url:
        page = browser.new_context().new_page()
        enter_name(page, url, "ann")
        assert page.url.endswith("/judge")
        for i in range(5):
            question = page.inner_text("#question")
            [row] = [r for r in rows if r.question in question]
            # step 1: the question alone, no argument yet
            assert page.locator("#arguments").count() == 0
            assert not any(argument in page.inner_text("body") for argument in row.arguments)
            right = row.gold if i in (0, 3) else str((int(row.gold) + 1) % 8)  # naive: right twice
            page.fill("#initial-answer", right)
            page.fill("#initial-confidence", str(60 + 10 * i))
            page.click("#initial-submit")
            # step 2: the arguments in order, then the verdict
            expect(page.locator("#arguments li")).to_have_count(len(row.arguments))
            assert [t.strip() for t in page.locator("#arguments .argument").all_inner_texts()] == list(row.arguments)
            honest = "even" if row.even_right else "odd"
            winner = honest if i != 2 else ("odd" if honest == "even" else "even")  # after debate: right 4 times
            page.fill("#verdict-confidence", "90")
            page.click(f"#winner-{winner}")
            expect(page.locator("#notice")).to_contain_text(f"stored: your verdict on debate {rows.index(row) + 1}")
            typed[row.question_id] = (right, winner)
        expect(page.locator("#empty")).to_contain_text("you judged 5 of 5 debates")

    judgments = read_judgments(session.store.path)
    assert {j.question_id: (j.initial_answer, j.winner) for j in judgments} == typed
    assert [j.initial_confidence for j in judgments] == [60, 70, 80, 90, 100]
    assert {j.person for j in judgments} == {"ann"}
    assert all(j.initial_seconds >= 0 and j.verdict_seconds > 0 for j in judgments)

    assert main(["eval", str(transcripts), "--human-judgments", str(session.store.path), "--json"]) == 0
    humans = json.loads(capsys.readouterr().out)["human_judges"]
    assert (humans["naive_accuracy"]["successes"], humans["naive_accuracy"]["n"]) == (2, 5)
    assert (humans["accuracy_after_debate"]["successes"], humans["accuracy_after_debate"]["n"]) == (4, 5)
    by_id = {r.question_id: r for r in rows}
    agree = sum(winner == by_id[q].winner for q, (_, winner) in typed.items())
    assert humans["agreement_with_model_judge"]["successes"] == agree
    assert humans["model_judge_accuracy"]["successes"] == sum(bool(r.correct) for r in rows)
    assert humans["judgments"] == 5 and humans["median_seconds"] > 0


def test_serve_command_starts_the_app_and_stops_on_sigint(tmp_path):
    store = LabelStore(tmp_path / "labels.sqlite")
    post(store, Posed("answer", PermQuestion(SIGMA, 5, 6)))
    store.close()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    proc = subprocess.Popen(
        [sys.executable, "-m", "debate_amp.cli", "serve", str(tmp_path), "--port", str(port), "--token", "t0k"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline(), proc.stdout.readline()]
        assert lines[0].startswith(f"debate-amp serve: questions from {tmp_path / 'labels.sqlite'}"), lines
        assert f"open http://127.0.0.1:{port}/?token=t0k" in lines[1]
        import urllib.request

        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
        page = ""
        for _ in range(100):  # uvicorn binds just after printing
            try:
                page = opener.open(f"http://127.0.0.1:{port}/?token=t0k", timeout=5).read().decode()
                break
            except OSError:
                time.sleep(0.05)
        assert "Your name" in page
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) == 0
    finally:
        proc.kill()
        proc.wait()


def test_a_training_run_waits_for_a_person_who_answers_in_the_browser(browser, tmp_path):
    """``human.kind=web``, no synthetic human anywhere in training: the run posts a question and waits; a person
    answers it in the page; the label is stored under their name, the transcripts name them, the run finishes."""
    from playwright.sync_api import expect

    from tests.integration.test_people_runs import PEOPLE, human_sources
    from tests.integration.test_train import TINY

    run_dir = tmp_path / "web"
    command = [
        sys.executable, "-m", "debate_amp.train", "recipes/default.yaml", *TINY, *PEOPLE,
        "sampler.per_update=1", "sampler.per_run=2", "trainer.updates=2",
        f"run.output_dir={tmp_path}", "run.name=web", "--no-progress",
    ]  # fmt: skip
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (run_dir / "labels.sqlite").exists():
            assert proc.poll() is None, proc.stderr.read()[-3000:]  # type: ignore[union-attr]
            assert time.monotonic() < deadline
            time.sleep(0.05)
        store = LabelStore(run_dir / "labels.sqlite")
        with serving(create_app(run_dir / "labels.sqlite")) as url:
            page = browser.new_context().new_page()
            enter_name(page, url, "ann")
            for n in (1, 2):  # the run asks people twice (sampler.per_run=2)
                expect(page.locator("input[name=key]").first).to_be_attached(timeout=120_000)  # a question came
                assert proc.poll() is None and len(store) == n - 1  # and the run waits on it
                if page.locator("button[name=answer]").count():
                    page.locator("button[name=answer]").first.click()
                else:
                    page.fill("#answer", "1")
                    page.click("#submit")
                expect(page.locator("#notice")).to_contain_text("stored")
                assert len(store) == n and {label.human for label in store} == {"ann"}
            assert proc.wait(timeout=180) == 0, proc.stderr.read()[-3000:]  # type: ignore[union-attr]
    finally:
        if proc.poll() is None:
            proc.kill()
    sources = human_sources(run_dir)
    assert sources == {"human:ann"}
