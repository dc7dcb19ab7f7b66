"""``debate-amp serve`` without a browser: access rules, the judgment store, scoring human judges, the CLI's refusals.

The pages themselves are driven in a real browser in ``tests/integration/test_serve.py``.
"""

import json
import re
import threading

import pytest
from starlette.testclient import TestClient

from debate_amp.agents.humans.people import person_view
from debate_amp.agents.labels import LabelStore
from debate_amp.cli import main
from debate_amp.debate.transcript import write_transcripts
from debate_amp.eval.human_judges import human_judge_statistics
from debate_amp.eval.transcripts import load
from debate_amp.protocol import Posed
from debate_amp.serve.app import NON_LOCAL, create_app
from debate_amp.serve.judgments import JudgeSession, Judgment, JudgmentStore, read_judgments
from debate_amp.tasks.perm import PermQuestion
from tests.unit.test_eval import claim, record

SIGMA = (3, 7, 0, 1, 6, 2, 5, 4)
LOCAL = {"base_url": "http://127.0.0.1:8000", "client": ("127.0.0.1", 50000)}


def post_questions(store: LabelStore, n: int) -> list[str]:
    """``n`` answer questions sigma^k(x) queued in ``store``, oldest first; their keys."""
    keys = []
    for i in range(n):
        posed = Posed("answer", PermQuestion(SIGMA, i % 8, 2 + i))
        assert store.post(posed, person_view(posed, "perm", draft="0"))
        keys.append(posed.key())
    return keys


@pytest.fixture()
def store(tmp_path):
    s = LabelStore(tmp_path / "labels.sqlite")
    yield s
    s.close()


# ---------------------------------------------------------------------------------------------------------------
# Access


def test_a_non_local_client_needs_the_token(store):
    post_questions(store, 1)
    open_app = create_app(store)
    assert TestClient(open_app, **LOCAL).get("/api/next", params={"person": "ann"}).status_code == 200
    far = {"base_url": "http://192.168.1.2:8000", "client": ("10.1.2.3", 5000)}
    refused = TestClient(open_app, **far).get("/")
    assert refused.status_code == 403 and "set --token to accept non-local connections" in refused.text
    assert refused.text == NON_LOCAL

    app = create_app(store, token="s3cret")
    client = TestClient(app, **far)
    assert client.get("/").status_code == 403
    assert client.get("/", params={"token": "wrong"}).status_code == 403
    assert client.get("/api/next", headers={"X-Debate-Amp-Token": "wrong"}).status_code == 403
    first = client.get("/", params={"token": "s3cret"})  # then the cookie carries it, and the URL loses it
    assert first.status_code == 200 and "token" not in str(first.url) and "Your name" in first.text
    assert client.get("/api/next", params={"person": "bob"}).status_code == 200
    header_only = TestClient(app, **far)
    assert header_only.get("/api/next", params={"person": "cy"}, headers={"X-Debate-Amp-Token": "s3cret"}).is_success
    assert header_only.get("/api/next", params={"person": "cy"}).status_code == 403  # a header sets no cookie


def test_without_a_token_a_foreign_host_name_or_a_cross_site_post_is_refused(store):
    app = create_app(store)
    rebound = TestClient(app, base_url="http://evil.example:8000", client=("127.0.0.1", 5000))
    assert rebound.get("/").status_code == 403  # DNS rebinding: a loopback client asking for another name
    client = TestClient(app, **LOCAL)
    [key] = post_questions(store, 1)
    body = {"key": key, "person": "ann", "answer": "1"}
    cross = client.post("/api/answer", content=json.dumps(body), headers={"Origin": "http://evil.example"})
    assert cross.status_code == 403 and store.label(key) is None
    same = client.post("/api/answer", content=json.dumps(body), headers={"Origin": "http://127.0.0.1:8000"})
    assert same.json() == {"stored": True, "reply": "1"} and store.label(key).human == "ann"


# ---------------------------------------------------------------------------------------------------------------
# Questions


