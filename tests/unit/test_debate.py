"""The debate engine with the perfect scripted model and the synthetic human (DESIGN.md section 1, issue 4)."""

import json
import math

import pytest

from debate_amp.agents.humans.synthetic import SyntheticHuman
from debate_amp.agents.model_agent import ModelAgent
from debate_amp.combinators import amp_approx
from debate_amp.debate.engine import ScriptedDebater, run_debates
from debate_amp.debate.transcript import (
    TranscriptError,
    debate_to_record,
    read_transcripts,
    validate_record,
    write_transcripts,
)
from debate_amp.eval.final import parse_rates
from debate_amp.eval.transcripts import to_row
from debate_amp.samplers import Always, Bernoulli, Never
from debate_amp.tasks.perm import (
    PermHuman,
    PermLiar,
    PermQuestion,
    PermTask,
    catastrophe_cost,
    judge_winner,
    parse_argument,
    perfect_generate,
    render_question,
)
from debate_amp.trainer.rollout import supervised_examples

from .test_amp import Counting

K = 15
QUESTIONS = PermTask(8, K).eval_questions(192, seed=3)  # every k in 0..15, 12 times each


def agents(sampler=None, counting=False):
    human = SyntheticHuman(PermHuman())
    policy = ModelAgent(Counting(perfect_generate) if counting else perfect_generate, "policy")
    target = ModelAgent(Counting(perfect_generate) if counting else perfect_generate, "target")
    sampler = sampler or Never()
    return amp_approx(human, policy, sampler), amp_approx(human, target, sampler), human, policy, target


def honest_accuracy(max_turns, liar_side):
    amp_policy, amp_target, *_ = agents()
    liar = {liar_side: ScriptedDebater(PermLiar(seed=1))}
    debates = run_debates(QUESTIONS, amp_policy, amp_target, max_turns, **liar)
    honest = "odd" if liar_side == "even" else "even"
    return sum(d.winner.value == honest for d in debates) / len(debates)


@pytest.mark.parametrize("liar_side", ["even", "odd"])
def test_judge_picks_the_honest_side_when_the_dispute_reaches_a_lookup(liar_side):
    # k <= 15 needs at most 4 arguments to zoom from sigma^15 to a single lookup.
    assert honest_accuracy(6, liar_side) >= 0.95
    assert honest_accuracy(4, liar_side) >= 0.95


def test_judge_accuracy_falls_as_max_turns_shrinks():
    table = {t: (honest_accuracy(t, "even") + honest_accuracy(t, "odd")) / 2 for t in range(1, 7)}
    # One argument: the judge believes the uncontested opening (right only when the honest side opens, or on a
    # lookup it checks itself): about the sparse judge's 59% of Irving et al. 2018.
    assert 0.5 <= table[1] <= 0.65
    assert table[1] <= table[2] <= table[3] <= table[4]
    assert table[3] < 0.9 and table[6] >= 0.95


def test_force_stop_p_one_is_pure_amplification():
    amp_policy, amp_target, *_ = agents()
    debates = run_debates(QUESTIONS[:64], amp_policy, amp_target, max_turns=6, force_stop_p=1.0)
    assert all(len(d.turns) == 1 and d.continues[0].forced and d.continues[0].value is False for d in debates)
    # the single argument is the amplified answer, and the uncontested honest opening wins
    assert all(parse_argument(d.turns[0].text).value == d.question.gold for d in debates)


def test_force_stop_p_zero_stops_by_the_continue_judgments():
    amp_policy, amp_target, *_ = agents()
    liar = ScriptedDebater(PermLiar(seed=2))
    debates = run_debates(QUESTIONS, amp_policy, amp_target, max_turns=6, force_stop_p=0.0, odd=liar)
    assert not any(c.forced for d in debates for c in d.continues)
    for d in debates:
        values = [c.value for c in d.continues]
        assert len(values) == len(d.turns)
        assert all(values[:-1]) and (values[-1] is False or len(d.turns) == 6)
    assert {len(d.turns) for d in debates} == {1, 2, 3, 4}


def test_force_stop_p_half_is_drawn_per_debate():
    amp_policy, amp_target, *_ = agents()
    debates = run_debates(QUESTIONS, amp_policy, amp_target, max_turns=6, force_stop_p=0.5, seed=0)
    forced = sum(d.continues[0].forced for d in debates)
    assert 0.35 * len(debates) < forced < 0.65 * len(debates)


