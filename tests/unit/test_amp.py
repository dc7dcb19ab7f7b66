"""Approx / Amp / Amp~ with the synthetic human and a perfect scripted model (DESIGN.md sections 2-3)."""

import asyncio
import math
import random

import pytest

from debate_amp.agents.humans.synthetic import SyntheticHuman
from debate_amp.agents.model_agent import ModelAgent
from debate_amp.combinators import Amp, Approx, amp_approx
from debate_amp.protocol import UNKNOWN, Generation, Posed
from debate_amp.samplers import Always, Bernoulli, Budget, Confidence, Never, build_sampler
from debate_amp.tasks.perm import (
    PermHuman,
    PermQuestion,
    PermTask,
    depth_of,
    judge_winner,
    parse_prompt,
    perfect_generate,
    perfect_reply,
)
from debate_amp.trainer.metrics import unanswered
from debate_amp.trainer.rollout import amplification_examples, balanced_by_depth

K = 15
# 64 questions, every k in 0..K four times, on random permutations of 8 elements.
QUESTIONS = [PermQuestion(q.sigma, q.x, i % (K + 1)) for i, q in enumerate(PermTask(8, K).questions(64, seed=0))]


class Counting:
    """A generate function that counts its calls and batch sizes."""

    def __init__(self, inner):
        self.inner, self.batches = inner, []

    def __call__(self, prompts, limits=None):
        self.batches.append(len(prompts))
        return self.inner(prompts, limits)


def run_all(agent, questions):
    async def main():
        return await asyncio.gather(*(agent(Posed("answer", q)) for q in questions))

    return asyncio.run(main())


def perfect_policy(max_batch=256):
    return ModelAgent(Counting(perfect_generate), role="policy", max_batch=max_batch)


@pytest.mark.parametrize("sampler", [Never(), Always(), Bernoulli(0.5, seed=1)], ids=["never", "always", "bernoulli"])
def test_amp_approx_answers_every_k_exactly(sampler):
    human = SyntheticHuman(PermHuman())
    model = perfect_policy()
    replies = run_all(amp_approx(human, model, sampler), QUESTIONS)
    assert [r.text for r in replies] == [str(q.gold) for q in QUESTIONS]
    assert {q.k for q in QUESTIONS} == set(range(K + 1))
    steps = [
        node
        for r in replies
        for node in r.trace.walk()
        if node.posed.kind == "step" and node.replaced is None and node.op == ""
    ]
    if isinstance(sampler, Never):
        assert human.calls == 0
        assert all(node.who == "policy" for node in steps)
    if isinstance(sampler, Always):
        human_steps = [n for r in replies for n in r.trace.walk() if n.posed.kind == "step" and n.who == "human"]
        # every step question was answered by the human, and M was not asked to draft one: the sampler never
        # looks at a draft (Bernoulli(1.0) below drafts and keeps both)
        assert all(n.replaced is None for n in human_steps)
        assert not [n for r in replies for n in r.trace.walk() if n.posed.kind == "step" and n.who == "policy"]
        assert human.calls == sum(r.trace.total_human_calls() for r in replies) == len(human_steps)
        # k <= 1: one step; otherwise decompose + integrate
        assert human.calls == sum(1 if q.k <= 1 else 2 for q in QUESTIONS)


def _steps_only_generate(prompts, limits=None):
    """A model whose steps and lookups are perfect but that does not know any k >= 2 when asked directly."""
    texts = []
    for prompt in prompts:
        posed = parse_prompt(prompt)
        if posed is not None and posed.kind == "answer" and posed.question.k >= 2:
            texts.append(UNKNOWN)
        else:
            texts.append(perfect_reply(prompt))
    return Generation(texts, [[] for _ in texts], [[] for _ in texts])


def _broken_steps_generate(prompts, limits=None):
    """A perfect model whose decompositions broke as one in recipes/pure_amplification.yaml's did after an update
    (``ask 0^3;#1^3`` came out ``ask 0^3^3^^3``); its one-step answers (k <= 1) are still right."""
    texts = [perfect_reply(p).replace(";#1", "^3^") for p in prompts]
    return Generation(texts, [[] for _ in texts], [[] for _ in texts])


