"""IDA's round dataset: Amplify(H, A[t]) with A[t] frozen, and the share of earlier rounds' examples."""

import random

import torch

from debate_amp.agents.humans import build_human
from debate_amp.agents.wiring import recipe_generate_fn
from debate_amp.config import TINY_OVERRIDES, load_config
from debate_amp.models import load_model
from debate_amp.tasks import Example, make_task
from debate_amp.trainer.ida import amplify_round, earlier_examples
from debate_amp.trainer.rollout import amplification_examples, used_nodes


def test_round_t_dataset_is_amp_of_the_human_and_a_frozen_a_t():
    # The sampler hands every asker step to H, so that the untrained A[t]'s trees hold H's decompositions with
    # A[t]'s answers to the subquestions: the amplified answers integrate what A[t] said.
    cfg = load_config(None, [*TINY_OVERRIDES, "sampler.kind=always", "generation.max_answer_tokens=4"])
    task = make_task(cfg)
    model, tokenizer = load_model(cfg.model, None, seed=0)
    model.train()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    seen = []  # (training mode, gradients enabled, any parameter trainable) at each forward of A[t]
    hook = model.register_forward_hook(
        lambda module, args, out: seen.append(
            (module.training, torch.is_grad_enabled(), any(p.requires_grad for p in module.parameters()))
        )
    )
    questions = [task.sample(random.Random(i), max_depth=1, min_depth=1) for i in range(6)]
    human = build_human(cfg.human, task, seed=0)
    replies, examples = amplify_round(cfg, human, model, tokenizer, questions, seed=0)
    hook.remove()

    # A[t] was frozen while it answered, and its weights are those it started with; afterwards it trains again.
    assert seen and set(seen) == {(False, False, False)}
    assert all(torch.equal(before[name], p) for name, p in model.named_parameters())
    assert model.training and all(p.requires_grad for p in model.parameters())

    # Every model node of the trees is A[t]'s own greedy reply to that posed question.
    model_nodes = [n for r in replies for n in used_nodes(r.trace) if n.source == "model:policy" and not n.op]
    assert model_nodes
    generate_fn = recipe_generate_fn(cfg, model, tokenizer, temperature=0.0)
    for node in model_nodes[:8]:
        assert generate_fn([node.posed.render()], [4]).texts == [node.text]

    # The round's examples are exactly the trees' amplified answers and H's answers, by question.
    expected = [(e.prompt, e.completion, e.kind) for r in replies for e in amplification_examples([r])]
    assert [(e.prompt, e.completion, e.kind) for e in examples] == expected
    assert "step" in {e.kind for e in examples} and human.calls > 0
    assert all(e.difficulty in (2, 3) for e in examples)  # labelled by the question they came from


def test_earlier_examples_are_the_keep_previous_share_of_the_round():
    pool = [Example(f"q{i}", "a", "answer", 0) for i in range(100)]
    rng = random.Random(0)
    assert len(earlier_examples(pool, 30, 0.5, rng)) == 30  # as many old as new
    assert len(earlier_examples(pool, 30, 0.25, rng)) == 10  # a quarter of the 40
    assert earlier_examples(pool, 30, 0.0, rng) == []
    assert len(earlier_examples(pool[:7], 30, 0.5, rng)) == 7  # all there is
    drawn = earlier_examples(pool, 30, 0.5, rng)
    assert len({e.prompt for e in drawn}) == 30  # without replacement
