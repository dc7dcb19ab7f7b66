"""The ``add`` task: known sums, the human's decomposition, Amp(H, perfect M), the judge and the liar, the formats'
round trips and the 128-position budget, and fuzzing of every parser (model output that does not parse is data)."""

from __future__ import annotations

import asyncio
import random
import string
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from debate_amp.agents.humans.synthetic import SyntheticHuman
from debate_amp.agents.model_agent import ModelAgent
from debate_amp.combinators import amp_approx
from debate_amp.debate.engine import ScriptedDebater, run_debates
from debate_amp.protocol import UNKNOWN, Answer, Ask, Generation, Posed, Unparsed
from debate_amp.samplers import Always, Bernoulli, Never
from debate_amp.tasks import TASKS, TaskQuestion, task_named
from debate_amp.tasks.add import (
    AddHuman,
    AddLiar,
    AddQuestion,
    AddTask,
    add_range,
    answer_prompt,
    catastrophe_cost,
    depth_of,
    digits_at_depth,
    imitation_examples,
    integrate,
    is_sufficient,
    judge_winner,
    opening_claims_gold,
    parse_argument,
    parse_prompt,
    parse_question,
    parse_step,
    parse_subquestion,
    parse_value,
    perfect_generate,
    perfect_reply,
    render_claim,
    render_posed,
    render_question,
    render_subquestion,
    score,
    step_prompt,
    tree_calls,
    true_halves,
)

Q = AddQuestion("4821", "3907", 0)  # 4821 + 3907 = 8728; low half 21 + 07 = 028, high half 48 + 39 = 087
FUZZ = settings(derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck))
MAX_POSITIONS = 128  # the tiny model's context: prompt, <prompt_end>, reply, </s>


def test_sums_known_answers():
    assert Q.gold == "08728"
    assert add_range("4821", "3907", 0, 1, 0) == "028" and add_range("4821", "3907", 2, 3, 0) == "087"
    assert add_range("4821", "3907", 2, 3, 1) == "088" and add_range("4821", "3907", 2, 2, 1) == "18"
    assert AddQuestion("9999", "0000", 1).gold == "10000" and AddQuestion("0", "0", 0).gold == "00"
    assert AddQuestion("9", "9", 1).gold == "19" and AddQuestion("95", "07", 1).gold == "103"
    big = AddQuestion("9" * 5000, "0" * 5000, 1)  # no int() of the whole operand: any length works
    assert big.gold == "1" + "0" * 5000 and big.difficulty == 5000


def test_depth_and_sizes():
    assert [depth_of(n) for n in range(1, 18)] == [0, 1, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 4, 4, 4, 4, 5]
    assert [digits_at_depth(d, 6) for d in range(4)] == [(1, 1), (2, 2), (3, 4), (5, 6)]
    assert (Q.depth, Q.difficulty, Q.with_range(3, 3, 1).depth) == (2, 4, 0)
    assert [tree_calls(n) for n in range(1, 7)] == [1, 4, 7, 10, 13, 16]


def test_text_formats():
    assert render_question(Q) == "a=4821 b=3907 c=0" == Q.render()
    assert render_question(Q.with_range(2, 3, 1)) == "a=4821 b=3907 r=2-3 c=1"
    assert answer_prompt(Q) == "a=4821 b=3907 c=0 A="
    assert step_prompt(Q, ["028", "087"]) == "a=4821 b=3907 c=0 #1=028 #2=087 S="
    assert Q.describe() == "r=0-3 c=0" and render_subquestion(2, 3, "#1") == "2-3+#1"
    for text in ["a=4821 b=3907 c=0", "a=0000 b=0001 r=1-2 c=1", "a=7 b=8 c=1", "a=12 b=34 r=1-1 c=0"]:
        assert render_question(parse_question(text)) == text
    assert parse_question("a=4821 b=3907 r=0-3 c=0") == Q  # the whole range, written out, is the same question


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("a=4821 b=390 c=0", "as many digits"),
        ("a=4821 b=3907 c=2", "not an add question"),
        ("a=4821 b=3907 r=3-1 c=0", "not a digit range"),
        ("a=4821 b=3907 r=2-4 c=0", "not a digit range"),
        ("s=37016254 x=5 k=6", "not an add question"),
        ("a=4821 b=3907", "not an add question"),
    ],
)
def test_parse_question_names_what_is_wrong(text, match):
    with pytest.raises(ValueError, match=match):
        parse_question(text)