def test_an_answer_that_does_not_fit_is_shown_again_with_its_error(store):
    q = PermQuestion(SIGMA, 5, 6)
    winner = Posed("winner", q, context=("5^6=4 via 3",))
    step = Posed("answer", q).step(("3",))
    for posed in (winner, step):
        store.post(posed, person_view(posed, "perm"))
    client = TestClient(create_app(store), **LOCAL)
    client.cookies.set("debate_amp_person", "ann")
    bad = client.post("/answer", data={"key": winner.key(), "answer": "maybe"})
    assert bad.status_code == 422 and "not stored: answer one of even, odd, not &#39;maybe&#39;" in bad.text
    half = client.post("/answer", data={"key": step.key(), "ask1": "5^3", "ask2": " "})
    assert half.status_code == 422 and "give both subquestions" in half.text and 'value="5^3"' in half.text
    assert len(store) == 0
    asked = client.post("/answer", data={"key": step.key(), "ask1": "5^3", "ask2": "#1^3"})
    assert asked.status_code == 200 and store.get(step.key()) == "ask 5^3;#1^3"
    assert re.search(r'id="notice">stored: ask 5\^3;#1\^3<', asked.text)
    again = client.post("/answer", data={"key": step.key(), "answer": "4"})  # a second post of the same question
    assert "not stored: you had already answered that question (ask 5^3;#1^3)" in again.text
    assert store.get(step.key()) == "ask 5^3;#1^3"


def test_skip_sends_the_question_to_the_back_of_the_queue(store):
    first, second = post_questions(store, 2)
    client = TestClient(create_app(store), **LOCAL)
    client.cookies.set("debate_amp_person", "ann")
    assert f'value="{first}"' in client.get("/").text
    page = client.post("/skip", data={"key": first})
    assert f'value="{second}"' in page.text and 'id="notice">skipped<' in page.text
    assert [q.key for q in store.pending()] == [second, first] and store.pending()[1].leased_to is None


