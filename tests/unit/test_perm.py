import math
import random
from collections import Counter

import pytest

from debate_amp.protocol import Unparsed
from debate_amp.tasks.perm import (
    Answer,
    Ask,
    PermHuman,
    PermQuestion,
    PermTask,
    answer_prompt,
    depth_of,
    imitation_examples,
    parse_element,
    parse_prompt,
    parse_step,
    parse_subquestion,
    power,
    render_question,
    score,
    step_prompt,
    tree_calls,
)

SIGMA = (3, 7, 0, 1, 6, 2, 5, 4)  # 0->3->1->7->4->6->5->2->0: one 8-cycle


def test_power_known_answers():
    assert power(SIGMA, 0, 0) == 0
    assert power(SIGMA, 0, 1) == 3
    assert power(SIGMA, 0, 2) == 1
    assert power(SIGMA, 0, 5) == 6
    assert power(SIGMA, 0, 8) == 0  # an 8-cycle returns home
    assert power(SIGMA, 5, 3) == 3  # 5->2->0->3
    assert PermQuestion(SIGMA, 0, 13).gold == power(SIGMA, 0, 5)


def test_the_one_lookup_shortcut_and_how_often_it_is_right():
    # sigma^(k mod 2)(x): x for an even k, sigma(x) for an odd one; None where the human answers itself.
    assert PermQuestion(SIGMA, 0, 1).shortcut is None and PermQuestion(SIGMA, 0, 0).shortcut is None
    assert PermQuestion(SIGMA, 0, 2).shortcut == 0 and PermQuestion(SIGMA, 0, 6).shortcut == 0
    assert PermQuestion(SIGMA, 0, 3).shortcut == 3 and PermQuestion(SIGMA, 5, 7).shortcut == 2
    # Right exactly where x's cycle length divides k (even k) or k - 1 (odd k).
    sigma = (1, 0, 3, 4, 2, 5)  # (0 1), (2 3 4), (5)
    for x, cycle in ((0, 2), (2, 3), (5, 1)):
        for k in range(2, 14):
            q = PermQuestion(sigma, x, k)
            assert (q.shortcut == q.gold) == ((k - k % 2) % cycle == 0), (x, k)


def test_the_heldout_report_counts_wrong_shortcuts_given():
    from debate_amp.eval.heldout import HeldoutReport

    task = PermTask(n_elements=8, max_power=7)
    questions = [q for q in task.eval_questions(400, seed=3) if q.k >= 2]
    misled = [q for q in questions if q.shortcut != q.gold]
    stuck, composes, noise = HeldoutReport(), HeldoutReport(), HeldoutReport()
    for i, q in enumerate(questions):
        stuck.record("answer", q, str(q.shortcut))
        composes.record("answer", q, str(q.gold))
        noise.record("answer", q, str(q.shortcut) if i % 4 == 0 else "?")
    assert 0.5 < len(misled) / len(questions) < 0.75  # the shortcut is right on about 37% of held-out k >= 2
    assert stuck.shortcut_rate() == 1.0 and stuck.beyond() == pytest.approx(1 - len(misled) / len(questions))
    assert composes.shortcut_rate() == 0.0 and composes.beyond() == 1.0
    expected = sum(1 for i, q in enumerate(questions) if i % 4 == 0 and q.shortcut != q.gold) / len(misled)
    assert noise.shortcut_rate() == pytest.approx(expected) and 0.15 < expected < 0.35
    only_lookups = HeldoutReport()
    only_lookups.record("answer", PermQuestion(SIGMA, 0, 1), "3")
    assert math.isnan(only_lookups.shortcut_rate())  # no question beyond the human


def test_huge_powers_go_through_the_cycle():
    sigma = (1, 0, 3, 4, 2)  # a 2-cycle (0 1) and a 3-cycle (2 3 4)
    assert power(sigma, 2, 10**12) == power(sigma, 2, 10**12 % 3) == 3
    assert power(sigma, 0, 10**12 + 1) == 1
    assert PermQuestion(sigma, 4, 10**18).gold == power(sigma, 4, 1) == 2  # 10**18 = 1 (mod 3)


def test_depth():
    assert [depth_of(k) for k in range(9)] == [0, 0, 1, 1, 2, 2, 2, 2, 3]


def test_text_formats():
    q = PermQuestion(SIGMA, 5, 6)
    assert render_question(q) == "s=37016254 x=5 k=6"
    assert answer_prompt(q) == render_question(q) + " A="
    assert step_prompt(q, ["7", "4"]) == render_question(q) + " #1=7 #2=4 S="


