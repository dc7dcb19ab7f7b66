"""The trainer's behaviour on the tiny model (issue 5's acceptance tests), each a real run of a few updates."""

import json
import math

import pytest
import torch

from debate_amp.config import TINY_OVERRIDES, load_config
from debate_amp.debate.transcript import read_transcripts
from debate_amp.models import load_model
from debate_amp.target import load_target_tensors, parameter_distance
from debate_amp.trainer import checkpoint
from debate_amp.trainer.sft import warm_start_examples

# The trainer's generic behaviour is tested on the plain sampler, self-play only: recipes/default.yaml's adversary and
# its debates against the liar made every tiny run of it about twice as slow (the suite 6 min 40 s -> 11 min 40 s).
# Those two have tests of their own (here, test_distributed.py, test_adversary.py).
TINY = [*TINY_OVERRIDES, "sampler.kind=bernoulli", "debate.liar_fraction=0.0"]


def run(tmp_path, name, *overrides, recipe="recipes/default.yaml"):
    from debate_amp.trainer.loop import train

    cfg = load_config(recipe, [*TINY, f"run.output_dir={tmp_path}", f"run.name={name}", *overrides])
    summary = train(cfg, progress=False)
    return cfg, summary


def metrics(cfg):
    return [json.loads(line) for line in (cfg.run_dir / "metrics.jsonl").read_text().splitlines()]


