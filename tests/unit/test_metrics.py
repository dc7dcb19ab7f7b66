"""The per-update scalars pooled over processes (debate_amp.trainer.metrics.gather), and final.json without NaN.

Two processes are two threads that meet in a fake ``accelerator.gather``, each with its own share of the update."""

import json
import math
import threading
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest
import torch

from debate_amp.debate.engine import ScriptedDebater, run_debates
from debate_amp.eval.final import parse_rates
from debate_amp.samplers import Bernoulli
from debate_amp.tasks.perm import PermLiar
from debate_amp.trainer.metrics import (
    Mean,
    debate_metrics,
    gather,
    judge_accuracy,
    liar_metrics,
    mean,
    parse_counts,
    token_mean,
)

from .test_debate import QUESTIONS, Garbler, agents

ONE = SimpleNamespace(num_processes=1, process_index=0, device="cpu")


def on_two_processes(local_metrics: list[dict[str, float]]) -> list[dict[str, float]]:
    """What :func:`gather` returns on each of two processes whose own metrics are ``local_metrics``: each
    ``accelerator.gather`` concatenates both processes' tensors along dim 0, process 0's first, as accelerate's."""
    sent: list[torch.Tensor | None] = [None, None]
    both_sent, both_read = threading.Barrier(2, timeout=10), threading.Barrier(2, timeout=10)

    def accelerator(rank: int) -> SimpleNamespace:
        def all_gather(tensor: torch.Tensor) -> torch.Tensor:
            sent[rank] = tensor
            both_sent.wait()
            out = torch.cat([t for t in sent if t is not None])
            both_read.wait()
            return out

        return SimpleNamespace(num_processes=2, process_index=rank, device="cpu", gather=all_gather)

    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(gather, accelerator(r), m) for r, m in enumerate(local_metrics)]
        return [f.result() for f in futures]


def same(a: dict[str, float], b: dict[str, float]) -> bool:
    """Equal floats, NaN equal to NaN."""
    return list(a) == list(b) and all(
        x == y or (math.isnan(x) and math.isnan(y)) for x, y in zip(a.values(), b.values(), strict=True)
    )


def test_a_mean_is_its_float_and_keeps_its_sum_and_count():
    assert Mean(3, 4) == 0.75 and (Mean(3, 4).total, Mean(3, 4).count) == (3, 4)
    assert math.isnan(Mean(0, 0)) and math.isnan(mean([]))
    assert mean([1.0, 2.0, 4.0]) == 7 / 3 and mean([1.0, 2.0]).count == 2
    stats = {"sup_loss": [1.0, 4.0], "sup_tokens": [30.0, 10.0]}
    assert token_mean(stats) == 70 / 40 and token_mean(stats).count == 40  # the minibatches' tokens weigh
    assert math.isnan(token_mean({}))
    import copy
    import pickle

    for kept in (pickle.loads(pickle.dumps(Mean(3, 4))), copy.deepcopy(Mean(3, 4))):  # float's own would fail
        assert kept == 0.75 and (kept.total, kept.count) == (3, 4)


def test_two_processes_pool_shares_by_their_counts_and_sum_totals_and_throughputs():
    # The confirmed case: process 0 judged 10/10 right and asked the human for 0 of 100 calls, process 1 0/2 and
    # 10/20. The processes' average said 0.5 and 0.25; the run's figures are 10/12 and 10/120.
    process0 = {
        "debate/judge_accuracy": Mean(10, 10),
        "amp/human_call_fraction": Mean(0, 100),
        "objective/sup_loss": token_mean({"sup_loss": [2.0], "sup_tokens": [10.0]}),
        "debate/parse_rate_winner": Mean(0, 0),  # no verdict asked here: the other process's share
        "debate/parse_rate_catastrophe": Mean(0, 0),  # asked nowhere: NaN
        "amp/human_calls": 5.0,
        "perf/debates_per_s": 3.0,
        "perf/amp_targets_per_s": math.nan,  # nothing amplified here
        "perf/tokens_per_s": 0.0,
        "value/explained_variance": math.nan,
        "policy/clipfrac": 0.1,
    }
    process1 = {
        "debate/judge_accuracy": Mean(0, 2),
        "amp/human_call_fraction": Mean(10, 20),
        "objective/sup_loss": token_mean({"sup_loss": [1.0, 4.0], "sup_tokens": [30.0, 10.0]}),
        "debate/parse_rate_winner": Mean(3, 4),
        "debate/parse_rate_catastrophe": Mean(0, 0),
        "amp/human_calls": 7.0,
        "perf/debates_per_s": 5.0,
        "perf/amp_targets_per_s": 2.5,
        "perf/tokens_per_s": 100.0,
        "value/explained_variance": 0.5,
        "policy/clipfrac": 0.3,
    }
    on0, on1 = on_two_processes([process0, process1])
    assert same(on0, on1)  # every process moves lambda on the same L_sup
    assert list(on0) == list(process0) and all(type(v) is float for v in on0.values())
    assert on0["debate/judge_accuracy"] == pytest.approx(10 / 12)
    assert on0["amp/human_call_fraction"] == pytest.approx(10 / 120)
    assert on0["objective/sup_loss"] == pytest.approx((2 * 10 + 1 * 30 + 4 * 10) / 50)  # one token mean: 1.8
    assert on0["debate/parse_rate_winner"] == 0.75 and math.isnan(on0["debate/parse_rate_catastrophe"])
    assert on0["amp/human_calls"] == 12 and on0["perf/debates_per_s"] == 8  # side by side: the rates add up
    assert on0["perf/amp_targets_per_s"] == 2.5 and on0["perf/tokens_per_s"] == 100
    assert on0["value/explained_variance"] == 0.5  # a plain scalar: the mean of the processes that measured it
    assert on0["policy/clipfrac"] == pytest.approx(0.2)
    everywhere_nan = on_two_processes([{"perf/amp_targets_per_s": math.nan}] * 2)[0]
    assert math.isnan(everywhere_nan["perf/amp_targets_per_s"])