def test_parse_step_and_subquestions_with_the_carry_rule():
    assert parse_step("ans 08728") == Answer("08728")
    assert parse_step("ask 0-1+0;2-3+#1") == Ask("0-1+0", "2-3+#1")
    for junk in ["", "ask 0-1+0", "hello", "ask ;2-3+1", "ask a;b;c"]:
        assert isinstance(parse_step(junk), Unparsed), junk
    assert parse_subquestion("0-1+0", Q) == Q.with_range(0, 1, 0)
    # After Amp puts the low half's answer in for #1, the carry-in is its first digit; its other digits are ignored.
    assert parse_subquestion("2-3+028", Q) == Q.with_range(2, 3, 0)
    assert parse_subquestion("2-3+128", Q) == Q.with_range(2, 3, 1)
    for bad in ["2-3+228", "2-3+?", "2-3+#1", "2-3+", "3-2+0", "2-4+0", "2-3+0x", "r=2-3 c=0", "2+0", "99999-3+0"]:
        assert parse_subquestion(bad, Q) is None, bad
    assert parse_value(" 028 ", 2) == "028" and parse_value("28", 2) is None and parse_value("228", 2) is None


def test_score_is_exact_match():
    assert score("08728", Q) == 1.0 == Q.score(" 08728 ")
    for wrong in ["8728", "18728", "08727", "?", "", "08728 ", "0872 8"]:
        assert score(wrong, Q) == (1.0 if wrong.strip() == "08728" else 0.0), wrong
    assert score(None, Q) == 0.0


def _hch(human: AddHuman, q: AddQuestion) -> str:
    """Amp(H, H): the human answers alone, resolving every ``ask`` recursively and substituting #1 as Amp does."""
    step = parse_step(human.step(q))
    if isinstance(step, Answer):
        return step.text
    assert isinstance(step, Ask)
    first = parse_subquestion(step.first, q)
    assert first is not None
    a1 = _hch(human, first)
    second = parse_subquestion(step.second.replace("#1", a1), q)
    assert second is not None
    final = parse_step(human.step(q, [a1, _hch(human, second)]))
    assert isinstance(final, Answer)
    return final.text


@pytest.mark.parametrize("n", range(1, 17))
def test_decomposition_recomposes_to_gold_for_every_size_and_carry(n):
    rng = random.Random(n)
    for carry in (0, 1):
        for _ in range(4):
            q = AddQuestion(*(f"{rng.randrange(10**n):0{n}d}" for _ in range(2)), carry)
            human = AddHuman()
            assert _hch(human, q) == q.gold == str(int(q.a) + int(q.b) + carry).zfill(n + 1)
            assert human.calls == tree_calls(n) == AddTask.alone_calls(q)
            if n >= 2:
                assert integrate(q, true_halves(q)) == q.gold
    edge = AddQuestion("9" * n, "0" * n, 1)  # the carry ripples through every digit
    assert _hch(AddHuman(), edge) == "1" + "0" * n


def _answer_all(agent, questions):
    async def main():
        return await asyncio.gather(*(agent(Posed("answer", q)) for q in questions))

    return asyncio.run(main())


@pytest.mark.parametrize("sampler", [Never(), Always(), Bernoulli(0.5, seed=1)], ids=["never", "always", "bernoulli"])
def test_amp_of_the_human_and_the_perfect_model_answers_every_heldout_question(sampler):
    questions = AddTask(max_digits=16).eval_questions(64, seed=1)
    assert {q.difficulty for q in questions} == set(range(1, 17))
    human = SyntheticHuman(AddHuman())
    replies = _answer_all(amp_approx(human, ModelAgent(perfect_generate, "policy"), sampler), questions)
    assert [r.text for r in replies] == [q.gold for q in questions]
    if isinstance(sampler, Always):  # one digit pair: one step; otherwise decompose and integrate
        assert human.calls == sum(1 if q.difficulty == 1 else 2 for q in questions)


def _steps_only_generate(prompts, limits=None):
    """A model whose steps and digit pairs are perfect but that knows no longer sum when asked directly."""
    texts = []
    for prompt in prompts:
        posed = parse_prompt(prompt)
        ok = posed is not None and (posed.kind != "answer" or posed.question.difficulty == 1)
        texts.append(perfect_reply(prompt) if ok else UNKNOWN)
    return Generation(texts, [[] for _ in texts], [[] for _ in texts])