def tensorboard_steps(run_dir):
    """{tag: [step, ...]} of the scalars in the run's TensorBoard event files (all of them, a resumed run's too)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [e.step for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def logged_steps(rows, ks, final_steps):
    """The steps each tag should have in TensorBoard: every metrics.jsonl value but NaN, and the final held-out
    accuracy for each k in ``ks`` (``eval/answer_accuracy_k<k>``) at each of ``final_steps`` (where a run ended)."""
    tags = sorted({tag for row in rows for tag in row} - {"update"})
    steps = {tag: [r["update"] for r in rows if not math.isnan(r.get(tag, math.nan))] for tag in tags}
    steps |= {f"eval/answer_accuracy_k{k}": list(final_steps) for k in ks}
    return {tag: s for tag, s in steps.items() if s}


def test_an_update_changes_the_weights_and_leaves_the_run_on_disk(tmp_path):
    cfg, summary = run(
        tmp_path, "one", "trainer.updates=2", "debate.force_stop_p=0.0", "debate.force_stop_anneal.end=null"
    )
    initial, _ = load_model(cfg.model, None, seed=cfg.run.seed)
    trained, _ = load_model(cfg.model, cfg.run_dir / "model")
    assert parameter_distance(initial, trained) > 1e-4
    assert (cfg.run_dir / "config.yaml").is_file() and list((cfg.run_dir / "tensorboard").glob("events.*"))
    # run.log_with=[tensorboard] (the default): through accelerate, every tag of metrics.jsonl at its update
    assert tensorboard_steps(cfg.run_dir) == logged_steps(
        metrics(cfg), summary["report"].difficulties(), final_steps=[2]
    )
    files = sorted((cfg.run_dir / "transcripts").glob("update_*.jsonl"))
    assert [f.name for f in files] == ["update_000001.jsonl", "update_000002.jsonl"]
    assert len(list(read_transcripts(files[0]))) == 8
    rows = metrics(cfg)
    assert [r["update"] for r in rows] == [1, 2]
    for tag in (
        "objective/reward_even",
        "loss/policy",
        "objective/sup_loss",
        "debate/mean_turns",
        "amp/human_calls",
        "amp/unanswered",
        "target/policy_target_kl",
        "perf/rollout_s",
        "policy/clipfrac",
        "value/explained_variance",
    ):
        assert tag in rows[0], tag
    assert rows[0]["rl/segments"] > 0 and rows[0]["objective/sup_loss"] > 0
    # PPO minibatches of trainer.minibatch_size segments, however many imitation examples share the epoch's steps
    # (spreading the segments over every step took ~20 times the PPO steps in the default run: docs/training.md)
    t = cfg.trainer
    for r in rows:
        assert r["rl/steps"] == t.ppo_epochs * math.ceil(r["rl/segments"] / t.minibatch_size), r
    assert summary["report"].difficulties() == list(range(8))


def test_pure_debate_without_debates_to_learn_from_takes_no_step(tmp_path):
    # alpha 1 gives L_sup no weight; every debate stopped by force gives no RL segment: nothing to learn, so no
    # optimizer step is taken (a step on a zero gradient still moves the weights: AdamW's momentum and weight decay).
    cfg, _ = run(
        tmp_path,
        "idle",
        "trainer.updates=1",
        "objective.alpha=1.0",
        "objective.anneal.kind=constant",
        "objective.anneal.end=null",
        "debate.force_stop_p=1.0",
        "debate.force_stop_anneal.end=null",
    )
    (row,) = metrics(cfg)
    assert row["rl/segments"] == 0 and row["rl/steps"] == 0 and row["objective/sup_loss"] > 0  # L_sup measured
    initial, _ = load_model(cfg.model, None, seed=cfg.run.seed)
    trained, _ = load_model(cfg.model, cfg.run_dir / "model")
    assert parameter_distance(initial, trained) == 0.0


def test_alpha_and_force_stop_p_follow_their_schedules(tmp_path):
    cfg, _ = run(
        tmp_path,
        "sched",
        "trainer.updates=3",
        "objective.alpha=0.1",
        "objective.anneal.kind=linear",
        "objective.anneal.end=0.5",
        "debate.force_stop_p=0.9",
        "debate.force_stop_anneal.kind=cosine",
        "debate.force_stop_anneal.end=0.0",
    )
    rows = metrics(cfg)
    assert [round(r["objective/alpha"], 6) for r in rows] == [0.1, 0.3, 0.5]
    # cosine from 0.9 to 0: 0.9, 0.45, 0 at progress 0, 1/2, 1
    assert [round(r["objective/force_stop_p"], 6) for r in rows] == [0.9, 0.45, 0.0]
    records = [json.loads(line) for line in (cfg.run_dir / "transcripts" / "update_000002.jsonl").open()]
    assert {round(r["force_stop_p"], 9) for r in records} == {0.45} and {round(r["alpha"], 9) for r in records} == {0.3}


def test_constrained_with_zero_multiplier_and_no_limit_equals_weighted_alpha_one(tmp_path):
    # (L_rl + 0 * L_sup) / (1 + 0) = 1 * L_rl + 0 * L_sup: the same first update, to floating-point tolerance.
    # The human argues and judges (sampler always), so verdicts and rewards are real; the model answers subquestions.
    common = [
        "trainer.updates=1",
        "debate.force_stop_p=0.0",
        "debate.force_stop_anneal.end=null",
        "sampler.kind=always",
    ]
    cfg_c, _ = run(
        tmp_path,
        "constrained",
        *common,
        "objective.mode=constrained",
        "objective.lagrange_init=0.0",
        "objective.limit_kind=absolute",
        "objective.limit=.inf",
    )
    cfg_w, _ = run(tmp_path, "weighted", *common, "objective.mode=weighted", "objective.alpha=1.0")
    a, _ = load_model(cfg_c.model, cfg_c.run_dir / "model")
    b, _ = load_model(cfg_w.model, cfg_w.run_dir / "model")
    initial, _ = load_model(cfg_w.model, None, seed=0)
    assert parameter_distance(initial, b) > 1e-4  # the update did something
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-5)
    rc, rw = metrics(cfg_c)[0], metrics(cfg_w)[0]
    assert rc["loss/total"] == pytest.approx(rw["loss/total"], rel=1e-5)


def test_pure_amplification_has_one_argument_and_no_rl_loss(tmp_path):
    cfg, _ = run(tmp_path, "pa", "trainer.updates=2", recipe="recipes/pure_amplification.yaml")
    for path in (cfg.run_dir / "transcripts").glob("*.jsonl"):
        assert all(len(r["turns"]) == 1 and r["continues"][0]["forced"] for r in read_transcripts(path))
    for row in metrics(cfg):
        assert row["rl/segments"] == 0 and row["loss/policy"] != row["loss/policy"]  # NaN: no RL loss
        assert row["objective/sup_loss"] > 0 and row["debate/mean_turns"] == 1.0


def test_where_the_human_decomposes_m_learns_only_to_answer(tmp_path, monkeypatch):
    # recipes/amplification_human_decomposes.yaml: A[0] imitates the human's direct answers alone, the human makes
    # every step, and an update distils what amplification made (answers, the one argument) and the rehearsal of
    # A[0]'s answers, none of the human's steps.
    from debate_amp.trainer import loop

    distilled: list[str] = []

    def spy(tokenizer, examples, real=loop.supervised_batch):
        distilled.extend(e.kind for e in examples)
        return real(tokenizer, examples)

    monkeypatch.setattr(loop, "supervised_batch", spy)
    cfg, _ = run(
        tmp_path,
        "hd",
        "trainer.updates=2",
        "trainer.warm_start=true",
        "sampler.kind=always",  # the recipe's (TINY sets bernoulli)
        recipe="recipes/amplification_human_decomposes.yaml",
    )
    heldout = json.loads((cfg.run_dir / "sft" / "heldout.json").read_text())
    assert heldout["human_calls"] == cfg.sft.n_examples and heldout["step"] == heldout["integrate"] == {}
    # the debates' one argument and verdict are amplified outputs too; a step is the human's own
    assert {"amplified", "rehearsal:answer"} <= set(distilled) <= {"amplified", "argue", "winner", "rehearsal:answer"}
    for row in metrics(cfg):
        assert row["amp/human_calls"] > 0 and 0 < row["amp/human_call_fraction"] < 1  # M answers the subquestions


def test_a_fresh_student_learns_from_a0s_amplification_until_it_agrees_more_then_takes_over(tmp_path, monkeypatch):
    # trainer.student=fresh: M starts from new weights (run.seed + 100); A[0] is M_target and amplifies until M's
    # direct answers agree with the amplified ones more often than A[0]'s (and its drafts of the steps the human
    # answered with the human's at least as often: a separate test), then M_target := M and M amplifies.
    # The agreement is patched (M's, A[0]'s) to force each course: A[0] ahead throughout, M ahead after update 1.
    from debate_amp.trainer import loop

    sources: list[set[str]] = []  # per call of amplify: the models that answered inside the trees

    def spy(questions, amp, real=loop.amplify):
        replies = real(questions, amp)
        sources.append({n.source for r in replies for n in r.trace.walk() if n.source.startswith("model:")})
        return replies

    monkeypatch.setattr(loop, "amplify", spy)
    monkeypatch.setattr(loop, "_step_agreements", lambda *a, **k: (math.nan, math.nan))  # the answers decide here
    for m_ahead in (False, True):
        monkeypatch.setattr(
            loop, "_agreement", lambda agent, *a, ahead=m_ahead, **k: float((agent.role == "policy") == ahead)
        )
        sources.clear()
        name = "ahead" if m_ahead else "behind"
        cfg, summary = run(
            tmp_path, name, "trainer.updates=3", "trainer.student=fresh", recipe="recipes/pure_amplification.yaml"
        )
        rows = metrics(cfg)
        a0 = load_model(cfg.model, None, seed=cfg.run.seed)[0]  # trainer.warm_start=false: A[0] untrained
        init = load_model(cfg.model, None, seed=cfg.run.seed + 100)[0]
        trained = load_model(cfg.model, cfg.run_dir / "model")[0]
        assert parameter_distance(trained, init) < 0.05 < 0.5 < parameter_distance(trained, a0)
        latest = sorted((cfg.run_dir / "checkpoints").glob("update_*"))[-1]
        target = load_model(cfg.model, None, seed=999)[0]
        load_target_tensors(target, target, checkpoint.load_tensors(latest, "target_policy"))
        if not m_ahead:  # A[0] amplifies and judges throughout; nothing moves M_target
            assert summary["final"]["takeover"] is None and parameter_distance(target, a0) == 0.0
            assert sources == [{"model:target"}] * 3
            assert [(r["amp/student_agreement"], r["amp/a0_agreement"]) for r in rows] == [(0.0, 1.0)] * 3
        else:  # compared once (before update 1), taken over after it: M's answers from update 2 on
            assert summary["final"]["takeover"] == 1 and parameter_distance(target, a0) > 0.5
            assert sources == [{"model:target"}, {"model:policy"}, {"model:policy"}]
            assert (rows[0]["amp/student_agreement"], rows[0]["amp/a0_agreement"]) == (1.0, 0.0)
            assert all(math.isnan(r["amp/student_agreement"]) for r in rows[1:])


def test_a_fresh_student_takes_over_only_once_it_drafts_the_humans_steps_as_well_as_a0(tmp_path, monkeypatch):
    # Where the sampler hands some steps to the human in place of A[0]'s draft (bernoulli), M drafts the others once
    # it takes over: M's drafts of those steps and A[0]'s (the ones the human replaced) are compared with the human's
    # replies (the steps' own labels, no gold), for real here, and M ahead on the answers (patched) but behind on the
    # steps stays behind. Where the human makes every step (sampler.kind: always) there is no draft to compare: NaN,
    # the answers decide.
    from debate_amp.trainer import loop
    from debate_amp.trainer.rollout import replaced_steps

    compared: list[int] = []  # per call: how many of the human's steps replaced a draft

    def steps(agent, amplified, limit, real=loop._step_agreements):
        compared.append(sum(len(replaced_steps(r.trace)) for r in amplified))
        sources = {n.replaced.source for r in amplified for n in r.trace.walk() if n.replaced is not None}
        assert agent.role == "policy" and sources <= {"model:target"}  # M's greedy drafts, A[0]'s from the trees
        return real(agent, amplified, limit)

    monkeypatch.setattr(loop, "_step_agreements", steps)
    monkeypatch.setattr(loop, "_agreement", lambda agent, *a, **k: float(agent.role == "policy"))  # M ahead
    common = ["trainer.student=fresh", "sampler.kind=bernoulli", "sampler.p=0.5"]
    cfg, summary = run(tmp_path, "bernoulli", "trainer.updates=2", *common, recipe="recipes/pure_amplification.yaml")
    rows = metrics(cfg)  # compared before update 1 only: M took over after it
    assert len(compared) == 1 and compared[0] > 0
    # untrained M and A[0] (trainer.warm_start=false): neither drafts the human's steps
    assert (rows[0]["amp/student_step_agreement"], rows[0]["amp/a0_step_agreement"]) == (0.0, 0.0)
    assert math.isnan(rows[1]["amp/student_step_agreement"])
    assert summary["final"]["takeover"] == 1  # as good on the steps (0 = 0), ahead on the answers
    monkeypatch.setattr(loop, "_step_agreements", lambda *a, **k: (0.0, 1.0))  # A[0]'s drafts better
    cfg, summary = run(tmp_path, "behind", "trainer.updates=2", *common, recipe="recipes/pure_amplification.yaml")
    assert summary["final"]["takeover"] is None
    assert [(r["amp/student_step_agreement"], r["amp/a0_step_agreement"]) for r in metrics(cfg)] == [(0.0, 1.0)] * 2
    monkeypatch.setattr(loop, "_step_agreements", steps)
    compared.clear()
    cfg, summary = run(
        tmp_path,
        "always",
        "trainer.updates=1",
        "trainer.student=fresh",
        "sampler.kind=always",
        recipe="recipes/pure_amplification.yaml",
    )
    assert compared == [0] and summary["final"]["takeover"] == 1
    assert all(math.isnan(r["amp/student_step_agreement"]) for r in metrics(cfg))


def test_balanced_depths_distil_as_many_amplified_answers_at_each_depth_as_at_the_deepest(tmp_path, monkeypatch):
    # amp.balance_depths: two levels deep, the human decomposing every question, the subanswers pile up at the low
    # depths; balanced, each depth keeps as many as the deepest has (the same update's trees: the thinning draws
    # after the amplification), and amp/targets counts what is distilled.
    from collections import Counter

    from debate_amp.tasks.perm import parse_prompt
    from debate_amp.trainer import loop

    depths: list[list[int]] = []  # per supervised batch: the amplified answers' depths

    def spy(tokenizer, examples, real=loop.supervised_batch):
        depths.append([parse_prompt(e.prompt).question.depth for e in examples if e.kind == "amplified"])
        return real(tokenizer, examples)

    monkeypatch.setattr(loop, "supervised_batch", spy)
    counts = {}
    for balance in (False, True):
        depths.clear()
        cfg, _ = run(
            tmp_path,
            f"balance_{balance}",
            "trainer.updates=1",
            "amp.questions_per_update=64",
            "amp.curriculum=false",
            "sampler.kind=always",
            f"amp.balance_depths={balance}",
            recipe="recipes/pure_amplification.yaml",
        )
        counts[balance] = Counter(depths[0])
        assert metrics(cfg)[0]["amp/targets"] == len(depths[0])
    deepest = max(counts[False])
    assert counts[False][deepest] < max(counts[False].values())  # something to thin out
    assert counts[True] == {d: min(n, counts[False][deepest]) for d, n in counts[False].items()}


def test_reusing_the_previous_updates_examples_distils_each_in_two_updates(tmp_path, monkeypatch):
    # amp.reuse_previous: update u distils its own amplification examples and update u - 1's, in that order; the
    # amplified answers counted (amp/targets) are its own.
    from debate_amp.trainer import loop

    own: list[list] = []  # per update: what amplification_examples made
    batches: list[list] = []  # per update: the supervised batch's examples

    def made(*args, real=loop.amplification_examples, **kwargs):
        own.append(real(*args, **kwargs))
        return own[-1]

    def batched(tokenizer, examples, real=loop.supervised_batch):
        batches.append(list(examples))
        return real(tokenizer, examples)

    monkeypatch.setattr(loop, "amplification_examples", made)
    monkeypatch.setattr(loop, "supervised_batch", batched)
    overrides = ["trainer.updates=3", "amp.questions_per_update=16", "trainer.rehearsal_examples=0"]
    overrides += ["sampler.kind=always", "amp.curriculum=false", "amp.reuse_previous=true"]  # examples every update
    cfg, _ = run(tmp_path, "reuse", *overrides, recipe="recipes/pure_amplification.yaml")
    assert len(own) == len(batches) == 3 and all(own)
    for batch, expected in zip(batches, [own[0], own[1] + own[0], own[2] + own[1]], strict=True):
        assert batch[-len(expected) :] == expected  # after the debates' own examples
    assert [r["amp/targets"] for r in metrics(cfg)] == [sum(e.kind == "amplified" for e in o) for o in own]


def test_a_liar_fraction_debates_the_scripted_liar_in_training_and_logs_it_apart(tmp_path):
    # Pure amplification stops every self-play debate after arg_0; the liar's debates are debated in full, and
    # theirs are the update's only RL segments (the honest side's: the liar's arguments are scripted, not sampled).
    cfg, _ = run(
        tmp_path, "liar", "trainer.updates=2", "debate.liar_fraction=0.25", recipe="recipes/pure_amplification.yaml"
    )
    for row in metrics(cfg):
        assert row["debate/count"] == 6 and row["liar/count"] == 2  # round(0.25 * 8) of the 8 debates
        assert row["debate/mean_turns"] == 1.0 and row["debate/continue0_rate"] == 0.0  # self-play only
        assert row["liar/mean_turns"] >= 1.0 and 0.0 <= row["liar/honest_win_rate"] <= 1.0

    def records(folder):
        return [r for path in sorted(folder.glob("update_*.jsonl")) for r in read_transcripts(path)]

    # every debate is kept: self-play where `debate-amp eval RUN` reads, the liar's in transcripts/liar/
    self_play, liar = records(cfg.run_dir / "transcripts"), records(cfg.run_dir / "transcripts" / "liar")
    assert len(self_play) == 12 and not any("scripted" in r for r in self_play)
    assert all(len(r["turns"]) == 1 and r["continues"][0]["forced"] for r in self_play)
    assert [r["scripted"] for r in liar] == ["even", "odd"] * 2
    assert [r["question_id"] for r in liar] == ["u1-l0", "u1-l1", "u2-l0", "u2-l1"]
    for r in liar:
        assert not r["continues"] or not r["continues"][0].get("forced")
        sides = [t["side"] for t in r["turns"] if t["trace"]["source"] == "scripted:liar"]
        assert sides == [r["scripted"]] * len(sides)
    assert sum(row["rl/segments"] for row in metrics(cfg)) > 0


def test_hard_target_sync_copies_the_policy(tmp_path):
    cfg, _ = run(tmp_path, "hard", "trainer.updates=2", "target.mode=hard", "target.sync_every=1")
    rows = metrics(cfg)
    assert [r["target/updates"] for r in rows] == [1.0, 2.0]
    cfg2, _ = run(tmp_path, "hard2", "trainer.updates=2", "target.mode=hard", "target.sync_every=2")
    assert [r["target/updates"] for r in metrics(cfg2)] == [0.0, 1.0]
    cfg3, _ = run(tmp_path, "ema", "trainer.updates=2", "target.mode=ema", "target.tau=0.5")
    assert [r["target/updates"] for r in metrics(cfg3)] == [1.0, 2.0]


@pytest.mark.parametrize("recipe", ["pure_debate", "constrained", "reward_mode"])
def test_every_training_recipe_runs_an_update(tmp_path, recipe):
    cfg, summary = run(tmp_path, recipe, "trainer.updates=2", "sampler.kind=always", recipe=f"recipes/{recipe}.yaml")
    rows = metrics(cfg)
    assert len(rows) == 2 and all(r["loss/total"] == r["loss/total"] for r in rows)  # finite, not NaN
    if cfg.objective.mode == "constrained":
        # lambda_u = max(0, lambda_{u-1} + lr (L_sup,u - limit)), on the logged L_sup and limit
        # and each update's transcripts record lambda_{u-1}, the multiplier that weighted that update's L_sup
        o, previous = cfg.objective, cfg.objective.lagrange_init
        for u, r in enumerate(rows, start=1):
            recorded = [
                t["lagrange_multiplier"] for t in read_transcripts(cfg.run_dir / f"transcripts/update_{u:06d}.jsonl")
            ]
            assert recorded and all(lam == pytest.approx(previous, abs=1e-9) for lam in recorded)
            expected = max(0.0, previous + o.lagrange_lr * (r["objective/sup_loss"] - r["constraint/limit"]))
            assert r["constraint/lagrange_multiplier"] == pytest.approx(expected, abs=1e-9)
            previous = expected
        # the relative limit is 1.1 x L_sup before the first update, the same token mean as objective/sup_loss
        assert 0.7 < rows[0]["objective/sup_loss"] / (rows[0]["constraint/limit"] / o.limit) < 1.3
    if cfg.objective.mode == "reward":
        assert rows[0]["objective/reward_coef"] == pytest.approx(0.2) and rows[1][
            "objective/reward_coef"
        ] == pytest.approx(0.05)


def test_the_gpu_recipe_runs_on_a_local_model_directory_on_cpu(tmp_path, local_llama_dir):
    """hf_lora.yaml on a small local Llama directory (saved like a downloaded one): LoRA on every projection the
    recipe names, bf16, EMA target adapter, adapter-only checkpoints. The GPU itself is untested."""
    small = ["trainer.warm_start=false", "trainer.questions_per_update=8", "trainer.eval_size=8"]
    small += [
        "trainer.minibatch_size=16",
        "trainer.rehearsal_examples=32",
        "sft.n_examples=256",
        "generation.max_new_tokens=12",
    ]
    small += ["run.torch_threads=2", "trainer.updates=2", "trainer.save_every=1"]
    cfg = load_config("recipes/hf_lora.yaml", [f"model.path={local_llama_dir}", *small, f"run.output_dir={tmp_path}"])
    from debate_amp.trainer.loop import train

    train(cfg, progress=False)
    ckpt = cfg.run_dir / "checkpoints" / "update_000002"
    from safetensors.torch import load_file

    policy = load_file(str(ckpt / "policy.safetensors"))
    assert policy and all("lora_" in k for k in policy)
    assert any("gate_proj" in k for k in policy) and any("down_proj" in k for k in policy)
    rows = metrics(cfg)
    assert [r["target/updates"] for r in rows] == [1.0, 2.0]  # EMA: every update


def test_the_amplification_curriculum_goes_deeper_only_when_the_next_depth_is_right(tmp_path):
    # perm with k <= 7 has depths 0, 1, 2. Threshold 0: every probe passes, one level per update, then no probe.
    cfg, _ = run(tmp_path, "open", "trainer.updates=4", "amp.curriculum=true", "amp.curriculum_threshold=0.0")
    rows = metrics(cfg)
    assert [r["amp/depth"] for r in rows] == [0.0, 1.0, 2.0, 2.0]
    assert all(0.0 <= r["amp/probe_accuracy"] <= 1.0 for r in rows[:2])
    assert all(math.isnan(r["amp/probe_accuracy"]) for r in rows[2:])  # at the deepest level there is no probe
    # Threshold 1: the untrained model's amplified answers one level deeper are not all right; the depth stays.
    cfg, _ = run(tmp_path, "closed", "trainer.updates=2", "amp.curriculum=true", "amp.curriculum_threshold=1.0")
    assert [r["amp/depth"] for r in metrics(cfg)] == [0.0, 0.0]


def test_the_probe_draws_exactly_one_level_deeper():
    # The trainer's probe at curriculum depth d is ``task.at_depth(rng, d + 1, n)``.
    import random

    from debate_amp.tasks.add import AddTask
    from debate_amp.tasks.perm import PermTask

    task, rng = PermTask(n_elements=8, max_power=7), random.Random(0)
    assert {q.k for q in task.at_depth(rng, 1, 200)} == {2, 3}
    assert {q.k for q in task.at_depth(rng, 2, 200)} == {4, 5, 6, 7}
    assert task.at_depth(rng, 3, 200) == [] and task.at_depth(rng, 1, 0) == []
    assert not any(task.is_heldout(q.sigma) for q in task.at_depth(rng, 2, 200))  # training questions only
    add = AddTask(max_digits=6)
    assert {q.difficulty for q in add.at_depth(rng, 2, 200)} == {3, 4} and add.at_depth(rng, 4, 10) == []
    assert {q.difficulty for q in add.at_depth(rng, 3, 200)} == {5, 6}


def test_a_warm_start_of_the_humans_own_answers_holds_nothing_else():
    # sft.data=answers (for trainer.imitate_human=false): the human's direct answers to what it answers itself, a
    # function of the recipe, each one call; no steps, integrations or debate replies.
    from debate_amp.tasks.perm import parse_prompt

    cfg = load_config("recipes/pure_amplification.yaml", ["sft.data=answers", "sft.n_examples=600"])
    pool = warm_start_examples(cfg)
    assert pool == warm_start_examples(cfg) and len(pool) == 600
    assert {e.kind for e in pool} == {"answer"} and {e.difficulty for e in pool} == {0, 1}
    assert all(e.completion == str(parse_prompt(e.prompt).question.gold) for e in pool)  # the human errs never
    assert sum(e.human_calls for e in pool) == 600


def test_the_rehearsal_walks_through_the_warm_starts_own_examples_and_charges_only_what_it_did_not_pay():
    # The rehearsal draws the warm start's own examples (the judge's direct replies `` W=`` included: without them
    # the trained model's verdicts stop parsing, measured 9% in `make run`), each process its own slice, the whole
    # pool once before any example comes back. Labels the warm start paid for cost nothing again; without a warm
    # start in the run, each example costs its human calls the first time it is used.
    from types import SimpleNamespace

    from debate_amp.trainer.loop import _rehearsal
    from debate_amp.trainer.sft import warm_start_examples

    cfg = load_config("recipes/default.yaml", ["sft.n_examples=1000", "sft.debate_fraction=0.25"])
    pool = warm_start_examples(cfg)
    assert pool == warm_start_examples(cfg) and len(pool) == 1000  # a function of the recipe: what A[0] saw
    kinds = {e.kind for e in pool}
    assert {"answer", "step", "integrate"} <= kinds and {"winner", "sufficient", "catastrophe", "argue"} <= kinds
    assert any(e.kind == "winner" and e.prompt.endswith(" W=") for e in pool)

    two = [SimpleNamespace(num_processes=2, process_index=r) for r in (0, 1)]
    seen = []
    for update in range(2):
        for rank in two:
            examples, calls = _rehearsal(pool, 200, update, rank, paid=True)
            assert len(examples) == 200 and calls == 0
            seen += examples
    assert seen == pool[:800]  # disjoint slices, in turn

    one = SimpleNamespace(num_processes=1, process_index=0)
    charged = [_rehearsal(pool, 300, update, one, paid=False)[1] for update in range(5)]
    assert charged[:3] == [sum(e.human_calls for e in pool[i : i + 300]) for i in (0, 300, 600)]
    assert charged[3] == sum(e.human_calls for e in pool[900:]) and charged[4] == 0  # wrapped: nothing new
    assert sum(charged) == sum(e.human_calls for e in pool)


def test_log_with_nothing_writes_metrics_jsonl_and_no_events(tmp_path):
    cfg, _ = run(tmp_path, "quiet", "trainer.updates=1", "run.log_with=[]")
    assert [r["update"] for r in metrics(cfg)] == [1]
    assert not list(cfg.run_dir.rglob("events.out.tfevents.*"))


@pytest.mark.filterwarnings("ignore:`log_with=:UserWarning")  # accelerate's own, before ours
def test_a_tracker_accelerate_cannot_use_stops_the_run_before_any_work(tmp_path):
    from importlib.util import find_spec

    from debate_amp.config import TRACKER_MODULES, ConfigError
    from debate_amp.trainer.loop import train

    missing = [t for t, modules in TRACKER_MODULES.items() if not any(find_spec(m) for m in modules)]
    if not missing:
        pytest.skip("every tracker accelerate knows is installed here")
    # load_config refuses it; a Config made without that check (check_paths=False) is refused by train()
    overrides = [*TINY, f"run.output_dir={tmp_path}", "run.name=t", f"run.log_with=[{missing[0]}]"]
    cfg = load_config("recipes/default.yaml", overrides, check_paths=False)
    with pytest.raises(ConfigError, match=rf"^run.log_with: accelerate cannot use {missing[0]} here"):
        train(cfg, progress=False)
    assert not (tmp_path / "t").exists()


def test_adversarial_amplification_trains_its_adversary_logs_it_and_saves_it(tmp_path):
    """recipes/adversarial_ida.yaml (sampler.kind=adversary, references/000), two tiny updates."""
    from debate_amp.adversary import Adversary
    from debate_amp.trainer import checkpoint
    from debate_amp.trainer.state import _load_adversary

    fast = ("trainer.questions_per_update=4", "trainer.eval_size=2", "sampler.adversary_steps=4")
    fast += ("amp.questions_per_update=4", "debate.max_turns=1")  # 9 s, not 90: the untrained M's trees are deep
    fast += ("sampler.kind=adversary",)  # the recipe's own, which TINY sets to bernoulli
    cfg, summary = run(
        tmp_path, "adv", "trainer.updates=2", "trainer.max_minutes=null", *fast, recipe="recipes/adversarial_ida.yaml"
    )
    rows = metrics(cfg)
    assert len(rows) == 2
    # before update 1 it learned from M's drafts of the warm start's own prompts (tiny: the whole pool of 256), charged
    # as this run did not make A[0] (trainer.warm_start=false); the first update's log says so, the second does not
    pool = warm_start_examples(cfg)
    assert rows[0]["adversary/warm_start_examples"] == len(pool) == 256
    assert rows[0]["adversary/warm_start_human_calls"] == sum(e.human_calls for e in pool) > 0
    assert 0 <= rows[0]["adversary/warm_start_wrong_rate"] <= 1 and "adversary/warm_start_examples" not in rows[1]
    charged = sum(row["amp/human_calls"] + row["rehearsal/human_calls"] for row in rows)
    assert summary["human_calls"] == charged + rows[0]["adversary/warm_start_human_calls"]
    for row in rows:
        assert row["adversary/examples"] > 0 and row["amp/human_calls"] > 0
        assert math.isfinite(row["adversary/loss"]) and 0 <= row["adversary/wrong_rate"] <= 1
        for tag in ("adversary/auc", "adversary/confidence_auc", "adversary/ece", "adversary/heldout"):
            assert tag in row
    assert rows[-1]["adversary/heldout"] > 0 and summary["human_calls"] > 0
    assert "adversary/loss" in tensorboard_steps(cfg.run_dir)
    # the amplification trees are AdversarialAmp's: amplified answers with M's direct draft kept beside them
    records = [r for f in (cfg.run_dir / "transcripts").glob("*.jsonl") for r in read_transcripts(f)]
    nodes = [t["trace"] for r in records for t in r["turns"]]
    assert any(n.get("op") == "amp" and "replaced" in n for n in nodes)
    # the checkpoint keeps the adversary, and the end of the run saved the same weights
    latest = checkpoint.latest_checkpoint(cfg.run_dir / "checkpoints")
    restored = Adversary()
    _load_adversary(restored, checkpoint.load_tensors(latest, "adversary"), checkpoint.load_state(latest)["adversary"])
    saved = Adversary.load(cfg.run_dir / "adversary.safetensors", steps=3)  # sampler.adversary_path starts from it
    assert saved.steps == 3
    heldout = list(restored.heldout)[:16]
    assert heldout and restored.score_examples(heldout) == pytest.approx(saved.score_examples(heldout), abs=1e-6)
    # the labelled nodes carry M's confidence in its drafts (the policy's sampled log-probabilities)
    assert all(e.min_logprob is not None and e.min_logprob <= 0 for e in restored.train_buffer)


@pytest.mark.slow  # about 45 s: two tiny runs with their final tables
def test_the_human_efficiency_bench_runs_each_sampler_and_counts_its_calls(tmp_path):
    """make bench's human-efficiency comparison at the tiny size: one update per sampler from the same A[0]."""
    from debate_amp.bench import bench_human_efficiency
    from debate_amp.models import build_tiny_model, save_model

    save_model(*build_tiny_model(load_config("recipes/default.yaml", [*TINY]).model), tmp_path / "a0")
    samplers = {"bernoulli_1.0": ("sampler.p=1.0",), "adversary": ("sampler.kind=adversary", "amp.curriculum=false")}
    tiny = (*TINY, "trainer.updates=1", "amp.questions_per_update=4", "trainer.questions_per_update=4")
    tiny += ("debate.max_turns=1", "sampler.adversary_steps=4")
    results = bench_human_efficiency(tmp_path / "a0", 5, 0.0, samplers, str(tmp_path), tiny)
    assert results["human_efficiency_target"] == 0.0  # any accuracy reaches it: the calls of the first update
    curves = results["human_efficiency_curves"]
    assert set(curves) == set(samplers) and all(len(curve) == 1 for curve in curves.values())
    for name, ((calls, accuracy),) in curves.items():
        assert calls > 0 and 0.0 <= accuracy <= 1.0
        assert results["human_calls_to_target"][name] == calls
        lines = (tmp_path / f"human_efficiency_{name}" / "metrics.jsonl").read_text().splitlines()
        assert calls == sum(int(json.loads(line)["amp/human_calls"]) for line in lines)
        # the rehearsal (and the adversary's warm-up) replay the warm start's paid labels: reported apart, never in
        # the curve
        rows = [json.loads(line) for line in lines]
        rehearsed = sum(int(row["rehearsal/human_calls"]) for row in rows)
        warm_up = sum(int(row.get("adversary/warm_start_human_calls", 0)) for row in rows)
        assert results["human_efficiency_rehearsal_calls"][name] == rehearsed + warm_up and rehearsed > 0
        assert (warm_up > 0) == (name == "adversary")
    assert results["adversary_over_best_bernoulli"] == curves["adversary"][0][0] / curves["bernoulli_1.0"][0][0]


