"""The adversary of references/000 (issue 14): Gumbel-max choice, the confidence threshold, its labels, its learning,
AUC / ECE against hand-computed answers, and the recipe keys."""

import asyncio
import math
import random
import time

import pytest

from debate_amp.adversary import (
    CONFIDENCE_KEYS,
    Adversary,
    AdversaryExample,
    AdversaryShape,
    auc,
    ece,
    is_heldout,
    labelled_nodes,
)
from debate_amp.agents.humans.synthetic import SyntheticHuman
from debate_amp.agents.model_agent import ModelAgent
from debate_amp.combinators import AdversarialAmp, amp_approx
from debate_amp.config import ConfigError, load_config
from debate_amp.protocol import UNKNOWN, Generation, Posed, Trace
from debate_amp.samplers import Adversarial, Bernoulli, Budget, Uninformed, gumbel_max
from debate_amp.tasks.perm import PermHuman, PermQuestion, PermTask, answer_prompt, parse_prompt, perfect_reply

K = 15
QUESTIONS = [PermQuestion(q.sigma, q.x, i % (K + 1)) for i, q in enumerate(PermTask(8, K).questions(64, seed=0))]


class Scripted:
    """An adversary with fixed scores: p_wrong = ``rule(posed)`` for the posed question a prompt renders."""

    def __init__(self, rule):
        self.rule, self.scored, self.min_logprobs = rule, [], []

    def score(self, pairs, min_logprobs=None):
        scores = [self.rule(parse_prompt(prompt)) for prompt, _ in pairs]
        self.scored += [(prompt, s) for (prompt, _), s in zip(pairs, scores, strict=True)]
        self.min_logprobs += [None] * len(pairs) if min_logprobs is None else list(min_logprobs)
        return scores


WRONG_LOGPROB, RIGHT_LOGPROB = -2.5, -0.05
"""The scripted model's lowest token log-probability in a wrong draft and in a right one (its confidence)."""


def generate(wrong_k=()):
    """A scripted model: the perfect reply, except a wrong element for direct answers with k in ``wrong_k``; each
    reply's token log-probabilities are -0.01 but for one token, WRONG_LOGPROB in a wrong reply, RIGHT_LOGPROB in a
    right one."""

    def fn(prompts, limits=None):
        texts, logprobs = [], []
        for prompt in prompts:
            posed = parse_prompt(prompt)
            wrong = posed is not None and posed.kind == "answer" and posed.question.k in wrong_k
            text = str((posed.question.gold + 1) % len(posed.question.sigma)) if wrong else perfect_reply(prompt)
            texts.append(text)
            logprobs.append([-0.01] * len(text) + [WRONG_LOGPROB if wrong else RIGHT_LOGPROB])
        return Generation(texts, [[0] * len(lps) for lps in logprobs], logprobs)

    return fn


def run_all(agent, questions):
    async def main():
        return await asyncio.gather(*(agent(Posed("answer", q)) for q in questions))

    return asyncio.run(main())