def test_sides_replace_a_debater_per_question_and_a_liar_debate_is_never_forced_to_stop():
    amp_policy, amp_target, *_ = agents()
    liar = ScriptedDebater(PermLiar(seed=4))
    sides = [(liar, None), (None, liar), (None, None)] * 20
    debates = run_debates(QUESTIONS[:60], amp_policy, amp_target, max_turns=6, force_stop_p=1.0, sides=sides)
    honest_wins = []
    for d, (even, odd) in zip(debates, sides, strict=True):
        sources = [turn.trace.source for turn in d.turns]
        if even is None and odd is None:  # self-play: forced to stop after arg_0, as at force_stop_p 1
            assert d.continues[0].forced and len(d.turns) == 1
            assert not sources[0].startswith("scripted:")
        else:
            assert not any(c.forced for c in d.continues)
            liar_turns = [t for t, s in enumerate(sources) if s.startswith("scripted:")]
            assert liar_turns == list(range(0 if even is not None else 1, len(d.turns), 2))
            honest_wins.append(d.winner.value == ("odd" if even is not None else "even"))
    assert len(honest_wins) == 40 and sum(honest_wins) >= 38  # the perfect model beats the liar (>= 95%, above)
    with pytest.raises(ValueError):  # one pair per question
        run_debates(QUESTIONS[:3], amp_policy, amp_target, max_turns=2, sides=sides[:2])


def test_catastrophe_is_a_direct_lie():
    q = PermQuestion((3, 7, 0, 1, 6, 2, 5, 4), 5, 6)
    assert catastrophe_cost(q, "5^1=2") == "0" and catastrophe_cost(q, "no 5^1=3") == "1"
    assert catastrophe_cost(q, "5^6=1 via 2") == "0"  # not checkable in one lookup: no catastrophe
    amp_policy, amp_target, *_ = agents()
    debates = run_debates(QUESTIONS, amp_policy, amp_target, 6, even=ScriptedDebater(PermLiar(seed=1)))
    costs = [(t, c.value) for d in debates for t, c in enumerate(d.costs)]
    assert all(cost == 0.0 for t, cost in costs if t % 2 == 1)  # the honest side never lies
    assert any(cost == 1.0 for t, cost in costs if t % 2 == 0)


def test_judge_rules():
    q = PermQuestion((3, 7, 0, 1, 6, 2, 5, 4), 5, 6)  # sigma^3(5) = 3, sigma^6(5) = 4
    assert judge_winner(q, ("5^6=4 via 3",)) == "even"  # uncontested opening
    assert judge_winner(q, ("5^5=4 via 3",)) == "odd"  # off the question
    assert judge_winner(q, ("5^6=4 via 3", "agree")) == "even"
    assert judge_winner(q, ("garbage",)) == "odd"
    assert judge_winner(q, ("5^6=1 via 6", "no 5^3=3 via 2", "no 2^1=1")) == "odd"  # sigma(2) = 0: a lie
    assert judge_winner(q, ("5^6=1 via 6", "no 5^3=3 via 2", "no 2^1=0")) == "even"
    assert judge_winner(q, ("5^6=1 via 6", "no 4^3=3 via 2")) == "even"  # disputes nothing that was claimed


def test_debates_share_batched_waves():
    amp_policy, amp_target, _, policy, target = agents(counting=True)
    debates = run_debates(QUESTIONS[:32], amp_policy, amp_target, 6, odd=ScriptedDebater(PermLiar(seed=3)))
    model_nodes = sum(
        1 for d in debates for tr in d.traces() for n in tr.walk() if n.source.startswith("model:") and not n.op
    )
    assert policy.generate_fn.batches[0] == 32  # every opening step in one call
    for agent in (policy, target):
        assert agent.batcher.generate_calls == agent.batcher.waves
    calls = policy.batcher.generate_calls + target.batcher.generate_calls
    assert sum(policy.generate_fn.batches) + sum(target.generate_fn.batches) == model_nodes
    assert calls * 5 < model_nodes


def _records(n=24, sampler=None):
    amp_policy, amp_target, *_ = agents(sampler)
    debates = run_debates(QUESTIONS[:n], amp_policy, amp_target, 6, 0.25, odd=ScriptedDebater(PermLiar(seed=1)))
    return [
        debate_to_record(
            d,
            run="test",
            update=3,
            question_id=f"q{i}",
            question=render_question(d.question),
            gold=str(d.question.gold),
            task="perm",
            force_stop_p=0.25,
            alpha=0.5,
        )
        for i, d in enumerate(debates)
    ]


class Garbler:
    """A debater whose every argument is not an argument ("no 0": a dispute without a claim)."""

    @staticmethod
    def argue(q, context):
        return "no 0"


def _kinds_asked(judge):
    asked = []

    async def recording(posed):
        asked.append(posed.kind)
        return await judge(posed)

    return recording, asked