def test_the_training_clock_leaves_out_the_warm_starts_preparation_and_the_evaluations(tmp_path, monkeypatch):
    # make bench's amp_wall_ratio reads perf/train_s against the supervised curve's seconds, which start at the
    # first optimizer step and leave evaluation out; perf/elapsed_s counts everything since the run began. The
    # warm start's data preparation and the held-out evaluations are slowed here by known amounts: the gap between
    # the two clocks must hold them. The rehearsal reuses the warm start's examples rather than building them again.
    import time

    import debate_amp.trainer.loop as loop
    import debate_amp.trainer.sft as sft

    built, evaluated = [], []

    def slow_examples(cfg, real=sft.warm_start_examples):
        built.append(cfg.run.seed)
        time.sleep(1.0)
        return real(cfg)

    def slow_heldout(*args, real=loop._heldout_metrics, **kwargs):
        evaluated.append(1)
        time.sleep(0.5)
        return real(*args, **kwargs)

    monkeypatch.setattr(sft, "warm_start_examples", slow_examples)
    monkeypatch.setattr(loop, "warm_start_examples", slow_examples)
    monkeypatch.setattr(loop, "_heldout_metrics", slow_heldout)
    cfg, _ = run(tmp_path, "clock", "trainer.warm_start=true", "trainer.updates=2", "trainer.eval_every=1")
    assert len(built) == 1 and len(evaluated) == 2
    rows = metrics(cfg)
    gaps = [r["perf/elapsed_s"] - r["perf/train_s"] for r in rows]
    assert gaps[0] >= 1.0  # the warm start's examples (and its tokenizing, evaluating, saving)
    assert gaps[1] - gaps[0] >= 0.5  # update 1's held-out evaluation
    assert rows[1]["perf/train_s"] > rows[0]["perf/train_s"]
    warm_start = json.loads((cfg.run_dir / cfg.sft.output_subdir / "heldout.json").read_text())
    assert warm_start["train_seconds"] < rows[0]["perf/train_s"] < rows[0]["perf/elapsed_s"] - 1.0