def _debates():
    """Debates of the perfect model with a human asked now and then: self-play (some stopped by force), the last five
    forfeited by an argument that does not parse (no verdict asked), so that every share has something to count;
    and those against the scripted liar."""
    amp_policy, amp_target, *_ = agents(Bernoulli(0.3, seed=0))
    liar = ScriptedDebater(PermLiar(seed=1))
    sides = [(None, liar) if i % 3 == 0 else (None, None) for i in range(24)]
    debates = run_debates(QUESTIONS[:24], amp_policy, amp_target, 4, 0.25, sides=sides)
    garbled = [q for q in QUESTIONS if q.k >= 2][:5]
    forfeited = run_debates(garbled, amp_policy, amp_target, 4, odd=ScriptedDebater(Garbler()), forfeit_unparsed=True)
    return [d for d in debates if d.scripted is None] + forfeited, [d for d in debates if d.scripted is not None]


def test_the_debates_of_two_processes_pool_to_the_figures_of_all_of_them_on_one():
    debates, liar = _debates()
    whole, whole_liar = gather(ONE, debate_metrics(debates)), gather(ONE, liar_metrics(liar))
    assert 0 < whole["amp/human_call_fraction"] < 1 and 0 < whole["debate/forfeit_rate"] < 1
    assert 0 < whole["debate/parse_rate_argue"] < 1 and whole["debate/count"] == len(debates) == 21
    for split in (3, 14):  # uneven shares
        on0, on1 = on_two_processes([debate_metrics(debates[:split]), debate_metrics(debates[split:])])
        assert same(on0, on1) and on0 == pytest.approx(whole, nan_ok=True)
        on0, _ = on_two_processes([liar_metrics(liar[: split // 3]), liar_metrics(liar[split // 3 :])])
        assert on0 == pytest.approx(whole_liar, nan_ok=True)
    # where the processes' own figures, averaged, were off
    own = [gather(ONE, debate_metrics(share)) for share in (debates[:3], debates[3:])]
    for tag in ("debate/forfeit_rate", "debate/parse_rate_argue", "debate/mean_turns"):
        assert (own[0][tag] + own[1][tag]) / 2 != pytest.approx(whole[tag]), tag


def _old_mean(values):
    return sum(values) / len(values) if values else float("nan")


def _old_debate_metrics(debates):
    """debate_metrics as it was before the pooling over processes: what one process must still log."""
    accuracies = [a for a in (judge_accuracy(d) for d in debates) if a is not None]
    human_nodes = model_nodes = 0
    for d in debates:
        for trace in d.traces():
            for node in trace.walk():
                if not node.op:
                    human_nodes += node.human_calls
                    model_nodes += node.source.startswith("model:")
    return {
        "objective/reward_even": _old_mean([d.rewards["even"] for d in debates]),
        "objective/reward_odd": _old_mean([d.rewards["odd"] for d in debates]),
        "objective/catastrophe_cost": _old_mean([c.value for d in debates for c in d.costs]),
        "debate/mean_turns": _old_mean([len(d.turns) for d in debates]),
        "debate/continue0_rate": _old_mean([float(bool(d.continues and d.continues[0].value)) for d in debates]),
        "debate/even_win_rate": _old_mean([float(d.winner is not None and d.winner.value == "even") for d in debates]),
        "debate/judge_accuracy": _old_mean(accuracies),
        "debate/forfeit_rate": _old_mean([float(d.forfeit is not None) for d in debates]),
        **{f"debate/{k}": v for k, v in parse_rates(debates).items()},
        "amp/human_call_fraction": human_nodes / max(1, human_nodes + model_nodes),
    }


def test_one_process_logs_exactly_what_it_logged_before_pooling():
    debates, liar = _debates()
    for share in (debates, debates[-5:]):  # the last five: forfeits only, no verdict asked (NaN)
        new = gather(ONE, debate_metrics(share))
        assert all(type(v) is float for v in new.values())
        old = _old_debate_metrics(share)
        assert same({k: new[k] for k in old}, old)
    assert math.isnan(gather(ONE, debate_metrics(debates[-5:]))["debate/parse_rate_winner"])
    stats = {"sup_loss": [0.3, 0.7, 0.1], "sup_tokens": [7.0, 3.0, 11.0]}
    assert gather(ONE, {"objective/sup_loss": token_mean(stats)})["objective/sup_loss"] == (
        sum(loss * n for loss, n in zip(stats["sup_loss"], stats["sup_tokens"], strict=True)) / sum(stats["sup_tokens"])
    )
    assert gather(ONE, {"amp/human_calls": 4.0, "policy/clipfrac": 0.25}) == {
        "amp/human_calls": 4.0,
        "policy/clipfrac": 0.25,
    }


def test_the_trainers_parse_shares_count_what_the_final_table_counts():
    debates, liar = _debates()
    for share in (debates, debates[:4], debates[-5:], liar, []):
        assert same({k: float(v) for k, v in parse_counts(share).items()}, parse_rates(share))


def test_final_json_writes_a_kind_never_asked_as_null_not_nan(tmp_path, monkeypatch):
    """The final table's NaN (here a verdict never asked, and a difficulty without questions) is written as null:
    bare NaN is not JSON, and a strict reader refuses it."""
    from debate_amp.trainer import loop

    table = {
        "task": "perm",
        "parse_rate_winner": math.nan,
        "verdict_parse_rate": math.nan,
        "heldout_by_difficulty": {"0": 1.0, "1": math.nan},
        "liar_judge_accuracy": None,
        "mean_debate_length": 2.0,
    }
    report = SimpleNamespace(as_dict=lambda: {"answer": {"0": 1.0}})
    monkeypatch.setattr(loop, "gather_object", lambda objects: objects)
    monkeypatch.setattr(loop, "_fingerprint", lambda model: "same")
    monkeypatch.setattr(loop, "_save_policy", lambda policy, tokenizer, model_dir: None)
    monkeypatch.setattr(loop, "save_file", lambda tensors, path: None)
    monkeypatch.setattr(loop, "_eval_questions", lambda task, cfg: [])
    monkeypatch.setattr(loop, "evaluate_heldout", lambda *args, **kwargs: report)
    monkeypatch.setattr(loop, "final_evaluation", lambda *args, **kwargs: dict(table))
    cfg = SimpleNamespace(
        run_dir=tmp_path,
        generation=SimpleNamespace(max_new_tokens=8),
        trainer=SimpleNamespace(student="continue"),
        pretrain=SimpleNamespace(recipe=None),
    )
    run = SimpleNamespace(
        cfg=cfg,
        accelerator=SimpleNamespace(is_main_process=True, log=lambda *args, **kwargs: None),
        task=SimpleNamespace(difficulty_name="k"),
        tokenizer=None,
    )
    model = SimpleNamespace(policy=None, value_head=torch.nn.Linear(1, 1))
    state = SimpleNamespace(model=model, adversary=None, update=2, human_calls=3, history=[{"debate/mean_turns": 2.0}])
    loop._finish(run, state, progress=False)

    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    text = (tmp_path / "final.json").read_text()
    with pytest.raises(ValueError, match="not JSON: NaN"):
        json.loads(json.dumps(table), parse_constant=refuse)  # what was written before
    final = json.loads(text, parse_constant=refuse)
    assert final["parse_rate_winner"] is None and final["verdict_parse_rate"] is None
    assert final["heldout_by_difficulty"] == {"0": 1.0, "1": None} and final["liar_judge_accuracy"] is None
    assert (final["task"], final["mean_debate_length"], final["human_calls"], final["updates"]) == ("perm", 2.0, 3, 2)


def test_the_printed_final_table_shows_a_figure_never_measured_as_a_dash():
    from debate_amp.eval.final import format_final
    from debate_amp.tasks.perm import PermTask

    final = {"verdict_parse_rate": math.nan, "parse_rate_argue": 0.5, "mean_debate_length": None}
    lines = format_final(final, PermTask(), a0={"verdict_parse_rate": 0.25}).splitlines()
    verdicts = next(line for line in lines if line.startswith("verdicts that parse"))
    assert verdicts.split()[-2:] == ["-", "25.0%"] and "nan" not in "\n".join(lines)
    assert next(line for line in lines if line.startswith("arguments that parse")).split()[-2:] == ["50.0%", "-"]