def test_unanswered_is_the_share_of_trees_that_ended_without_an_answer():
    assert unanswered(run_all(amp_approx(SyntheticHuman(PermHuman()), perfect_policy(), Never()), QUESTIONS)) == 0.0
    broken = run_all(amp_approx(SyntheticHuman(PermHuman()), ModelAgent(_broken_steps_generate), Never()), QUESTIONS)
    assert [r.text == UNKNOWN for r in broken] == [q.k >= 2 for q in QUESTIONS]
    assert unanswered(broken) == 56 / 64  # k = 0..15 four times each: every k >= 2 tree ends with "?"
    assert math.isnan(unanswered([]))


@pytest.mark.parametrize("levels", [1, 2, 3])
def test_amp_applied_n_times_is_right_up_to_depth_n_on_a_model_that_only_knows_steps(levels):
    # Amp~^n(H, M) rests on M's direct answers n levels down: depth d <= n is exact, deeper is wrong.
    replies = run_all(
        amp_approx(SyntheticHuman(PermHuman()), ModelAgent(_steps_only_generate), Never(), levels=levels), QUESTIONS
    )
    for reply, q in zip(replies, QUESTIONS, strict=True):
        assert reply.text == (str(q.gold) if depth_of(q.k) <= levels else UNKNOWN), (q.k, levels)
    with pytest.raises(ValueError, match="levels"):
        amp_approx(SyntheticHuman(PermHuman()), ModelAgent(_steps_only_generate), Never(), levels=0)