def test_parse_step_and_subquestions():
    assert parse_step("ans 4") == Answer("4")
    assert parse_step("ask 2^3;#1^3") == Ask("2^3", "#1^3")
    for junk in ["", "ask 2^3", "hello", "ask ;1^2", "ask a;b;c"]:
        assert isinstance(parse_step(junk), Unparsed), junk
    parent = PermQuestion(SIGMA, 5, 6)
    assert parse_subquestion("2^3", parent) == PermQuestion(SIGMA, 2, 3)
    assert parse_subquestion("9^3", parent) is None  # no element 9 when N = 8
    assert parse_subquestion("#1^3", parent) is None  # references must be substituted first
    assert parse_subquestion("x=2 k=3", parent) is None
    assert parse_element(" 7 ", 8) == 7 and parse_element("8", 8) is None and parse_element("x", 8) is None


def test_score_is_exact_match():
    q = PermQuestion(SIGMA, 0, 2)
    assert score("1", q) == 1.0 and score(1, q) == 1.0
    assert score("2", q) == 0.0 and score("?", q) == 0.0 and score(None, q) == 0.0 and score("1 2", q) == 0.0


def _hch(human: PermHuman, q: PermQuestion) -> str:
    """The human consulting copies of itself: resolves every ``ask`` recursively, substituting #1."""
    step = parse_step(human.step(q))
    if isinstance(step, Answer):
        return step.text
    assert isinstance(step, Ask)
    first = parse_subquestion(step.first, q)
    a1 = _hch(human, first)
    second = parse_subquestion(step.second.replace("#1", a1), q)
    a2 = _hch(human, second)
    final = parse_step(human.step(q, [a1, a2]))
    assert isinstance(final, Answer)
    return final.text


@pytest.mark.parametrize("k", range(0, 65))
def test_human_decomposition_is_exact_for_every_k(k):
    rng = random.Random(k)
    for _ in range(5):
        sigma = list(range(11))
        rng.shuffle(sigma)
        q = PermQuestion(tuple(sigma), rng.randrange(11), k)
        assert _hch(PermHuman(), q) == str(q.gold)


def test_human_capacity_and_call_counting():
    human = PermHuman()
    assert human.answer(PermQuestion(SIGMA, 0, 1)) == "3"
    assert human.answer(PermQuestion(SIGMA, 0, 0)) == "0"
    with pytest.raises(ValueError, match="capacity"):
        human.answer(PermQuestion(SIGMA, 0, 2))
    assert human.step(PermQuestion(SIGMA, 0, 7)) == "ask 3^3;#1^3"  # odd k: one lookup first
    assert human.step(PermQuestion(SIGMA, 0, 6)) == "ask 0^3;#1^3"
    assert human.step(PermQuestion(SIGMA, 0, 6), ["7", "not a number"]) == "ans ?"
    assert human.calls == 6
    # A perfect recursive answer to k = 8 costs: 3 steps at k=8 (ask, integrate), 2x at k=4, 4x at k=2, 8 at k=1.
    counting = PermHuman()
    _hch(counting, PermQuestion(SIGMA, 0, 8))
    assert counting.calls == 2 + 2 * 2 + 4 * 2 + 8


def test_human_error_rate():
    assert all(PermHuman(error_rate=1.0, seed=s).answer(PermQuestion(SIGMA, 0, 1)) != "3" for s in range(50))
    noisy = PermHuman(error_rate=0.2, seed=0)
    wrong = sum(noisy.answer(PermQuestion(SIGMA, i % 8, 1)) != str(SIGMA[i % 8]) for i in range(4000))
    assert 0.17 < wrong / 4000 < 0.23


def test_generator_is_seeded_and_depth_balanced():
    task = PermTask(n_elements=8, max_power=15)
    assert task.questions(50, seed=3) == task.questions(50, seed=3)
    assert task.questions(50, seed=3) != task.questions(50, seed=4)
    depths = Counter(q.depth for q in task.questions(4000, seed=0))
    assert set(depths) == {0, 1, 2, 3}
    assert all(900 < n < 1100 for n in depths.values()), depths
    uniform = Counter(q.k for q in PermTask(8, 15, balance="uniform").questions(4000, seed=0))
    assert 180 < uniform[0] < 320 and 180 < uniform[15] < 320