def test_the_trainers_label_store_fsyncs_peoples_answers_and_only_commits_a_machines(tmp_path, monkeypatch):
    """A synthetic human's answers are committed (a kill -9 loses none: tests/unit/test_labels.py) without an fsync
    each, about 7,000 of them an update in the fresh-student recipe; people's are flushed to the disk one by one."""
    import debate_amp.trainer.loop as loop

    opened: list[tuple[str, bool]] = []

    class Opened(Exception):
        pass

    def label_store(path, *, fsync=True, **_):
        opened.append((path.name, fsync))
        raise Opened  # nothing past the store is needed

    monkeypatch.setattr(loop, "LabelStore", label_store)
    for kind in ("synthetic", "web"):
        cfg = load_config(
            "recipes/default.yaml",
            [*TINY, f"run.output_dir={tmp_path}", f"run.name={kind}", f"human.kind={kind}", "trainer.warm_start=false"]
            + ["trainer.rehearsal_examples=0"] * (kind == "web"),
        )
        with pytest.raises(Opened):
            loop.train(cfg, progress=False)
    assert opened == [("labels.sqlite", False), ("labels.sqlite", True)]


def test_the_setups_objects_are_out_of_the_collectors_full_passes_during_the_updates_only(tmp_path, freeze_counts):
    """gc.freeze() after the setup (a full collection walked its 400,000-550,000 objects about once an update),
    gc.unfreeze() when the run ends, so that a process training again can free them."""
    import gc

    import debate_amp.trainer.loop as loop

    frozen = freeze_counts(loop, "collect")
    assert gc.get_freeze_count() == 0
    run(tmp_path, "frozen", "trainer.updates=2", "trainer.warm_start=false")
    assert len(frozen) == 2 and min(frozen) > 10_000, frozen
    assert gc.get_freeze_count() == 0