def test_every_trace_node_records_its_provenance():
    human = SyntheticHuman(PermHuman())
    replies = run_all(amp_approx(human, perfect_policy(), Bernoulli(0.5, seed=0)), QUESTIONS)
    sources = {node.source for r in replies for node in r.trace.walk()}
    assert sources <= {"human:synthetic", "model:policy"}
    root = replies[-1].trace
    assert root.op == "amp" and root.posed.kind == "answer"
    if QUESTIONS[-1].k >= 2:
        kinds = [c.posed.kind for c in root.children]
        assert kinds == ["step", "answer", "answer", "step"]
        assert [c.posed.question.k for c in root.children[1:3]] == [QUESTIONS[-1].k // 2] * 2


def test_budget_caps_hold_exactly():
    human = SyntheticHuman(PermHuman())
    budget = Budget(Always(), per_update=7, per_run=10)
    run_all(amp_approx(human, perfect_policy(), budget), QUESTIONS)
    assert human.calls == 7 and budget.update_calls == 7
    budget.new_update()
    run_all(amp_approx(human, perfect_policy(), budget), QUESTIONS)
    assert human.calls == 10 and budget.run_calls == 10  # the run cap binds before the update cap
    budget.new_update()
    run_all(amp_approx(human, perfect_policy(), budget), QUESTIONS)
    assert human.calls == 10


def test_wave_batching_one_generate_per_wave():
    # 64 concurrent Amp~ calls: wave 1 = every first step; 2 and 3 = the dependent subquestions; 4 = integration.
    model = perfect_policy()
    run_all(amp_approx(SyntheticHuman(PermHuman()), model, Never()), QUESTIONS)
    n_decomposed = sum(q.k >= 2 for q in QUESTIONS)
    assert model.generate_fn.batches == [64, n_decomposed, n_decomposed, n_decomposed]
    assert model.batcher.waves == 4 and model.batcher.generate_calls == 4


def test_waves_split_by_max_batch():
    model = perfect_policy(max_batch=16)
    run_all(amp_approx(SyntheticHuman(PermHuman()), model, Never()), QUESTIONS)
    assert model.batcher.waves == 4
    assert model.generate_fn.batches[:4] == [16, 16, 16, 16]


def test_two_models_share_waves():
    policy, target = perfect_policy(), ModelAgent(Counting(perfect_generate), role="target")

    async def main():
        a = [policy(Posed("answer", q)) for q in QUESTIONS]
        b = [target(Posed("answer", q)) for q in QUESTIONS[:10]]
        return await asyncio.gather(*a, *b)

    asyncio.run(main())
    assert policy.generate_fn.batches == [64] and target.generate_fn.batches == [10]


def _scripted(replies):
    def run(prompts, limits=None):
        texts = [replies(p) for p in prompts]
        return Generation(texts, [[5] for _ in texts], [[-0.1] for _ in texts])

    return run


@pytest.mark.parametrize("step_text", ["hello", "ask 99^2;#1^2", "ask only-one", "", "ans"])
def test_output_that_does_not_parse_is_data(step_text):
    model = ModelAgent(_scripted(lambda p: step_text if p.endswith("S=") else "3"))
    q = PermQuestion((1, 2, 0), 0, 6)
    (reply,) = run_all(Amp(model, model), [q])
    assert reply.text == UNKNOWN
    assert reply.trace.op == "amp"


def test_a_tree_whose_subquestions_do_not_parse_amplified_nothing():
    """M asked two subquestions that are not questions (their answers ``?``), then answered itself: its own reply,
    nothing amplification added, so nothing to distil (as a tree of one step); one real subquestion is enough."""
    from debate_amp.trainer.rollout import amplified

    def model(asked):
        return ModelAgent(_scripted(lambda p: ("ans 0" if "#1=" in p else asked) if p.endswith("S=") else "2"))

    q = PermQuestion((1, 2, 0), 0, 6)
    ((garbled,), (one_real,)) = (run_all(Amp(model(asked), model(asked)), [q]) for asked in ("ask x;y", "ask 0^3;y"))
    assert garbled.text == one_real.text == "0" and [c.source for c in garbled.trace.children[1:3]] == ["unparsed"] * 2
    assert not amplified(garbled.trace) and amplification_examples([garbled]) == []
    assert amplified(one_real.trace) and [e.kind for e in amplification_examples([one_real])] == ["amplified"]


def test_amp_that_never_answers_stops_after_max_rounds():
    model = ModelAgent(_scripted(lambda p: "ask 0^1;1^1" if p.endswith("S=") else "1"))
    (reply,) = run_all(Amp(model, model, max_rounds=3), [PermQuestion((1, 2, 0), 0, 6)])
    assert reply.text == UNKNOWN
    assert [c.posed.kind for c in reply.trace.children] == ["step", "answer", "answer"] * 3 + ["step"]


def test_approx_keeps_both_replies():
    human, model = SyntheticHuman(PermHuman()), perfect_policy()
    (reply,) = run_all(Approx(human, model, Bernoulli(1.0, seed=0)), [PermQuestion((1, 2, 0), 0, 1)])
    assert reply.text == "1" and reply.trace.who == "human" and reply.trace.replaced.who == "policy"
    assert sum(model.generate_fn.batches) == 1


def test_approx_with_every_call_the_humans_does_not_ask_the_model():
    human, model = SyntheticHuman(PermHuman()), perfect_policy()
    (reply,) = run_all(Approx(human, model, Always()), [PermQuestion((1, 2, 0), 0, 1)])
    assert reply.text == "1" and reply.trace.who == "human" and reply.trace.replaced is None
    assert model.generate_fn.batches == [] and human.calls == 1


def test_amp_approx_poses_a_judgment_to_m_as_the_askers_step_never_directly():
    # The judge Amp~(H, M_target) is M's draft of the human's step towards the verdict (`` SW=``, reply ``ans
    # odd``), not M's direct reply (`` W=``): a model taught only the direct form has not learned the judge the
    # debates use (docs/training.md, twenty-third session: 95% on the direct form, 50.5% on the step).
    prompts: list[str] = []

    def record(texts, limits=None):
        prompts.extend(texts)
        return perfect_generate(texts, limits)

    amp = amp_approx(SyntheticHuman(PermHuman()), ModelAgent(record, role="policy"), Never())
    q = PermQuestion((4, 6, 2, 7, 0, 5, 1, 3), 6, 3)
    for context in [("agree",), ("6^3=7 via 1", "no 6^1=0")]:
        prompts.clear()
        reply = asyncio.run(amp(Posed("winner", q, context)))
        assert [p[-4:] for p in prompts] == [" SW="] and reply.text == judge_winner(q, context), prompts


def test_samplers():
    draft = run_all(ModelAgent(_scripted(lambda p: "1")), [PermQuestion((1, 0), 0, 1)])[0]
    posed = draft.trace.posed
    assert Confidence(threshold=-0.05)(posed, draft) and not Confidence(threshold=-0.5)(posed, draft)
    b = Bernoulli(0.3, seed=2)
    assert 0.27 < sum(b(posed, draft) for _ in range(5000)) / 5000 < 0.33
    assert isinstance(build_sampler("bernoulli", p=0.2, per_update=3), Budget)
    with pytest.raises(ValueError, match="unknown sampler"):
        build_sampler("oracle")


def test_tiny_model_64_concurrent_amp_approx_one_generate_per_wave(tiny_model):
    from debate_amp.generation import hf_generate_fn

    model, tokenizer = tiny_model
    policy = ModelAgent(Counting(hf_generate_fn(model, tokenizer, max_new_tokens=8)), role="policy")
    human = SyntheticHuman(PermHuman())
    replies = run_all(amp_approx(human, policy, Bernoulli(1.0, seed=0)), QUESTIONS)  # M drafts every step
    model_nodes = [n for r in replies for n in r.trace.walk() if n.who == "policy" and n.op == ""]
    assert policy.generate_fn.batches[0] == 64
    assert policy.batcher.generate_calls == policy.batcher.waves == len(policy.generate_fn.batches) <= 4
    assert sum(policy.generate_fn.batches) == len(model_nodes)
    assert all(len(n.token_ids) == len(n.logprobs) > 0 for n in model_nodes)


def test_a_frozen_local_model_can_be_the_human(tiny_model, tmp_path):
    from debate_amp.agents.humans import build_human
    from debate_amp.agents.labels import LabelStore
    from debate_amp.config import HumanConfig
    from debate_amp.models import save_model

    model, tokenizer = tiny_model
    save_model(model, tokenizer, tmp_path / "judge")
    store = LabelStore(tmp_path / "labels.sqlite")
    human = build_human(HumanConfig(kind="model", model_path=str(tmp_path / "judge")), PermTask(), store=store)
    replies = run_all(amp_approx(human.agent, perfect_policy(), Always()), QUESTIONS[:8])
    human_nodes = [n for r in replies for n in r.trace.walk() if n.who == "human" and not n.op]
    assert human_nodes and all(n.source == "human:model" and n.human_calls == 1 for n in human_nodes)
    assert human.calls == len(human_nodes) == len(store)  # every answer counted and stored before use
    store.close()


@pytest.mark.parametrize("levels", [1, 2])
def test_every_amplified_answer_in_a_tree_is_distilled_and_each_is_right(levels):
    # k = 6 decomposes into 3^3 and #1^3. One level: the root is amplified, its subquestions are M's own answers
    # (not distilled). Two levels: the two k = 3 subquestions were answered by Amp~(H, M) as well.
    q = PermQuestion((3, 7, 0, 1, 6, 2, 5, 4), 5, 6)
    replies = run_all(amp_approx(SyntheticHuman(PermHuman()), perfect_policy(), Never(), levels=levels), [q])
    examples = amplification_examples(replies)
    assert [e.kind for e in examples] == ["amplified"] * (2 * levels - 1)
    for example in examples:
        posed = parse_prompt(example.prompt)
        assert posed is not None and example.completion == str(posed.question.gold)
    assert sorted(parse_prompt(e.prompt).question.k for e in examples) == ([6] if levels == 1 else [3, 3, 6])


def test_without_imitating_the_human_only_the_amplified_answers_are_distilled():
    # The human makes every step (sampler always): imitating it distils its decompositions and integrations too;
    # trainer.imitate_human=false leaves M the amplified answers alone (Christiano et al.'s division of labour).
    q = PermQuestion((3, 7, 0, 1, 6, 2, 5, 4), 5, 6)
    replies = run_all(amp_approx(SyntheticHuman(PermHuman()), perfect_policy(), Always(), levels=2), [q])
    imitated = amplification_examples(replies)
    assert sorted(e.kind for e in imitated) == ["amplified"] * 3 + ["step"] * 6  # 3 nodes: decompose + integrate
    alone = amplification_examples(replies, imitate_human=False)
    assert [e.kind for e in alone] == ["amplified"] * 3
    assert {(e.prompt, e.completion) for e in alone} == {
        (e.prompt, e.completion) for e in imitated if e.kind == "amplified"
    }


def test_balanced_depths_keep_at_each_depth_as_many_amplified_answers_as_the_deepest_has():
    # amp.balance_depths: k = 6 on two levels is its root (depth 2) and two k = 3 subanswers (depth 1); a k = 2 root
    # (depth 1) has two k = 1 subanswers (depth 0). Over four k = 6 trees and one k = 2 tree: all 4 roots at depth 2,
    # 4 of the 9 answers at depth 1, both at depth 0, and every one of the human's steps (imitated, not amplified).
    sigma = (3, 7, 0, 1, 6, 2, 5, 4)
    questions = [PermQuestion(sigma, x, 6) for x in range(4)] + [PermQuestion(sigma, 5, 2)]
    replies = run_all(amp_approx(SyntheticHuman(PermHuman()), perfect_policy(), Always(), levels=2), questions)
    every = amplification_examples(replies)
    kept = amplification_examples(replies, balance_rng=random.Random(0))

    def depths(examples):
        return sorted(depth_of(parse_prompt(e.prompt).question.k) for e in examples if e.kind == "amplified")

    assert depths(every) == [0] * 2 + [1] * 9 + [2] * 4
    assert depths(kept) == [0] * 2 + [1] * 4 + [2] * 4
    assert [e for e in every if e.kind != "amplified"] == [e for e in kept if e.kind != "amplified"]
    rest = iter(every)
    assert all(any(e == f for f in rest) for e in kept)  # a subsample, in the trees' order
    # which ones are kept is the generator's draw; with none to thin out, everything stays
    draws = {tuple(balanced_by_depth([2, 1, 1, None, 0, 0, 0, 1], random.Random(seed))) for seed in range(20)}
    assert len(draws) > 1 and all(len(d) == 4 and 0 in d and 3 in d for d in draws)
    assert all(len({1, 2, 7} & set(d)) == 1 and len({4, 5, 6} & set(d)) == 1 for d in draws)
    assert balanced_by_depth([None, 1, 1], random.Random(0)) == [0, 1, 2]
    assert balanced_by_depth([None, None], random.Random(0)) == [0, 1]


def test_every_command_gets_the_recipes_sampler_with_its_budgets_and_one_human_record():
    from debate_amp.agents.humans import build_human
    from debate_amp.agents.wiring import recipe_sampler
    from debate_amp.config import HumanConfig, load_config

    cfg = load_config(None, ["sampler.kind=always", "sampler.per_update=3", "sampler.per_run=5"])
    sampler = recipe_sampler(cfg, seed=0)
    assert isinstance(sampler, Budget) and (sampler.per_update, sampler.per_run) == (3, 5)
    human = build_human(HumanConfig(error_rate=0.5), PermTask(), seed=3)
    replies = run_all(amp_approx(human.agent, perfect_policy(), sampler), QUESTIONS[:4])
    human_nodes = [n for r in replies for n in r.trace.walk() if n.who == "human" and not n.op]
    assert human.calls == len(human_nodes) == 3  # the per-update cap
    assert human.rng is human.source.rng  # the generator behind error_rate, which checkpoints save