def test_heldout_permutations_never_reach_training():
    task = PermTask(n_elements=6, max_power=7, heldout_fraction=0.25)
    evals = task.eval_questions(400)
    assert all(task.is_heldout(q.sigma) for q in evals)
    assert Counter(q.k for q in evals) == {k: 50 for k in range(8)}
    train_sigmas = {q.sigma for q in task.questions(3000, seed=1)}
    assert not train_sigmas & {q.sigma for q in evals}
    examples = imitation_examples(task, PermHuman(), 2000, seed=0)
    assert not any(render_question(q).split(" x=")[0] in e.prompt for q in evals for e in examples[:300])


def test_imitation_examples_are_what_the_human_does():
    task = PermTask(n_elements=8, max_power=7)
    examples = imitation_examples(task, PermHuman(), 1001, seed=0)
    assert len(examples) == 1001
    kinds = Counter(e.kind for e in examples)
    assert set(kinds) == {"answer", "step", "integrate"}
    assert all(e.difficulty <= 1 for e in examples if e.kind == "answer")
    for e in examples:
        if e.kind == "answer":
            assert e.prompt.endswith(" A=") and parse_element(e.completion, 8) is not None
        else:
            assert e.prompt.endswith(" S=") and not isinstance(parse_step(e.completion), Unparsed)


def _work_out(human: PermHuman, q: PermQuestion) -> int:
    """Amp(H, H): the human answers sigma^k(x) alone, by its own decompositions, lookups and integrations."""
    if human.can_answer(q):
        return int(human.answer(q))
    ask = parse_step(human.step(q))
    assert isinstance(ask, Ask)
    first = parse_subquestion(ask.first, q)
    assert first is not None
    v1 = _work_out(human, first)
    second = parse_subquestion(ask.second.replace("#1", str(v1)), q)
    assert second is not None
    workspace = [str(v1), str(_work_out(human, second))]
    reply = parse_step(human.step(q, workspace))
    assert isinstance(reply, Answer)
    return int(reply.text)


@pytest.mark.parametrize("k", range(8))
def test_tree_calls_counts_the_calls_of_the_human_working_a_question_out_alone(k):
    human = PermHuman()
    q = PermQuestion(SIGMA, 5, k)
    assert _work_out(human, q) == power(SIGMA, 5, k)
    assert human.calls == tree_calls(k) == {0: 1, 1: 1, 2: 4, 3: 4, 4: 10, 5: 10, 6: 10, 7: 10}[k]