# A tiny recipes/amplification_fresh_student.yaml: M from new weights distils Amp~(H, A[0]), the human decomposing
PRETRAIN_RECIPE = """\
sampler: {kind: always}
sft: {data: answers, n_examples: 256}
amp: {questions_per_update: 16, curriculum: false, curriculum_probe: 8}
debate: {force_stop_p: 1.0}
objective: {alpha: 0.0}
generation: {max_new_tokens: 12}
trainer: {student: fresh, updates: 1, save_every: 1, questions_per_update: 8, eval_size: 8, rehearsal_examples: 0,
          imitate_human: false}
"""


def test_the_warm_start_starts_from_the_pretraining_stages_m_which_is_continued_or_reused(tmp_path):
    # pretrain.recipe: that recipe runs first in <run>/pretrain on this run's model; A[0] imitates the human from
    # its M (a learning rate of 1e-12 leaves A[0] at M's weights); a stage cut short is continued from its last
    # checkpoint, a finished one reused.
    from debate_amp.trainer.loop import pretrain, train

    (tmp_path / "stage.yaml").write_text(PRETRAIN_RECIPE)

    def cfg(updates, *more):
        overrides = ["trainer.warm_start=true", "sft.n_examples=256", "sft.learning_rate=1e-12", "trainer.updates=1"]
        overrides += [f"pretrain.recipe={tmp_path / 'stage.yaml'}", f"pretrain.updates={updates}"]
        overrides += ["trainer.save_every=1", *more]
        return load_config("recipes/default.yaml", [*TINY, f"run.output_dir={tmp_path}", "run.name=p", *overrides])

    stage_dir = tmp_path / "p" / "pretrain"
    assert pretrain(cfg(1), progress=False) == stage_dir / "model"
    (stage_dir / "final.json").unlink()  # as if stopped after update 1's checkpoint
    pretrain(cfg(2), progress=False)
    assert [r["update"] for r in metrics(load_config(stage_dir / "config.yaml"))] == [1, 2]
    before = (stage_dir / "metrics.jsonl").read_bytes()
    c = cfg(2)
    summary = train(c, progress=False)
    assert (stage_dir / "metrics.jsonl").read_bytes() == before  # finished: reused, not trained again
    m, _ = load_model(c.model, stage_dir / "model")
    a0, _ = load_model(c.model, c.run_dir / "sft")
    new, _ = load_model(c.model, None, seed=c.run.seed)
    assert parameter_distance(m, a0) < 1e-6 < 1e-3 < parameter_distance(m, new)
    stage_final = json.loads((stage_dir / "final.json").read_text())
    assert summary["final"]["pretrain"] == {
        "recipe": str(tmp_path / "stage.yaml"),
        "updates": 2,
        "human_calls": stage_final["human_calls"],
        "heldout_k_le_1": stage_final["heldout_k_le_1"],
        "heldout_k_ge_2": stage_final["heldout_k_ge_2"],
    }
    assert stage_final["human_calls"] > 0 and (c.run_dir / "final.json").is_file()
    # The run's config.yaml is its recipe, not one whose model.path is the stage's M (which a fresh-student stage
    # refuses to load): --resume compares the recipe with the recipe and continues.
    assert load_config(c.run_dir / "config.yaml") == c
    train(cfg(2, "trainer.updates=2"), progress=False, resume=True)
    assert [r["update"] for r in metrics(c)] == [1, 2]