def test_people_claiming_at_once_through_the_api_never_share_a_question(store):
    keys = post_questions(store, 12)
    client = TestClient(create_app(store), **LOCAL)
    got: dict[str, str] = {}
    barrier = threading.Barrier(6)

    def person(name: str) -> None:
        barrier.wait()
        while (q := client.get("/api/next", params={"person": name}).json()["question"]) is not None:
            reply = client.post("/api/answer", json={"key": q["key"], "person": name, "answer": name[-1]}).json()
            assert reply["stored"] is True
            got[q["key"]] = name

    threads = [threading.Thread(target=person, args=(f"p{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(got) == sorted(keys) and len(store) == 12 and store.pending() == []
    assert all(store.label(k).human == who for k, who in got.items())


# ---------------------------------------------------------------------------------------------------------------
# Judgments


def test_a_debate_goes_to_one_person_at_a_time_and_each_judges_it_once(tmp_path):
    store = JudgmentStore(tmp_path / "j.sqlite")
    d1, d2 = ("/t.jsonl", 1), ("/t.jsonl", 2)
    assert store.claim("ann", [d1, d2], lease_s=60, now=0) == d1
    assert store.claim("ann", [d1, d2], lease_s=60, now=1) == d1  # her lease still runs
    assert store.claim("bob", [d1, d2], lease_s=60, now=2) == d2
    assert store.claim("cy", [d1, d2], lease_s=60, now=3) is None  # both leased
    with pytest.raises(ValueError, match="give your own answer to the question first"):
        store.judge(d1, "ann", "even", 80, question_id="q1", update=1, now=4)
    with pytest.raises(ValueError, match="a confidence from 50 to 100%, not 40"):
        store.give_initial(d1, "ann", "4", 40, now=4)
    assert store.give_initial(d1, "ann", "4", 70, now=10)
    assert not store.give_initial(d1, "ann", "5", 90, now=11)  # the first answer stays: she has seen arguments
    with pytest.raises(ValueError, match="the winner is even or odd"):
        store.judge(d1, "ann", "both", 80, question_id="q1", update=1, now=12)
    assert store.judge(d1, "ann", "odd", 90, question_id="q1", update=1, now=30)
    assert not store.judge(d1, "ann", "even", 90, question_id="q1", update=1, now=31)
    assert store.claim("cy", [d1, d2], lease_s=60, now=32) == d1  # judged by ann: free for another person
    assert store.claim("ann", [d1, d2], lease_s=60, now=33) is None  # d1 judged by her, d2 leased to bob
    # bob's lease runs out after his initial answer: ann may take d2, and bob, back, resumes where he was
    assert store.give_initial(d2, "bob", "1", 55, now=40)
    assert store.claim("ann", [d1, d2], lease_s=60, now=70) == d2
    assert store.claim("bob", [d1, d2], lease_s=60, now=71) is None  # d1 is cy's, d2 ann's
    assert store.claim("bob", [d1, d2], lease_s=60, now=200) == d2 and store.started(d2, "bob").initial_answer == "1"
    [j] = read_judgments(tmp_path / "j.sqlite")
    assert j == Judgment("/t.jsonl", 1, "q1", 1, "ann", "4", 70, "odd", 90, 10, 20, 0, 10, 30)
    store.close()


def test_judge_pages_hide_the_arguments_until_the_initial_answer_is_stored(tmp_path):
    opening = claim()
    path = write_transcripts(tmp_path / "t.jsonl", [record([opening, "no 5^3=3 via 2"], winner="odd")])
    session = JudgeSession.from_transcripts([path], tmp_path / "judgments.sqlite")
    client = TestClient(create_app(None, judge=session), **LOCAL)
    assert client.get("/").url.path == "/name"  # a name first, then the judge's pages
    client.cookies.set("debate_amp_person", "ann")
    first = client.get("/")
    assert first.url.path == "/judge" and "step 1 of 2" in first.text and "s=37016254 x=5 k=6" in first.text
    shown = first.text.split("<main>")[1]
    assert opening not in shown and "no 5^3=3" not in shown and "odd" not in shown  # nor the verdict
    early = client.post("/judge/verdict", data={"debate": "0", "winner": "even", "confidence": "90"})
    assert "step 1 of 2" in early.text and len(session.store) == 0  # no verdict before the initial answer
    unsure = client.post("/judge/initial", data={"debate": "0", "answer": "4", "confidence": "40"})
    assert unsure.status_code == 422 and "not stored: a confidence from 50 to 100%" in unsure.text
    second = client.post("/judge/initial", data={"debate": "0", "answer": "4", "confidence": "75"})
    assert "step 2 of 2" in second.text and opening in second.text and 'id="your-answer">4<' in second.text
    done = client.post("/judge/verdict", data={"debate": "0", "winner": "odd", "confidence": "80"})
    assert "stored: your verdict on debate 1, odd won (80%)" in done.text and "you judged 1 of 1 debates" in done.text
    [j] = read_judgments(tmp_path / "judgments.sqlite")
    assert (j.person, j.initial_answer, j.initial_confidence, j.winner, j.winner_confidence) == (
        "ann",
        "4",
        75,
        "odd",
        80,
    )


def test_human_judge_statistics_by_hand(tmp_path):
    """Three debates: naive right 1 of 4 judgments, after debate 3 of 4, agreement with the model judge 2 of 4."""
    q6, q1 = "s=37016254 x=5 k=6", "s=37016254 x=5 k=1"  # gold 4 and 2
    records = [
        record([claim(q6)], winner="even", question=q6, update=1),  # even right; the model judge right
        record([claim(q6, value=1)], winner="even", question=q6, update=2),  # even wrong; the model judge wrong
        record([claim(q1)], winner="odd", question=q1, update=3),  # even right; the model judge wrong
    ]
    path = write_transcripts(tmp_path / "t.jsonl", records)
    rows = load([path]).rows
    t = str(path.resolve())

    def judged(line, person, initial, winner, seconds):
        return Judgment(t, line, f"u{line}", line, person, initial, 70, winner, 80, seconds, 2 * seconds, 0, 0, 0)

    judgments = [
        judged(1, "ann", "4", "even", 1.0),  # naive right, after right, agrees
        judged(2, "ann", "3", "odd", 2.0),  # naive wrong, after right, disagrees
        judged(3, "ann", "7", "even", 3.0),  # naive wrong, after right, disagrees
        judged(3, "bob", "x", "odd", 4.0),  # naive wrong, after wrong, agrees
        Judgment("/elsewhere/t.jsonl", 9, "u9", 1, "ann", "1", 70, "odd", 80, 1, 1, 0, 0, 0),  # another file
    ]
    stats = human_judge_statistics(rows, judgments)
    assert (stats["judgments"], stats["debates"], stats["people"], stats["unmatched_judgments"]) == (4, 3, 2, 1)
    pick = {k: (stats[k]["successes"], stats[k]["n"]) for k in ("naive_accuracy", "accuracy_after_debate")}
    assert pick == {"naive_accuracy": (1, 4), "accuracy_after_debate": (3, 4)}
    assert (stats["agreement_with_model_judge"]["successes"], stats["agreement_with_model_judge"]["n"]) == (2, 4)
    assert (stats["model_judge_accuracy"]["successes"], stats["model_judge_accuracy"]["n"]) == (1, 3)
    assert stats["naive_accuracy"]["lo"] == pytest.approx(0.0456, abs=1e-4)  # Wilson 1/4
    assert stats["median_seconds"] == pytest.approx(7.5)  # totals 3, 6, 9, 12
    assert stats["by_person"]["bob"]["after_debate"]["n"] == 1
    moved = tmp_path / "moved"
    moved.mkdir()
    (tmp_path / "t.jsonl").rename(moved / "t.jsonl")  # a moved file: matched by name, line and question_id
    assert human_judge_statistics(load([moved / "t.jsonl"]).rows, judgments)["judgments"] == 4


def test_cli_eval_human_judgments_and_serve_refusals(tmp_path, capsys):
    path = write_transcripts(tmp_path / "t.jsonl", [record()])
    session = JudgeSession.from_transcripts([path])
    assert session.store.path == tmp_path / "human_judgments.sqlite"
    (debate,) = session.debates
    assert session.claim("ann") == debate and "s=37016254 x=5 k=6" in debate.view["text"]
    session.store.give_initial(debate.key, "ann", "4", 90)
    session.store.judge(debate.key, "ann", "even", 100, question_id=debate.question_id, update=debate.update)

    assert main(["eval", str(path), "--human-judgments", str(session.store.path), "--json"]) == 0
    humans = json.loads(capsys.readouterr().out)["human_judges"]
    assert humans["naive_accuracy"]["value"] == 1.0 and humans["accuracy_after_debate"]["value"] == 1.0
    assert main(["eval", str(path), "--human-judgments", str(session.store.path)]) == 0
    out = capsys.readouterr().out
    assert "human judges" in out and re.search(r"human naive accuracy \(before debate\)\s+100.0%", out)
    assert main(["eval", str(path), "--json"]) == 0
    assert "human_judges" not in json.loads(capsys.readouterr().out)

    for argv, message in [
        (["eval", str(path), "--human-judgments", str(path)], "not a readable judgment store"),
        (["eval", str(path), "--human-judgments", str(tmp_path / "none.sqlite")], "no such judgment store"),
        (["serve", str(tmp_path / "nowhere")], "no such run directory or label store"),
        (["serve", str(path)], "not a readable label store"),
        (["serve", str(tmp_path), "--host", "0.0.0.0"], "--host 0.0.0.0 accepts connections from other machines"),
        (["serve", "--judge", str(tmp_path / "none.jsonl")], "no such transcript file or run directory"),
        (["serve", str(tmp_path), "--judge", str(path)], "not both"),
    ]:
        with pytest.raises(SystemExit) as e:
            main(argv)
        err = capsys.readouterr().err
        assert e.value.code == 2 and message in err and err.count("\n") == 1, (argv, err)