def test_integrated_answers_are_right_and_charged_their_subtrees_calls():
    task = PermTask(n_elements=8, max_power=7)
    plain = imitation_examples(task, PermHuman(), 3000, seed=0)
    examples = imitation_examples(task, PermHuman(), 3000, seed=0, integrated_answers=True)
    deep = [(i, e) for i, e in enumerate(examples) if e.kind == "answer" and e.difficulty >= 2]
    assert len(deep) > 400 and not any(e.kind == "answer" and e.difficulty >= 2 for e in plain)
    for i, e in deep:
        integrate = examples[i - 1]  # the human's integration of the same question, just before it
        assert integrate.kind == "integrate" and integrate.difficulty == e.difficulty
        assert e.prompt.endswith(" A=") and integrate.prompt.startswith(e.prompt[: -len(" A=")])
        posed = parse_prompt(e.prompt)
        assert posed is not None and posed.kind == "answer" and posed.question.k == e.difficulty
        assert e.completion == str(posed.question.gold)  # Amp(H, H) is right: the human makes no mistakes here
        assert parse_step(integrate.completion) == Answer(e.completion)
        # the workspace held both sub-answers: the human worked out two halves of k // 2 alone
        assert e.human_calls == 2 * tree_calls(e.difficulty // 2) and e.human_calls in (2, 8)
    assert all(e.human_calls == 1 for e in examples if not (e.kind == "answer" and e.difficulty >= 2))
    others = [(e.prompt, e.completion) for e in examples if not (e.kind == "answer" and e.difficulty >= 2)]
    assert others == [(e.prompt, e.completion) for e in plain][: len(others)]  # the same human replies besides


def test_posed_rendering_matches_the_trained_formats():
    from debate_amp.protocol import Posed

    q = PermQuestion(SIGMA, 5, 6)
    posed = Posed("answer", q)
    assert posed.render() == answer_prompt(q)
    assert posed.step().render() == step_prompt(q)
    assert posed.step(("7", "4")).render() == step_prompt(q, ["7", "4"])
    argue = Posed("argue", q, context=("ans 4", "no"))
    assert argue.render() == render_question(q) + " |ans 4 |no G="
    assert argue.step(("3",)).render() == render_question(q) + " |ans 4 |no #1=3 SG="
    assert Posed("catastrophe", q, context=("a", "b"), argument=1).render().endswith(" |a |b @1 C=")
    assert posed.key() == Posed("answer", PermQuestion(SIGMA, 5, 6)).key() != Posed("answer", q.with_query(5, 5)).key()


def test_debate_imitation_repeats_the_humans_own_judgments_directly_and_never_a_model_backed_claim():
    """A[0] learns M's direct judgments (`` W=``) from the human's own replies, beside the steps Amp~ poses. A
    reply that used the perfect model's values (an opening ``x^k=v via m``) must not be repeated directly: it would
    teach gold sigma^k(x)."""
    from debate_amp.tasks.perm import judge_winner, parse_argument, parse_prompt
    from debate_amp.trainer.sft import debate_imitation_examples

    task = PermTask(n_elements=8, max_power=7)
    examples = debate_imitation_examples(task, 3000, seed=0, max_turns=4)
    direct = [e for e in examples if not e.prompt.endswith(("SG=", "SE=", "SW=", "SC="))]
    kinds = Counter(e.kind for e in direct)
    assert min(kinds["winner"], kinds["sufficient"], kinds["catastrophe"]) >= 100, kinds
    for e in direct:
        posed = parse_prompt(e.prompt)
        assert posed is not None and posed.kind == e.kind and posed.kind != "step"
        if e.kind == "winner":
            assert e.completion == judge_winner(posed.question, posed.context)
        if e.kind == "argue":
            argument = parse_argument(e.completion, 8)
            assert argument is not None and (argument.agree or argument.k <= 1), e.completion


def test_integrated_arguments_are_the_humans_own_argument_charged_for_working_the_values_out():
    """With ``integrated_arguments`` an argument the human made with the model's values is also posed directly: the
    argument the human would make working those values out alone, charged its own steps plus tree_calls(k) per
    value. Known answers: an opening on k = 2 is ask (1) + two lookups (1 + 1) + the claim (1) = 4; on k = 7, ask
    (1) + two sigma^3 (4 + 4) + the claim (1) = 10; a dispute of a claim about k = 6 checks two sigma^3 (1 + 4 + 4),
    then makes its own claim about k = 3 (1 + 1 + 1 + 1) = 13."""
    from debate_amp.tasks.perm import parse_argument, parse_prompt, power
    from debate_amp.trainer.sft import debate_imitation_examples

    task = PermTask(n_elements=8, max_power=7)
    plain = debate_imitation_examples(task, 3000, seed=0, max_turns=4)
    examples = debate_imitation_examples(task, 3000, seed=0, max_turns=4, integrated_arguments=True)
    new = [e for e in examples if e.kind == "argue" and e.human_calls > 1]
    assert len(new) >= 100 and all(e.human_calls == 1 for e in plain)
    costs = Counter()
    for e in new:
        posed = parse_prompt(e.prompt)
        assert posed is not None and posed.kind == "argue"  # the direct form, not a step
        argument = parse_argument(e.completion, 8)
        assert argument is not None
        q = posed.question
        if argument.agree:
            continue
        assert power(q.sigma, argument.x, argument.k) == argument.value  # the human's claims are true
        if argument.k >= 2:
            first, second = argument.subclaims(q.sigma)
            assert power(q.sigma, first.x, first.k) == first.value == second.x
        previous = parse_argument(posed.context[-1], 8) if posed.context else None
        if previous is None:
            costs[("open", q.k)] = e.human_calls
        elif previous.k == 6:
            costs[("dispute", 6)] = e.human_calls
    assert costs[("open", 2)] == 4 and costs[("open", 7)] == 10 and costs[("dispute", 6)] == 13, costs


def test_sampling_between_two_depths():
    task = PermTask(n_elements=8, max_power=7)
    rng = random.Random(0)
    assert {task.sample(rng, max_depth=1, min_depth=1).k for _ in range(300)} == {2, 3}
    assert {task.sample(rng, max_depth=2, min_depth=1).k for _ in range(600)} == {2, 3, 4, 5, 6, 7}
    assert {task.sample(rng, max_depth=0).k for _ in range(300)} == {0, 1}