def human_calls_expected(k: int, doubted) -> int:
    """Human calls of AdversarialAmp on sigma^k(x) when the adversary doubts exactly the k in ``doubted``."""
    if k not in doubted:
        return 0
    if k <= 1:
        return 1  # the human answers the step itself
    return 2 + human_calls_expected(k // 2, doubted)  # decompose + integrate, down one (equal-k) branch


# ---------------------------------------------------------------------------------------------------------------
# Gumbel-max


@pytest.mark.parametrize(("scores", "temperature"), [((0.7, 0.2), 0.25), ((0.9, 0.6, 0.1), 0.5), ((0.3, 0.3), 0.1)])
def test_gumbel_max_picks_each_index_with_the_softmax_probability(scores, temperature):
    rng, n = random.Random(0), 20_000
    counts = [0] * len(scores)
    for _ in range(n):
        counts[gumbel_max(scores, temperature, rng)] += 1
    z = [math.exp(s / temperature) for s in scores]
    for count, weight in zip(counts, z, strict=True):
        p = weight / sum(z)
        sd = math.sqrt(p * (1 - p) / n)
        assert abs(count / n - p) < 4 * sd, (counts, p)


def test_gumbel_max_refuses_a_temperature_that_is_not_positive():
    with pytest.raises(ValueError, match="temperature"):
        gumbel_max([0.1, 0.2], 0.0, random.Random(0))


# ---------------------------------------------------------------------------------------------------------------
# The confidence threshold and the tree


def test_the_confidence_threshold_skips_exactly_the_nodes_below_it():
    doubted = {k for k in range(K + 1) if k >= 4}  # k >= 4: p_wrong 0.9 >= 0.5; k <= 3: 0.1 < 0.5
    adversary = Scripted(lambda posed: 0.9 if posed.question.k in doubted else 0.1)
    human = SyntheticHuman(PermHuman())
    amp = AdversarialAmp(human, ModelAgent(generate()), Adversarial(adversary, confidence=0.5, temperature=0.2))
    replies = run_all(amp, QUESTIONS)
    assert [r.text for r in replies] == [str(q.gold) for q in QUESTIONS]
    assert human.calls == sum(human_calls_expected(q.k, doubted) for q in QUESTIONS) > 0
    for reply, q in zip(replies, QUESTIONS, strict=True):
        # a question the adversary is confident about is M's draft, untouched; a doubted one the human's tree
        assert (reply.trace.op == "amp") == (q.k in doubted)
        answers = [n for n in reply.trace.walk() if n.posed.kind == "answer"]
        for node in answers:
            if node.op == "amp":  # the human worked on it: doubted, and M's draft kept beside it
                assert node.posed.question.k in doubted and node.replaced is not None
        if q.k >= 8:  # both subquestions (k >= 4) are doubted: the human works down exactly one of them
            first, second = reply.trace.children[1:3]
            assert sorted([first.op, second.op]) == ["", "amp"]
    assert sum(r.trace.total_human_calls() for r in replies) == human.calls


def test_the_sampler_hands_the_adversary_m_s_confidence_in_each_draft_it_scores():
    adversary = Scripted(lambda posed: 0.9)  # doubts everything: drafts of answers and of steps are scored
    amp = AdversarialAmp(SyntheticHuman(PermHuman()), ModelAgent(generate(wrong_k={2, 3})), Adversarial(adversary))
    run_all(amp, QUESTIONS)
    kinds = set()
    for (prompt, _), lp in zip(adversary.scored, adversary.min_logprobs, strict=True):
        posed = parse_prompt(prompt)
        wrong = posed.kind == "answer" and posed.question.k in (2, 3)
        assert lp == (WRONG_LOGPROB if wrong else RIGHT_LOGPROB), prompt
        kinds.add((posed.kind, wrong))
    assert kinds == {("answer", True), ("answer", False), ("step", False)}


def test_the_human_works_down_the_branch_the_adversary_doubts_and_the_first_answer_used_feeds_hash_1():
    # M is wrong on every direct k=2 answer; the adversary doubts the question (k=4) and its first subquestion
    # (x^2), not the second (#1^2), and is sure of k <= 1. The human corrects the first; the second is then asked
    # about the corrected element, not about M's wrong one.
    q = PermQuestion((1, 2, 3, 4, 5, 6, 7, 0), 0, 4)

    def rule(posed):
        k, x = posed.question.k, posed.question.x
        return 0.9 if k == 4 or (k == 2 and x == q.x) else 0.0

    model = ModelAgent(generate(wrong_k={2}))
    amp = AdversarialAmp(SyntheticHuman(PermHuman()), model, Adversarial(Scripted(rule), 0.5, temperature=0.01))
    (reply,) = run_all(amp, [q])
    step, first, second, integrate = reply.trace.children
    assert first.op == "amp" and first.text == "2" and first.replaced.text == "3"  # sigma^2(0) = 2; M said 3
    assert second.posed.question.x == 2 and second.op == ""  # #1 = the human's 2, answered by M (wrongly: 5)
    assert second.text == "5" and reply.text == "5"  # M's wrong answer stands where the adversary was sure of it


def test_a_doubted_answer_is_amplified_by_the_models_steps_where_the_adversary_trusts_them():
    # references/000's iteration step for the asker (H'_ask, H'_int): M is wrong on every direct k = 2, 3 answer and
    # right on every step; the adversary doubts exactly the k = 2, 3 answers and no step. Those answers come out of
    # M's own decompositions, right, and the human is never asked.
    adversary = Scripted(lambda posed: 0.9 if posed.kind == "answer" and posed.question.k in (2, 3) else 0.0)
    human = SyntheticHuman(PermHuman())
    amp = AdversarialAmp(human, ModelAgent(generate(wrong_k={2, 3})), Adversarial(adversary, 0.5, temperature=0.2))
    questions = [q for q in QUESTIONS if q.k in (2, 3)]
    replies = run_all(amp, questions)
    assert human.calls == 0 and questions
    assert [r.text for r in replies] == [str(q.gold) for q in questions]  # M's direct drafts were all wrong
    for reply in replies:
        assert reply.trace.op == "amp" and reply.trace.replaced.text != reply.text
        assert all(n.who == "policy" for n in reply.trace.children if n.posed.kind == "step")
    # where the adversary doubts the steps as well, the human takes them (decompose and integrate: two calls each)
    amp = AdversarialAmp(human, ModelAgent(generate(wrong_k={2, 3})), Adversarial(Uninformed(0.9), 0.5, 0.2))
    run_all(amp, questions)
    assert human.calls == sum(human_calls_expected(q.k, set(range(K + 1))) for q in questions)


def test_a_model_that_asks_its_own_question_again_is_cut_off_at_max_depth():
    # A model whose every fresh step asks the question itself again (`5^4;?` inside 5^4: the second subquestion
    # does not parse, so the first is the branch worked down) and an adversary that doubts everything and never
    # hands a step to the human (budget 0): the recursion stops at max_depth levels below the question, where M's
    # answer stands, instead of without end (a RecursionError in a training run).
    q = PermQuestion((1, 2, 3, 4, 5, 6, 7, 0), 5, 4)

    def fn(prompts, limits=None):
        texts = []
        for prompt in prompts:
            posed = parse_prompt(prompt)
            fresh = posed.kind == "step" and not posed.workspace
            texts.append(f"ask {posed.question.x}^{posed.question.k};?" if fresh else perfect_reply(prompt))
        return Generation(texts, [[0] * len(t) for t in texts], [[-0.01] * len(t) for t in texts])

    budget = Budget(Adversarial(Uninformed(0.9), confidence=0.5), per_update=0)
    for max_depth in (0, 3):
        amp = AdversarialAmp(SyntheticHuman(PermHuman()), ModelAgent(fn), budget.inner, budget, max_depth=max_depth)
        (reply,) = run_all(amp, [q])
        depth, node = 0, reply.trace
        while node.op == "amp":  # down the chosen branch: the first subquestion, the same question again
            assert node.posed.question == q
            node, depth = node.children[1], depth + 1
        assert depth == max_depth + 1  # amplified at depths 0..max_depth; below, M's direct answer
        assert node.text == str(q.gold) and node.op == ""  # M's own draft of 5^4
    assert recipe_max_depth("recipes/adversarial_ida.yaml") == 3  # perm, k <= 7: depth 2, plus one
    assert recipe_max_depth("recipes/adversarial_ida.yaml", "task.max_power=15") == 4


def recipe_max_depth(recipe, *overrides):
    from debate_amp.agents.wiring import recipe_amp, recipe_sampler

    cfg = load_config(recipe, list(overrides))
    amp = recipe_amp(cfg, SyntheticHuman(PermHuman()), ModelAgent(generate()), recipe_sampler(cfg, 0, Uninformed()))
    return amp.max_depth


def test_an_audit_amplifies_the_share_of_trusted_drafts_it_says_and_asks_no_human_where_the_steps_are_trusted():
    # the adversary trusts every draft (p_wrong 0); with audit 0.25 about a quarter of the questions are amplified
    # all the same, by M's own steps: labels for drafts the adversary trusted, at no human call
    questions = [q for q in QUESTIONS * 8 if q.k >= 2]
    human = SyntheticHuman(PermHuman())
    sampler = Adversarial(Scripted(lambda posed: 0.0), confidence=0.5, temperature=0.2, seed=3, audit=0.25)
    replies = run_all(AdversarialAmp(human, ModelAgent(generate(wrong_k={2, 3})), sampler), questions)
    audited = [r for r in replies if r.trace.op == "amp"]
    n, p = len(questions), 0.25
    assert abs(len(audited) - n * p) < 4 * math.sqrt(n * p * (1 - p)) and human.calls == 0
    examples = [e for r in audited for e in labelled_nodes(r.trace)]
    assert len(examples) >= len(audited) and any(e.wrong for e in examples)  # M's wrong k = 2, 3 drafts found
    assert all(r.trace.who == "policy" for r in replies if r.trace.op != "amp")  # the rest: M's drafts, untouched
    with pytest.raises(ValueError, match="audit"):
        Adversarial(Uninformed(), audit=1.5)


def test_an_exhausted_budget_leaves_the_model_steps_and_the_caps_hold_exactly():
    budget = Budget(Adversarial(Uninformed(), confidence=0.2), per_update=7, per_run=10)
    human = SyntheticHuman(PermHuman())
    amp = AdversarialAmp(human, ModelAgent(generate()), budget.inner, budget)
    replies = run_all(amp, QUESTIONS)
    assert human.calls == 7 == budget.update_calls
    # every draft is doubted, so every question is amplified; past the cap its steps are M's drafts
    steps = [n for r in replies for n in r.trace.walk() if n.posed.kind == "step"]
    assert all(r.trace.op == "amp" for r in replies)
    assert sum(n.who == "human" for n in steps) == 7 and sum(n.who == "policy" for n in steps) > 0
    budget.new_update()
    run_all(amp, QUESTIONS)
    assert human.calls == 10 == budget.run_calls


# ---------------------------------------------------------------------------------------------------------------
# Labels


def _labelled(trace: Trace) -> list[Trace]:
    """The used nodes with both M's draft and the human's (or amplified) answer, walked independently."""
    out = [trace] if trace.replaced is not None and (trace.who == "human" or trace.op == "amp") else []
    for child in trace.children:
        out += _labelled(child)
    return out


@pytest.mark.parametrize("combinator", ["adversarial", "approx"])
def test_labels_come_only_from_nodes_with_both_a_draft_and_a_human_answer(combinator):
    model = ModelAgent(generate(wrong_k={2, 3}))
    human = SyntheticHuman(PermHuman())
    if combinator == "adversarial":
        amp = AdversarialAmp(human, model, Adversarial(Uninformed(), confidence=0.2))
    else:
        amp = amp_approx(human, model, Bernoulli(0.5, seed=0))
    replies = run_all(amp, QUESTIONS)
    examples = [e for r in replies for e in labelled_nodes(r.trace)]
    nodes = [n for r in replies for n in _labelled(r.trace) if n.text != UNKNOWN]
    expected = [
        (n.posed.render(), n.replaced.text.strip(), n.replaced.text.strip() != n.text.strip(), min(n.replaced.logprobs))
        for n in nodes
    ]
    assert sorted((e.prompt, e.draft, e.wrong, e.min_logprob) for e in examples) == sorted(expected) and examples
    # M's answers that stood are in the trees but label nothing (the equality above: only nodes with a draft)
    assert any(n.who == "policy" and n.posed.kind == "answer" for r in replies for n in r.trace.walk())
    by_k = {(parse_prompt(e.prompt).question.k, e.wrong) for e in examples if e.prompt.endswith(" A=")}
    if combinator == "adversarial":  # M's direct answers to k = 2, 3 are wrong; the amplified ones right
        assert (2, True) in by_k and (3, True) in by_k
        # each carries its draft's confidence: the scripted model's lowest token log-probability, lower when wrong
        for e in examples:
            posed = parse_prompt(e.prompt)
            scripted_wrong = posed.kind == "answer" and posed.question.k in (2, 3)
            assert e.min_logprob == (WRONG_LOGPROB if scripted_wrong else RIGHT_LOGPROB)
        assert all(wrong == (k in (2, 3)) for k, wrong in by_k if k <= 3)
    else:  # Approx asks the human steps only: no answer node is labelled
        assert by_k == set()


def test_one_prompt_in_five_is_held_out_by_its_hash():
    prompts = [answer_prompt(q) for q in PermTask(8, 7).questions(2000, seed=3)]
    share = sum(map(is_heldout, prompts)) / len(prompts)
    assert abs(share - 0.2) < 4 * math.sqrt(0.2 * 0.8 / len(prompts))
    assert [is_heldout(p) for p in prompts[:50]] == [is_heldout(p) for p in prompts[:50]]


# ---------------------------------------------------------------------------------------------------------------
# Learning


def _k0_examples(n: int, seed: int) -> list[AdversaryExample]:
    """sigma^0(x) = x questions; half the drafts gold, half another element: wrong iff the draft is not x."""
    rng, out = random.Random(seed), []
    for q in PermTask(8, 7).questions(n, seed=seed):
        q = PermQuestion(q.sigma, q.x, 0)
        wrong = rng.random() < 0.5
        draft = rng.choice([v for v in range(8) if v != q.gold]) if wrong else q.gold
        out.append(AdversaryExample(answer_prompt(q), str(draft), wrong))
    return out


def test_the_adversary_learns_a_separable_rule_to_auc_09_in_seconds():
    import torch

    torch.set_num_threads(1)
    train, test = _k0_examples(2000, 1), _k0_examples(300, 2)
    adversary = Adversary(steps=25, seed=0)
    labels = [e.wrong for e in test]
    before = auc(adversary.score([(e.prompt, e.draft) for e in test]), labels)
    t0, history = time.perf_counter(), []
    for _ in range(12):
        adversary.update(train)
        history.append(auc(adversary.score([(e.prompt, e.draft) for e in test]), labels))
        if history[-1] >= 0.9:
            break
    assert before < 0.7 and history[-1] >= 0.9, history
    assert time.perf_counter() - t0 < 60


def _confidence_examples(n: int, seed: int) -> list[AdversaryExample]:
    """Drafts whose bytes say nothing (a random element for a random question, wrong half the time) and whose
    lowest log-probability does: a wrong draft's drawn from [-6, -0.5], a right one's from [-1.5, 0]."""
    rng, out = random.Random(seed), []
    for q in PermTask(8, 7).questions(n, seed=seed):
        wrong = rng.random() < 0.5
        lp = rng.uniform(-6.0, -0.5) if wrong else rng.uniform(-1.5, 0.0)
        out.append(AdversaryExample(answer_prompt(q), str(rng.randrange(8)), wrong, lp))
    return out


def test_the_adversary_learns_from_m_s_confidence_where_the_bytes_say_nothing():
    import torch

    torch.set_num_threads(1)
    train, test = _confidence_examples(2000, 6), _confidence_examples(400, 7)
    labels = [e.wrong for e in test]
    own = auc([-e.min_logprob for e in test], labels)  # M's confidence alone: about 0.92 by construction
    adversary = Adversary(steps=25, seed=0)
    assert adversary.score_examples(test) == adversary.score([(e.prompt, e.draft) for e in test])  # starts at zero
    for _ in range(6):
        adversary.update(train)
    learned = auc(adversary.score_examples(test), labels)
    blind = auc(adversary.score([(e.prompt, e.draft) for e in test]), labels)  # the same drafts, confidence unknown
    assert learned >= own - 0.03 and learned >= 0.85 and abs(blind - 0.5) < 0.1, (own, learned, blind)
    metrics = adversary.learn(test)
    assert (
        abs(
            metrics["adversary/confidence_auc"]
            - auc([-e.min_logprob for e in adversary.heldout], [e.wrong for e in adversary.heldout])
        )
        < 1e-9
    )


def test_a_state_and_a_file_saved_before_the_confidence_weights_load_and_score_as_they_did(tmp_path):
    import torch
    from safetensors.torch import save_file

    adversary = Adversary(steps=3, seed=1)
    adversary.learn(_k0_examples(200, 4))  # no confidence known: its weights stay zero
    pairs = [(e.prompt, e.draft) for e in _k0_examples(20, 5)]
    state = adversary.state_dict()
    old_net = {k: v for k, v in state["net"].items() if k not in CONFIDENCE_KEYS}
    n_old = len(old_net)
    old_optimizer = {
        "state": {i: s for i, s in state["optimizer"]["state"].items() if i < n_old},
        "param_groups": [{**state["optimizer"]["param_groups"][0], "params": list(range(n_old))}],
    }
    other = Adversary(steps=3, seed=2)
    other.load_state_dict({**state, "net": old_net, "optimizer": old_optimizer})
    assert other.score(pairs) == pytest.approx(adversary.score(pairs), abs=1e-6)
    assert all(float(other.net.get_parameter(k).detach().abs().sum()) == 0 for k in CONFIDENCE_KEYS)
    assert math.isfinite(other.learn(_confidence_examples(100, 8))["adversary/loss"])  # and it goes on learning
    save_file({k: v.contiguous() for k, v in old_net.items()}, str(tmp_path / "old.safetensors"))
    assert Adversary.load(tmp_path / "old.safetensors").score(pairs) == pytest.approx(adversary.score(pairs), abs=1e-6)
    with pytest.raises(RuntimeError, match="do not match: missing .'confidence.weight'., unexpected .'bogus'"):
        Adversary().net.load_weights({**old_net, "confidence_head.weight": torch.zeros(1, 2), "bogus": torch.ones(1)})
    with pytest.raises(RuntimeError, match="size mismatch"):
        Adversary(AdversaryShape(width=32)).net.load_weights(old_net)


def test_state_round_trips_and_the_saved_weights_score_the_same(tmp_path):
    adversary = Adversary(steps=3, seed=1)
    metrics = adversary.learn(_k0_examples(200, 4))
    assert metrics["adversary/examples"] == 200 and 0 < metrics["adversary/heldout"] < 200
    assert math.isfinite(metrics["adversary/loss"]) and math.isfinite(metrics["adversary/auc"])
    pairs = [(e.prompt, e.draft) for e in _k0_examples(20, 5)]
    other = Adversary(steps=3, seed=2)
    other.load_state_dict(adversary.state_dict())
    assert other.score(pairs) == pytest.approx(adversary.score(pairs), abs=1e-6)
    assert len(other.train_buffer) + len(other.heldout) == 200
    adversary.save(tmp_path / "adversary.safetensors")
    assert Adversary.load(tmp_path / "adversary.safetensors").score(pairs) == pytest.approx(
        adversary.score(pairs), abs=1e-6
    )


# ---------------------------------------------------------------------------------------------------------------
# AUC and ECE: known answers


def test_auc_known_answers():
    assert auc([0.1, 0.4, 0.35, 0.8], [False, False, True, True]) == pytest.approx(0.75)  # sklearn's example
    assert auc([0.2, 0.9], [False, True]) == 1.0 and auc([0.9, 0.2], [False, True]) == 0.0
    assert auc([0.5, 0.5, 0.5], [True, False, False]) == pytest.approx(0.5)  # ties count one half
    assert auc([0.1, 0.5, 0.5, 0.9], [False, True, False, True]) == pytest.approx((1 + 0.5 + 1 + 1) / 4)
    assert math.isnan(auc([0.1, 0.2], [True, True])) and math.isnan(auc([], []))


def test_ece_known_answers():
    # bins [0, .1): |0 - .05|; [.1, .2): |1 - .15|; [.9, 1]: |1 - .95| (p = 1.0 falls in the last bin)
    assert ece([0.05, 0.15, 0.95], [False, True, True]) == pytest.approx((0.05 + 0.85 + 0.05) / 3)
    assert ece([0.3, 0.3, 0.3, 0.3], [True, False, False, True]) == pytest.approx(0.2)
    assert ece([1.0, 0.0], [True, False]) == pytest.approx(0.0)
    assert math.isnan(ece([], []))


# ---------------------------------------------------------------------------------------------------------------
# Recipe keys


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("sampler.temperature=0", "sampler.temperature=0 is out of range: must be > 0"),
        ("sampler.temperature=-1", "sampler.temperature=-1 is out of range: must be > 0"),
        ("sampler.confidence=1.5", "sampler.confidence=1.5 is out of range: must be <= 1"),
        ("sampler.kind=bernoulli sampler.adversary_questions=0.5", "sampler.adversary_questions: needs kind=adversary"),
        ("sampler.kind=bernoulli sampler.adversary_path=x", "sampler.adversary_path: needs kind=adversary"),
        ("sampler.adversary_audit=2", "sampler.adversary_audit=2 is out of range: must be <= 1"),
        ("sampler.adversary_warm_start=-1", "sampler.adversary_warm_start=-1 is out of range: must be >= 0"),
        ("sampler.kind=adversry", "sampler.kind='adversry': allowed values are"),
    ],
)
def test_bad_adversary_keys_fail_in_one_line_naming_the_key(override, message):
    with pytest.raises(ConfigError) as info:
        load_config("recipes/default.yaml", ["sampler.kind=adversary", *override.split()])
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_an_adversary_file_that_does_not_load_fails_in_one_line(tmp_path):
    (tmp_path / "junk.safetensors").write_text("not weights")
    with pytest.raises(ConfigError) as info:
        load_config("recipes/adversarial_ida.yaml", [f"sampler.adversary_path={tmp_path / 'junk.safetensors'}"])
    message = str(info.value)
    assert message.startswith(
        f"sampler.adversary_path: {tmp_path / 'junk.safetensors'} is not an adversary's weights ("
    )
    assert "\n" not in message


def test_the_adversarial_recipe_wires_adversarial_amp():
    from debate_amp.agents.wiring import recipe_amp, recipe_sampler

    cfg = load_config("recipes/adversarial_ida.yaml")
    sampler = recipe_sampler(cfg, seed=0, adversary=Uninformed(0.1))
    amp = recipe_amp(cfg, SyntheticHuman(PermHuman()), ModelAgent(generate()), sampler)
    assert isinstance(amp, AdversarialAmp) and amp.sampler.temperature == cfg.sampler.temperature
    assert amp.sampler.confidence == cfg.sampler.confidence and amp.max_rounds == cfg.amp.max_rounds


def test_a_generation_and_a_trace_give_the_same_lowest_log_probability():
    generation = Generation(["7", "?", "x"], [[55, 2], [], [9]], [[-0.25, -3.5], [], [-0.0]])
    assert generation.min_logprobs() == [-3.5, None, -0.0]
    posed = Posed("answer", PermQuestion((1, 0), 0, 1))
    traces = [
        Trace("model:policy", posed, t, logprobs=lps or None)
        for t, lps in zip(generation.texts, generation.logprobs, strict=True)
    ]
    assert [t.min_logprob() for t in traces] == generation.min_logprobs()