@pytest.mark.parametrize("forfeit", [True, False])
def test_an_argument_that_does_not_parse_forfeits_without_asking_the_judge(forfeit):
    amp_policy, amp_target, *_ = agents()
    judge, asked = _kinds_asked(amp_target)
    questions = [q for q in QUESTIONS if q.k >= 2][:40]  # the opening is a decomposed claim: the odd side speaks
    debates = run_debates(questions, amp_policy, judge, 4, odd=ScriptedDebater(Garbler()), forfeit_unparsed=forfeit)
    assert all(len(d.turns) == 2 and d.winner.value == "even" for d in debates)  # the human's rule, either way
    assert all(d.rewards == {"even": 1.0, "odd": -1.0} and len(d.costs) == 2 for d in debates)
    if forfeit:
        assert asked.count("winner") == 0 and asked.count("sufficient") == len(questions)  # after arg_0 only
        assert all(d.forfeit == 1 and d.winner.forced and d.winner.trace is None for d in debates)
        assert all(d.costs[1].forced and d.costs[1].value == 0.0 and not d.costs[0].forced for d in debates)
        assert asked.count("catastrophe") == len(questions)
    else:
        assert asked.count("winner") == len(questions) and asked.count("sufficient") == 2 * len(questions)
        assert all(d.forfeit is None and not d.winner.forced for d in debates)
    rates = parse_rates(debates)  # the final table's: of the judgments asked; half the arguments are garbage
    assert rates["parse_rate_argue"] == 0.5 and rates["parse_rate_catastrophe"] == 1.0
    assert math.isnan(rates["parse_rate_winner"]) if forfeit else rates["parse_rate_winner"] == 1.0
    record = debate_to_record(
        debates[0], run="r", update=1, question_id="q", question="", gold=None, task="perm", force_stop_p=0.0
    )
    assert validate_record(json.loads(json.dumps(record))) is None
    assert record["winner"].get("forced", False) == forfeit and to_row(record, "t:1").forfeit == forfeit


def test_transcripts_round_trip_exactly(tmp_path):
    records = _records(sampler=Bernoulli(0.3, seed=0))
    path = write_transcripts(tmp_path / "transcripts" / "update_000003.jsonl", records)
    assert list(read_transcripts(path)) == json.loads(json.dumps(records)) == records
    assert not list(path.parent.glob(".*.tmp"))  # the temporary file was renamed into place
    record = records[0]
    assert (
        record["schema_version"] == 2
        and record["task"] == "perm"
        and record["alpha"] == 0.5
        and record["force_stop_p"] == 0.25
    )
    assert record["turns"][0]["trace"]["who"] in {"human", "policy"}
    assert sum(r["human_calls"] for r in records) > 0 and all(r["model_calls"] > 0 for r in records)
    assert all(set(r["rewards"]) == {"even", "odd"} and sum(r["rewards"].values()) == 0 for r in records)


@pytest.mark.parametrize(
    "mangle, message",
    [
        (lambda lines: lines[:-1] + [lines[-1][: len(lines[-1]) // 2]], r"t.jsonl:3: truncated record"),
        (lambda lines: [lines[0], "{not json\n", lines[2]], r"t.jsonl:2: not valid JSON"),
        (
            lambda lines: [lines[0].replace('"schema_version":2', '"schema_version":99')] + lines[1:],
            r"t.jsonl:1: unknown schema_version 99",
        ),
        (
            lambda lines: [lines[0], lines[1].replace('"winner":', '"winnr":'), lines[2]],
            r"t.jsonl:2: missing field 'winner'",
        ),
        (lambda lines: [lines[0], "[1, 2]\n"], r"t.jsonl:2: a record is a JSON object"),
    ],
)
def test_bad_transcript_lines_name_file_and_line(tmp_path, mangle, message):
    path = write_transcripts(tmp_path / "t.jsonl", _records(3))
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(mangle(lines)))
    with pytest.raises(TranscriptError, match=message):
        list(read_transcripts(path))


def test_a_debates_distilled_examples_leave_out_the_humans_replies_unless_it_is_imitated():
    # Every step the human's (sampler always): L_sup imitates its steps beside the amplified arguments and verdicts;
    # trainer.imitate_human=false keeps only what amplification made.
    amp_policy, amp_target, *_ = agents(Always())
    debates = run_debates(QUESTIONS[:16], amp_policy, amp_target, max_turns=2)
    imitated, alone = supervised_examples(debates), supervised_examples(debates, imitate_human=False)
    made = [(e.prompt, e.completion) for e in imitated if e.kind in ("argue", "sufficient", "winner", "catastrophe")]
    assert alone and [(e.prompt, e.completion) for e in alone] == made
    assert len(imitated) > len(alone) and {e.kind for e in imitated} - {e.kind for e in alone} == {"step"}