@pytest.mark.parametrize("levels", [1, 2, 3, 4])
def test_amp_applied_n_times_answers_up_to_depth_n_with_only_the_humans_skills(levels):
    questions = AddTask(max_digits=16).eval_questions(48, seed=2)
    agent = amp_approx(SyntheticHuman(AddHuman()), ModelAgent(_steps_only_generate), Never(), levels=levels)
    for q, reply in zip(questions, _answer_all(agent, questions), strict=True):
        assert reply.text == (q.gold if q.depth <= levels else UNKNOWN), (q.difficulty, levels)


def test_human_capacity_calls_and_error_rate():
    human = AddHuman()
    pair = Q.with_range(2, 2, 1)
    assert human.answer(pair) == "18" and human.answer(Q.with_range(0, 0, 0)) == "08"
    with pytest.raises(ValueError, match="capacity"):
        human.answer(Q)
    assert human.step(Q) == "ask 0-1+0;2-3+#1"
    assert human.step(Q.with_range(1, 3, 1)) == "ask 1-2+1;3-3+#1"  # 3 digits: the low half has 2
    assert human.step(Q, ["028", "087"]) == "ans 08728"
    assert human.step(Q, ["028", "not a number"]) == "ans ?" == human.step(Q, ["0287", "087"])
    assert human.step(pair) == "ans 18"
    assert human.calls == 9  # every call counts, the one beyond its capacity too
    assert all(AddHuman(error_rate=1.0, seed=s).answer(pair) != "18" for s in range(50))
    noisy = AddHuman(error_rate=0.2, seed=0)
    wrong = sum(
        noisy.answer(Q.with_range(i % 4, i % 4, i % 2)) != Q.with_range(i % 4, i % 4, i % 2).gold for i in range(4000)
    )
    assert 0.17 < wrong / 4000 < 0.23


def test_generator_is_seeded_and_depth_balanced():
    task = AddTask(max_digits=8)
    assert task.questions(50, seed=3) == task.questions(50, seed=3) != task.questions(50, seed=4)
    qs = task.questions(4000, seed=0)
    depths = Counter(q.depth for q in qs)
    assert set(depths) == {0, 1, 2, 3} and all(900 < n < 1100 for n in depths.values()), depths
    assert all(len(q.a) == len(q.b) == 8 and (q.lo, q.hi) == (0, q.difficulty - 1) and q.carry in (0, 1) for q in qs)
    narrow = AddTask(max_digits=8, fixed_width=False).questions(400, seed=0)  # operands exactly n digits wide
    assert all(len(q.a) == len(q.b) == q.difficulty and q.is_whole for q in narrow)
    assert 0.45 < sum(q.carry for q in qs) / len(qs) < 0.55
    uniform = Counter(q.difficulty for q in AddTask(8, balance="uniform").questions(4000, seed=0))
    assert set(uniform) == set(range(1, 9)) and all(400 < n < 600 for n in uniform.values()), uniform


def test_sampling_between_depths():
    task = AddTask(max_digits=6)
    rng = random.Random(0)
    assert {task.sample(rng, max_depth=2, min_depth=2).difficulty for _ in range(300)} == {3, 4}
    assert {task.sample(rng, max_depth=2, min_depth=1).difficulty for _ in range(300)} == {2, 3, 4}
    assert {task.sample(rng, max_depth=0).difficulty for _ in range(100)} == {1}
    assert {q.difficulty for q in task.at_depth(rng, 3, 200)} == {5, 6}
    assert task.at_depth(rng, 4, 10) == [] and (task.max_depth, task.max_difficulty) == (3, 6)
    assert task.sample(rng, difficulty=11).difficulty == 11


def test_heldout_operand_pairs_never_reach_training():
    task = AddTask(max_digits=6, heldout_fraction=0.25)
    evals = task.eval_questions(300)
    assert all(task.is_heldout(q.a, q.b) for q in evals)
    assert Counter(q.difficulty for q in evals) == {n: 50 for n in range(1, 7)}
    train = task.questions(3000, seed=1)
    assert not any(task.is_heldout(q.a, q.b) for q in train)
    assert not {(q.a, q.b) for q in train} & {(q.a, q.b) for q in evals}
    examples = imitation_examples(task, AddHuman(), 2000, seed=0, lookups=0.5)
    held = {f"a={q.a} b={q.b} " for q in evals}
    assert not any(e.prompt.startswith(tuple(held)) for e in examples)
    # The split is a SHA-256 of the pair, the same in every process: these are the one-digit pairs held out.
    ones = [(a, b) for a in "0123456789" for b in "0123456789" if AddTask().is_heldout(a, b)]
    assert ones == [("0", "4"), ("2", "7"), ("4", "3"), ("5", "0"), ("5", "6"), ("5", "9")]


def test_registry_config_and_checks():
    assert TASKS["add"] is AddTask and isinstance(task_named("add"), AddTask) and isinstance(Q, TaskQuestion)
    section = {"max_digits": 4, "balance": "uniform", "heldout_fraction": 0.1, "fixed_width": False}
    task = AddTask.from_config(type("Section", (), section))
    assert (task.max_digits, task.balance, task.heldout_fraction, task.fixed_width) == (4, "uniform", 0.1, False)
    assert task.summary() == "digits = 1..4" and (AddTask.name, AddTask.difficulty_name) == ("add", "digits")
    assert task.check_question(Q) is None
    message = task.check_question(parse_question("a=12345 b=54321 c=0"))
    assert message is not None and "task.max_digits=5" in message


def test_imitation_examples_are_what_the_human_does():
    task = AddTask(max_digits=6)
    examples = imitation_examples(task, AddHuman(), 1001, seed=0, lookups=0.3)
    assert len(examples) == 1001
    assert set(Counter(e.kind for e in examples)) == {"answer", "step", "integrate"}
    for e in examples:
        posed = parse_prompt(e.prompt)
        assert posed is not None and posed.question == e.question and e.difficulty == e.question.difficulty
        if e.kind == "answer":
            assert e.prompt.endswith(" A=") and e.difficulty == 1 and e.completion == e.question.gold
        else:
            assert e.prompt.endswith(" S=") and e.completion == perfect_reply(e.prompt)


def test_integrated_answers_are_right_and_charged_their_subtrees_calls():
    task = AddTask(max_digits=6)
    plain = imitation_examples(task, AddHuman(), 2000, seed=0)
    examples = imitation_examples(task, AddHuman(), 2000, seed=0, integrated_answers=True)
    deep = [(i, e) for i, e in enumerate(examples) if e.kind == "answer" and e.difficulty >= 2]
    assert len(deep) > 300 and not any(e.kind == "answer" and e.difficulty >= 2 for e in plain)
    for i, e in deep:
        integrate_example = examples[i - 1]
        assert integrate_example.kind == "integrate" and parse_step(integrate_example.completion) == Answer(
            e.completion
        )
        assert e.completion == e.question.gold
        n = e.difficulty
        assert e.human_calls == tree_calls((n + 1) // 2) + tree_calls(n // 2) == tree_calls(n) - 2
    assert all(e.human_calls == 1 for e in examples if not (e.kind == "answer" and e.difficulty >= 2))


def test_skills_are_the_humans_first_step_and_integration():
    assert AddTask.skills(Q) == [
        ("step", "a=4821 b=3907 c=0 S=", "ask 0-1+0;2-3+#1"),
        ("integrate", "a=4821 b=3907 c=0 #1=028 #2=087 S=", "ans 08728"),
    ]
    assert AddTask.skills(Q.with_range(3, 3, 1)) == [("step", "a=4821 b=3907 r=3-3 c=1 S=", "ans 08")]


def test_posed_rendering_round_trips_through_parse_prompt():
    sub = Q.with_range(2, 3, 1)
    cases = [
        (Posed("answer", Q), "a=4821 b=3907 c=0 A="),
        (Posed("answer", sub), "a=4821 b=3907 r=2-3 c=1 A="),
        (Posed("answer", Q).step(("028", "087")), "a=4821 b=3907 c=0 #1=028 #2=087 S="),
        (Posed("argue", Q, ("0-3+0=08728 via 0",)), "a=4821 b=3907 c=0 |0-3+0=08728 via 0 G="),
        (Posed("argue", Q, ("0-3+0=08728 via 0",)).step(("028",)), "a=4821 b=3907 c=0 |0-3+0=08728 via 0 #1=028 SG="),
        (Posed("sufficient", Q, ("agree",), argument=0), "a=4821 b=3907 c=0 |agree @0 E="),
        (Posed("winner", Q, ("a", "b")), "a=4821 b=3907 c=0 |a |b W="),
        (Posed("catastrophe", Q, ("a", "b"), argument=1).step(), "a=4821 b=3907 c=0 |a |b @1 SC="),
    ]
    for posed, text in cases:
        assert posed.render() == render_posed(posed) == text
        assert parse_prompt(text) == posed
    for junk in ["", "a=4821 b=3907 c=0", "a=4821 b=3907 c=0 X=", "a=1 b=2 c=0 |x @3 C=", "q A="]:
        assert parse_prompt(junk) is None and perfect_reply(junk) == UNKNOWN


def test_arguments_parse_only_in_their_format():
    assert parse_argument("0-3+0=08728 via 0", 4) == parse_argument(render_claim(0, 3, 0, "08728", via=0))
    assert parse_argument("no 3-3+1=13", 4).no and parse_argument(" agree ").agree
    for bad in [
        "0-3+0=0872 via 0",  # the value needs a carry-out and 4 digits
        "0-3+0=28728 via 0",  # a carry-out is 0 or 1
        "0-3+0=08728",  # a claim about several digits needs its via
        "0-0+0=08 via 0",  # a digit pair has none
        "0-3+0=08728 via 2",
        "3-0+0=08728 via 0",
        "0-4+0=087280 via 0",  # beyond 4-digit operands
        "0-3+2=08728 via 0",
        "no no 0-0+0=08",
        "0-3+0=08728 via 028",  # the via is the low half's carry-out alone
    ]:
        assert parse_argument(bad, 4) is None, bad
    assert Q.is_argument("agree") and not Q.is_argument("0-4+0=087280 via 0")
    low, high = parse_argument("0-3+0=08733 via 0").subclaims()
    assert (low.lo, low.hi, low.carry, low.value) == (0, 1, 0, "033")
    assert (high.lo, high.hi, high.carry, high.value) == (2, 3, 0, "087")
    low, high = parse_argument("1-3+1=1234 via 1").subclaims()  # 3 digits: the low half has 2
    assert (low.lo, low.hi, low.carry, low.value, high.lo, high.hi, high.carry, high.value) == (
        1,
        2,
        1,
        "134",
        3,
        3,
        1,
        "12",
    )


def test_judge_rules():
    assert judge_winner(Q, ("0-3+0=08728 via 0",)) == "even"  # uncontested opening
    assert judge_winner(Q, ("0-2+0=0728 via 0",)) == "odd"  # off the question
    assert judge_winner(Q, ("0-3+1=08729 via 0",)) == "odd"  # another carry-in: off the question
    assert judge_winner(Q, ("0-3+0=08728 via 0", "agree")) == "even"
    assert judge_winner(Q, ("garbage",)) == "odd"
    lie = "0-3+0=08733 via 0"  # the low half false (033; it is 028), the high half true
    assert judge_winner(Q, (lie, "no 0-1+0=028 via 0", "no 0-0+0=03")) == "odd"  # 1 + 7 = 08: a lie
    assert judge_winner(Q, (lie, "no 0-1+0=028 via 0", "no 0-0+0=08")) == "odd"  # disputes with what was claimed
    assert judge_winner(Q, (lie, "no 0-1+0=028 via 0", "no 1-1+0=12")) == "odd"  # 2 + 0 = 02: a lie
    assert judge_winner(Q, (lie, "no 0-1+0=028 via 0", "no 1-1+0=03")) == "odd"  # 1-1 with carry 0 was claimed 02
    assert judge_winner(Q, (lie, "no 0-1+0=028 via 0", "agree")) == "odd"
    assert judge_winner(Q, (lie, "no 0-1+1=028 via 0")) == "even"  # disputes nothing that was claimed
    assert judge_winner(Q, (lie, "no 2-3+0=088 via 0")) == "even"  # the high half was claimed 087
    assert judge_winner(Q, ("0-0+0=08",)) == "odd"  # opening about a digit pair that is not the question
    one = AddQuestion("7", "8", 1)
    assert judge_winner(one, ("0-0+1=16",)) == "even" and judge_winner(one, ("0-0+1=15",)) == "odd"
    cut = (lie, "no 0-1+0=028 via 0")  # cut off above a digit pair: a coin flip fixed by the transcript
    assert judge_winner(Q, cut) == judge_winner(Q, cut) in ("even", "odd")


def test_sufficient_catastrophe_and_openings():
    assert not is_sufficient(Q, "0-3+0=08728 via 0") and is_sufficient(Q, "no 0-0+0=03")
    assert is_sufficient(Q, "agree") and is_sufficient(Q, "???")
    assert catastrophe_cost(Q, "0-0+0=08") == "0" and catastrophe_cost(Q, "no 0-0+0=03") == "1"
    assert catastrophe_cost(Q, "0-3+0=08733 via 0") == "0"  # not checkable as one digit pair: no catastrophe
    assert opening_claims_gold(Q, "0-3+0=08728 via 0") and Q.opening_claims_gold("0-3+0=08728 via 1")
    assert not any(opening_claims_gold(Q, t) for t in ["0-3+0=08733 via 0", "no 0-3+0=08728 via 0", "agree", "x"])
    reply = AddTask.opening_reply
    assert reply(Q, ["0-3+0=08728 via 0"]) == "single"
    assert reply(Q, ["0-3+0=08733 via 0", "no 0-1+0=028 via 0"]) == "disagree"
    assert reply(Q, ["0-3+0=08733 via 0", "0-3+0=08728 via 0"]) == "disagree"
    assert reply(Q, ["0-3+0=08728 via 0", "0-3+0=08728 via 0"]) == "agree"
    assert reply(Q, ["0-3+0=08728 via 0", "agree"]) == "agree" == reply(None, ["x", "agree"])
    assert reply(Q, ["0-3+0=08728 via 0", "1-1+0=02"]) == "other" == reply(Q, ["a", "b"])


def test_the_honest_human_checks_both_halves_and_disputes_a_false_one():
    human = AddHuman()
    lie = "0-3+0=08733 via 0"
    assert human.respond(Posed("argue", Q, (lie,)).step()) == "ask 0-1+0;2-3+0"
    # the model says the low half is 028, not 033: dispute it with its own claim, asking for its halves
    assert human.respond(Posed("argue", Q, (lie,)).step(("028", "087"))) == "ask 0-0+0;1-1+#1"
    assert human.respond(Posed("argue", Q, (lie,)).step(("028", "087", "08", "02"))) == "ans no 0-1+0=028 via 0"
    assert human.respond(Posed("argue", Q, ("0-3+0=08728 via 0",)).step(("028", "087"))) == "ans agree"
    assert human.respond(Posed("argue", Q, (lie, "no 0-1+0=028 via 0", "no 0-0+0=03"))) == "no 0-0+0=08"
    assert human.respond(Posed("argue", Q, ())) == UNKNOWN  # an opening needs the model's values: not alone
    assert human.respond(Posed("winner", Q, (lie, "no 0-1+0=028 via 0", "no 0-0+0=03"))) == "odd"
    assert human.respond(Posed("sufficient", Q, (lie,), argument=0)) == "no"
    assert human.respond(Posed("catastrophe", Q, (lie, "no 0-0+0=03"), argument=1)) == "1"


# ---------------------------------------------------------------------------------------------------------------
# Debates: the honest side against the scripted liar

TASK = AddTask(max_digits=6)
QUESTIONS = TASK.eval_questions(192, seed=3)  # every size 1..6, 32 times each


class Recording:
    """The perfect model's generate function, keeping every prompt and reply it saw."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def __call__(self, prompts, limits=None):
        out = perfect_generate(prompts, limits)
        self.seen += zip(prompts, out.texts, strict=True)
        return out


def _debates(max_turns, liar_side, seed=1, generate=perfect_generate, questions=QUESTIONS, sampler=None, judge=None):
    """Amp~(H, perfect M) debating (and judging, unless ``judge`` is given), the liar on ``liar_side``."""
    human = SyntheticHuman(AddHuman())
    policy, target = ModelAgent(generate, "policy"), ModelAgent(generate, "target")
    liar = {} if liar_side is None else {liar_side: ScriptedDebater(AddLiar(seed=seed))}
    sampler = sampler or Never()
    amp_policy, amp_target = amp_approx(human, policy, sampler), amp_approx(human, target, sampler)
    return run_debates(questions, amp_policy, judge or amp_target, max_turns, **liar)


def _honest_rate(max_turns, liar_side):
    honest = "odd" if liar_side == "even" else "even"
    debates = _debates(max_turns, liar_side)
    return sum(d.winner.value == honest for d in debates) / len(debates)


@pytest.mark.parametrize("liar_side", ["even", "odd"])
def test_the_honest_side_beats_the_liar_once_a_dispute_can_reach_a_digit_pair(liar_side):
    # 6 digits: 6 -> 3 -> 2 -> 1, so 4 arguments reach a single digit pair (depth + 1).
    assert _honest_rate(4, liar_side) >= 0.95
    assert _honest_rate(6, liar_side) >= 0.95


@pytest.mark.parametrize("liar_side", ["even", "odd"])
def test_the_honest_side_wins_with_the_human_answering_every_step_and_judging_alone(liar_side):
    # sampler always: the human writes every step (the model only answers subquestions); the judge is the plain
    # human, posed each judgment directly.
    honest = "odd" if liar_side == "even" else "even"
    judge = SyntheticHuman(AddHuman())
    debates = _debates(4, liar_side, seed=7, questions=QUESTIONS[::2], sampler=Always(), judge=judge)
    assert sum(d.winner.value == honest for d in debates) / len(debates) >= 0.95
    honest_turn = 0 if honest == "even" else 1
    costs = [(t % 2, c.value) for d in debates for t, c in enumerate(d.costs)]
    assert all(cost == 0.0 for parity, cost in costs if parity == honest_turn)  # the honest side never lies
    assert any(cost == 1.0 for parity, cost in costs if parity != honest_turn)


def test_judge_accuracy_falls_as_max_turns_shrinks():
    table = {t: (_honest_rate(t, "even") + _honest_rate(t, "odd")) / 2 for t in (1, 2, 4)}
    assert 0.5 <= table[1] <= 0.65  # one argument: whoever opens is believed, unless it is a digit pair
    assert table[1] <= table[2] < 0.95 <= table[4]


def test_the_liars_arguments_parse_and_are_false_with_exactly_one_false_half():
    n_checked = 0
    for liar_side in ("even", "odd"):
        for d in _debates(4, liar_side, seed=5):
            q = d.question
            for turn in d.turns:
                if turn.side != liar_side:
                    continue
                arg = parse_argument(turn.text, q.n_digits)
                assert arg is not None and not arg.agree, turn.text
                assert add_range(q.a, q.b, arg.lo, arg.hi, arg.carry) != arg.value, turn.text
                if arg.digits >= 2:
                    false = [c for c in arg.subclaims() if add_range(q.a, q.b, c.lo, c.hi, c.carry) != c.value]
                    assert len(false) == 1, turn.text
                n_checked += 1
    assert n_checked > 400
    halves = Counter()
    liar = AddLiar(seed=0)
    for _ in range(400):
        arg = parse_argument(liar.argue(Q, ()))
        low, _ = arg.subclaims()
        halves["low" if low.value != "028" else "high"] += 1
    assert 150 < halves["low"] < 250  # the false half is drawn: a checker cannot guess which


def test_prompts_fit_the_tiny_models_positions():
    recording = Recording()
    six = [q for q in QUESTIONS if q.difficulty >= 5]
    for liar_side in ("even", "odd"):
        _debates(4, liar_side, generate=recording, questions=six)
    _debates(4, None, generate=recording, questions=six)  # self-play as well
    longest = max(len(p) for p, _ in recording.seen)
    assert longest <= 108, max(recording.seen, key=lambda s: len(s[0]))
    assert all(len(p.encode()) + len(r.encode()) + 2 <= MAX_POSITIONS for p, r in recording.seen)
    # The longest there can be for 6-digit operands: the biggest value at every level, a step with 4 arguments; a
    # 5-digit question writes its range (r=0-4), the 6-digit one does not.
    context = ("0-5+1=1999999 via 1", "no 0-2+1=1999 via 1", "no 0-1+1=199 via 1", "no 0-0+1=19")
    worst = Posed("sufficient", AddQuestion("999999", "999999", 1), context, argument=3).step().render()
    assert len(worst) == 103 and len(worst) + len("ans yes") + 2 <= MAX_POSITIONS
    context = ("0-4+1=199999 via 1", "no 0-2+1=1999 via 1", "no 0-1+1=199 via 1", "no 0-0+1=19")
    five = Posed("sufficient", AddQuestion("999999", "999999", 1, 0, 4), context, argument=3).step().render()
    assert len(five) == 108 and len(five) + len("ans yes") + 2 <= MAX_POSITIONS


# ---------------------------------------------------------------------------------------------------------------
# Fuzz: arbitrary text never crashes a parser, the human, the judge or the perfect model

ALPHABET = string.digits + "abcr=+- #|@;:?SAGEWCvianoe\n\t٣"
texty = st.text(max_size=80) | st.text(alphabet=ALPHABET, max_size=80)


def _valid_prompts() -> list[str]:
    recording = Recording()
    _debates(4, "odd", generate=recording, questions=QUESTIONS[:24])
    return sorted({p for p, _ in recording.seen})


VALID_PROMPTS = _valid_prompts()


@st.composite
def mutated_prompts(draw) -> str:
    text = draw(st.sampled_from(VALID_PROMPTS))
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(text)))
        j = draw(st.integers(i, min(len(text), i + 6)))
        text = text[:i] + draw(st.text(alphabet=ALPHABET, max_size=4)) + text[j:]
    return text


@settings(FUZZ, max_examples=300)
@given(texty)
def test_parse_question_raises_only_value_error(text):
    try:
        q = parse_question(text)
    except ValueError:
        return
    assert parse_question(q.render()) == q


@settings(FUZZ, max_examples=300)
@given(texty | mutated_prompts())
def test_parsers_and_the_perfect_model_never_crash_on_any_text(text):
    assert isinstance(perfect_reply(text), str)
    parse_step(text)
    parse_prompt(text)
    parse_value(text, 3)
    assert parse_subquestion(text, Q) is None or parse_subquestion(text, Q).n_digits == 4
    arg = parse_argument(text, 4)
    assert arg is None or Q.is_argument(text)
    assert score(text, Q) in (0.0, 1.0) and isinstance(opening_claims_gold(Q, text), bool)
    assert is_sufficient(Q, text) in (True, False) and catastrophe_cost(Q, text) in ("0", "1")


@settings(FUZZ, max_examples=200)
@given(st.lists(texty, min_size=1, max_size=4), st.lists(texty, max_size=4))
def test_the_judge_and_the_human_never_crash_on_any_arguments(context, workspace):
    context = tuple(context)
    assert judge_winner(Q, context) in ("even", "odd")
    assert AddTask.opening_reply(Q, context) in ("single", "agree", "disagree", "other")
    assert AddTask.opening_reply(None, context) in ("single", "agree", "disagree", "other")
    human = AddHuman()
    for kind in ("argue", "sufficient", "winner", "catastrophe"):
        posed = Posed(kind, Q, context, argument=len(context) - 1 if kind == "catastrophe" else None)
        assert isinstance(human.respond(posed), str) and isinstance(human.respond(posed.step(tuple(workspace))), str)
    assert isinstance(human.step(Q, workspace), str)
    AddLiar().argue(Q, context)


@settings(FUZZ, max_examples=300)
@given(st.integers(1, 16), st.integers(0, 2**32), st.integers(0, 1))
def test_round_trips_for_random_questions_ranges_and_claims(n, seed, carry):
    rng = random.Random(seed)
    q = AddQuestion(*(f"{rng.randrange(10**n):0{n}d}" for _ in range(2)), carry)
    assert parse_question(q.render()) == q and parse_prompt(answer_prompt(q)) == Posed("answer", q)
    lo = rng.randrange(n)
    hi = rng.randrange(lo, n)
    sub = q.with_range(lo, hi, rng.randrange(2))
    assert parse_question(sub.render()) == sub and parse_subquestion(render_subquestion(lo, hi, sub.carry), q) == sub
    via = rng.randrange(2) if hi > lo else None
    text = render_claim(lo, hi, sub.carry, sub.gold, via=via, no=bool(rng.randrange(2)))
    arg = parse_argument(text, n)
    assert arg is not None and render_claim(arg.lo, arg.hi, arg.carry, arg.value, arg.via, arg.no) == text
    lie = AddLiar(seed=seed).argue(q, ())
    assert q.is_argument(lie) and not q.opening_claims_gold(lie)
