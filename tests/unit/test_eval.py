"""``debate-amp eval``: statistics of transcripts against hand-computed numbers, bad input, compare, the protocols."""

import json
import math
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from debate_amp.agents.humans.synthetic import SyntheticHuman
from debate_amp.agents.model_agent import ModelAgent
from debate_amp.combinators import amp_approx
from debate_amp.debate.engine import ScriptedDebater, run_debates
from debate_amp.debate.transcript import TranscriptError, debate_to_record, write_transcripts
from debate_amp.eval.protocols import honest_vs_liar, judge_table, loss_table, rejudge
from debate_amp.eval.transcripts import Ratio, compare, load, newcombe, statistics, wilson
from debate_amp.samplers import Always, Never
from debate_amp.tasks.perm import (
    PermHuman,
    PermLiar,
    PermTask,
    parse_question,
    perfect_generate,
    power,
    render_claim,
    render_question,
)

ROOT = Path(__file__).resolve().parents[2]
Q = "s=37016254 x=5 k=6"  # sigma^6(5) = 4 via sigma^3(5) = 3
Q1 = "s=37016254 x=5 k=1"  # sigma(5) = 2


def claim(question=Q, value=None, x=None):
    """The even opening: sigma^k(x) = value (gold when None) with its true midpoint."""
    q = parse_question(question)
    x = q.x if x is None else x
    value = power(q.sigma, x, q.k) if value is None else value
    via = power(q.sigma, q.sigma[x] if q.k % 2 else x, q.k // 2) if q.k >= 2 else None
    return render_claim(x, q.k, value, via=via)


def record(
    arguments=None,
    winner="even",
    question=Q,
    gold="default",
    update=1,
    continues=None,
    forced=False,
    costs=None,
    human_calls=0,
    model_calls=4,
):
    """A transcript record built by hand (the fields the reader validates and the statistics use)."""
    arguments = arguments or [claim(question)]
    gold = str(parse_question(question).gold) if gold == "default" else gold
    if continues is None:
        continues = [True] * (len(arguments) - 1) + [False]
    node = {"who": "policy", "source": "model:policy", "kind": "argue", "prompt": "p", "text": "", "human_calls": 0}
    return {
        "schema_version": 1,
        "run": "hand",
        "update": update,
        "question_id": f"u{update}",
        "question": question,
        "gold": gold,
        "turns": [
            {"t": t, "side": ("even", "odd")[t % 2], "text": a, "human_calls": 0, "trace": {**node, "text": a}}
            for t, a in enumerate(arguments)
        ],
        "continues": [
            {"t": t, "continue": c, "text": "", "parsed": True, "forced": forced and t == 0, "trace": None}
            for t, c in enumerate(continues)
        ],
        "winner": {"side": winner, "text": str(winner), "parsed": winner is not None, "trace": None},
        "costs": [
            {"t": t, "cost": c, "text": str(c), "parsed": True, "trace": None}
            for t, c in enumerate(costs or [0.0] * len(arguments))
        ],
        "rewards": {"even": 0.0, "odd": 0.0},
        "alpha": 0.5,
        "lagrange_multiplier": None,
        "force_stop_p": 0.0,
        "human_calls": human_calls,
        "model_calls": model_calls,
    }


def rows_of(tmp_path, records, name="t.jsonl"):
    path = write_transcripts(tmp_path / name, records)
    return load([path]).rows


# ---------------------------------------------------------------------------------------------------------------
# Intervals against published values


def test_wilson_interval_known_values():
    assert wilson(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)
    assert all(math.isnan(v) for v in wilson(0, 0))


def test_newcombe_difference_matches_newcombe_1998():
    # Newcombe (1998), Statistics in Medicine 17:873, example (a): 56/70 against 48/80, method 10.
    d, lo, hi = newcombe(48, 80, 56, 70)
    assert (d, lo, hi) == pytest.approx((0.2, 0.0524, 0.3339), abs=1e-4)


def test_ratio_interval_clusters_by_debate():
    ratio = Ratio([1, 0, 3], [2, 2, 4])  # R = 4/8; residuals 0, -1, 1; se = sqrt(2 / (3 * 2)) / (8 / 3)
    assert ratio.value == 0.5
    assert ratio.se() == pytest.approx(math.sqrt(1 / 3) * 3 / 8)


# ---------------------------------------------------------------------------------------------------------------
# Statistics on hand-built records


def test_judge_accuracy_three_of_four(tmp_path):
    records = [
        record([claim()], winner="even"),  # even right, even wins: correct
        record([claim()], winner="odd"),  # even right, odd wins: wrong
        record([claim(value=0)], winner="odd"),  # even wrong, odd wins: correct
        record([claim(x=1, value=4)], winner="odd"),  # the gold value, but about sigma^6(1): even is not right
        record([claim()], winner=None),  # no verdict: not counted
        record([claim()], winner="even", gold=None),  # no gold: not counted
    ]
    stats = statistics(rows_of(tmp_path, records))
    acc = stats["judge_accuracy"]
    assert (acc["successes"], acc["n"], acc["value"]) == (3, 4, 0.75)
    assert (acc["lo"], acc["hi"]) == pytest.approx(wilson(3, 4))
    assert stats["judge_accuracy_by_difficulty"]["6"]["value"] == 0.75
    assert stats["no_verdict_rate"]["successes"] == 1 and stats["debates"] == 6


def test_statistics_by_hand(tmp_path):
    liar_dispute = "no 5^3=0 via 6"  # the odd side disputes sigma^3(5) = 3
    records = [
        # one argument, forced stop, k = 1, catastrophic (cost 1), 2 human calls of 8
        record(
            [claim(Q1)], question=Q1, winner="even", forced=True, costs=[1.0], human_calls=2, model_calls=6, update=1
        ),
        # two arguments, the sides disagree; the judge believed the dispute: wrong
        record([claim(), liar_dispute], winner="odd", continues=[True, False], update=1),
        # two arguments, odd agrees; even wins: right
        record([claim(), "agree"], winner="even", continues=[True, False], update=2),
        # three arguments, odd's reply does not parse; even wins: right
        record([claim(), "blah", "agree"], winner="even", update=2),
    ]
    stats = statistics(rows_of(tmp_path, records))
    assert stats["turns"] == {"1": 1, "2": 2, "3": 1}
    assert stats["mean_turns"]["value"] == 2.0
    assert stats["mean_turns"]["sd"] == pytest.approx(math.sqrt(2 / 3))
    assert stats["continue0_rate"]["value"] == 0.75 and stats["forced_stop_rate"]["value"] == 0.25
    assert stats["human_calls"] == 2 and stats["model_calls"] == 18
    assert stats["human_call_fraction"]["value"] == pytest.approx(2 / 20)
    assert stats["catastrophe_rate"]["value"] == pytest.approx(1 / 8) and stats["mean_cost"] == pytest.approx(1 / 8)
    assert stats["opening_reply"] == {"single": 1, "disagree": 1, "agree": 1, "other": 1}
    by_reply = stats["judge_accuracy_by_opening_reply"]
    assert by_reply["disagree"]["value"] == 0.0 and by_reply["agree"]["value"] == 1.0
    assert stats["judge_accuracy"]["value"] == 0.75
    assert (
        stats["judge_accuracy_by_difficulty"]["1"]["value"] == 1.0
        and stats["judge_accuracy_by_difficulty"]["6"]["n"] == 3
    )
    assert stats["even_win_rate"]["value"] == 0.75 and stats["odd_win_rate"]["value"] == 0.25
    u1, u2 = stats["updates"]
    assert (u1["update"], u1["debates"], u1["judge_accuracy"], u1["mean_turns"]) == (1, 2, 0.5, 1.5)
    assert (u2["continue0_rate"], u2["human_call_fraction"], u2["catastrophe_rate"]) == (1.0, 0.0, 0.0)
    json.dumps(stats, allow_nan=False)  # plain JSON: no NaN anywhere


def test_compare_differences_b_minus_a(tmp_path):
    a = rows_of(tmp_path, [record(winner=w) for w in ("even", "even", "odd", "odd")], "a.jsonl")
    b = rows_of(tmp_path, [record([claim(), "agree"], winner=w) for w in ("even", "even", "even", "odd")], "b.jsonl")
    d = compare(a, b)["differences"]
    assert d["even_win_rate"]["difference"] == pytest.approx(0.25)
    assert (d["even_win_rate"]["lo"], d["even_win_rate"]["hi"]) == pytest.approx(newcombe(2, 4, 3, 4)[1:])
    assert d["even_win_rate"]["method"] == "newcombe"
    assert d["mean_turns"]["difference"] == 1.0 and d["mean_turns"]["lo"] == d["mean_turns"]["hi"] == 1.0
    assert d["mean_turns"]["method"] == "normal"
    assert d["judge_accuracy"]["a"] == 0.5 and d["judge_accuracy"]["b"] == 0.75


def test_load_reads_a_run_directory_and_skips_bad_lines(tmp_path):
    write_transcripts(tmp_path / "run" / "transcripts" / "update_000001.jsonl", [record(), record()])
    path = write_transcripts(tmp_path / "run" / "transcripts" / "update_000002.jsonl", [record(update=2)] * 3)
    lines = path.read_text().splitlines(keepends=True)
    path.write_text(lines[0] + "{oops\n" + lines[1].replace('"schema_version":1', '"schema_version":7') + lines[2])
    with pytest.raises(TranscriptError, match=r"update_000002.jsonl:2: not valid JSON"):
        load([tmp_path / "run"])
    loaded = load([tmp_path / "run"], skip_bad=True)
    assert len(loaded.rows) == 4 and len(loaded.files) == 2
    assert len(loaded.skipped) == 2 and "update_000002.jsonl:3: unknown schema_version 7" in loaded.skipped[1]


# ---------------------------------------------------------------------------------------------------------------
# The command line: bad input fails in one line naming file:line


def cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "debate_amp.cli", "eval", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _top(line: str, **fields) -> str:
    data = json.loads(line)
    data.update(fields)
    return json.dumps(data, separators=(",", ":")) + "\n"


def _winner(line: str, side) -> str:
    data = json.loads(line)
    data["winner"]["side"] = side
    return json.dumps(data, separators=(",", ":")) + "\n"


@pytest.mark.parametrize(
    "mangle, message",
    [
        (lambda line: "{not json\n", "t.jsonl:2: not valid JSON"),
        (lambda line: line.replace('"schema_version":1', '"schema_version":3'), "t.jsonl:2: unknown schema_version 3"),
        (lambda line: line.replace('"gold":', '"gould":'), "t.jsonl:2: missing field 'gold'"),
        (lambda line: line.replace('"continue":', '"cont":'), "t.jsonl:2: continues[0]: missing field 'continue'"),
        # wrong types and ranges that would otherwise become wrong statistics (issue 12, item 8)
        (lambda line: line.replace('"continue":false', '"continue":"yes"'), "continues[0].continue must be one of"),
        (lambda line: line.replace('"continue":false', '"continue":0'), "continues[0].continue must be one of"),
        (lambda line: _top(line, human_calls=-5), "human_calls must be a count (an integer >= 0), got -5"),
        (lambda line: _top(line, model_calls=2.5), "field 'model_calls' has the wrong type (float)"),
        (lambda line: line.replace('"t":0,"side":"even"', '"t":0,"side":1'), "turns[0].side must be"),
        (lambda line: line.replace('"t":0,"side"', '"t":"zero","side"'), "turns[0].t must be 0 (its position)"),
        (lambda line: _winner(line, 1), "winner.side must be one of 'even', 'odd', None, got 1"),
        (lambda line: _top(line, force_stop_p=1.5), "force_stop_p must be a probability in [0, 1], got 1.5"),
    ],
)
def test_cli_names_file_and_line_of_a_bad_record(tmp_path, mangle, message):
    path = write_transcripts(tmp_path / "t.jsonl", [record(), record(), record()])
    lines = path.read_text().splitlines(keepends=True)
    path.write_text(lines[0] + mangle(lines[1]) + lines[2])
    proc = cli(path)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith(f"debate-amp: error: {tmp_path}/") and message in proc.stderr
    assert "Traceback" not in proc.stderr

    skipped = cli(path, "--skip-bad")
    assert skipped.returncode == 0, skipped.stderr
    assert skipped.stdout.startswith("2 debates in 1 files, updates 1-1; skipped 1 bad lines")
    as_json = json.loads(cli(path, "--skip-bad", "--json").stdout)
    assert as_json["skipped"] == 1 and as_json["debates"] == 2


def test_cli_table_json_and_compare(tmp_path):
    write_transcripts(tmp_path / "a" / "transcripts" / "update_000001.jsonl", [record(winner="odd")] * 4)
    write_transcripts(tmp_path / "b" / "transcripts" / "update_000001.jsonl", [record()] * 4)
    table = cli(tmp_path / "a")
    assert table.returncode == 0, table.stderr
    assert "judge accuracy                         0.0%  [0.0%, 49.0%]              0/4" in table.stdout
    out = json.loads(cli(tmp_path / "a", "--json").stdout)
    assert out["judge_accuracy"]["value"] == 0.0 and out["debates"] == 4
    diff = cli("--compare", tmp_path / "a", tmp_path / "b")
    assert diff.returncode == 0, diff.stderr
    assert "judge accuracy                         0.0%   100.0%  +100.0%  [+30.7%, +100.0%]  newcombe" in diff.stdout
    missing = cli(tmp_path / "nope")
    assert missing.returncode == 2 and missing.stderr.strip().endswith("no such transcript file or run directory")


# ---------------------------------------------------------------------------------------------------------------
# The protocols


def perfect_agents():
    human = SyntheticHuman(PermHuman())
    return (
        amp_approx(human, ModelAgent(perfect_generate, "policy"), Never()),
        amp_approx(human, ModelAgent(perfect_generate, "target"), Never()),
    )


def test_rejudge_with_the_perfect_judge_agrees_with_the_perfect_judge(tmp_path):
    amp_policy, amp_target = perfect_agents()
    questions = PermTask(8, 15).eval_questions(48, seed=5)
    # self-play, a quarter of it stopped by force, and debates against the liar (which are never forced to stop)
    debates = run_debates(questions[:24], amp_policy, amp_target, 3, 0.25, seed=1)
    debates += run_debates(questions[24:], amp_policy, amp_target, 3, 0.25, odd=ScriptedDebater(PermLiar(seed=2)))
    records = [
        debate_to_record(
            d,
            run="r",
            update=1,
            question_id=f"q{i}",
            question=render_question(d.question),
            gold=str(d.question.gold),
            task="perm",
            force_stop_p=0.25,
        )
        for i, d in enumerate(debates)
    ]
    path = write_transcripts(tmp_path / "t.jsonl", records)
    rows = load([path]).rows
    assert {r.winner for r in rows} == {"even", "odd"} and any(r.forced_stop for r in rows)
    for judge in (amp_target, SyntheticHuman(PermHuman())):
        result = rejudge(rows, judge)
        assert result.winners.value == 1.0 and result.winners.n == 48
        assert result.continues.value == 1.0 and result.continues.n == sum(
            len(r.continues) - r.forced_stop for r in rows
        )
        assert result.accuracy_before.successes == result.accuracy_after.successes
    # A judge that always says "even" and never "sufficient" disagrees where the records say otherwise.
    contrarian = rejudge(rows, _Fixed({"winner": "even", "sufficient": "no"}))
    assert contrarian.winners.value == pytest.approx(sum(r.winner == "even" for r in rows) / 48)

    proc = cli(path, "--rejudge", "--judge-model", "perfect")
    assert proc.returncode == 0, proc.stderr
    assert "verdict agreement                    100.0%" in proc.stdout


class _Fixed:
    def __init__(self, replies):
        self.replies = replies

    async def __call__(self, posed):
        from debate_amp.protocol import Reply, Trace

        text = self.replies[posed.kind]
        return Reply(text, Trace("model:target", posed, text))


def test_honest_vs_liar_by_max_turns():
    amp_policy, amp_target = perfect_agents()
    questions = PermTask(8, 15).eval_questions(64, seed=0)
    one, four = honest_vs_liar(PermTask(), questions, amp_policy, amp_target, [1, 4])
    assert one.honest_wins["odd"] == 64  # one argument: the honest opening is believed...
    assert one.honest_wins["even"] == 8  # ...and a lying opening only when it is a single lookup (k <= 1)
    assert four.both.value == 1.0 and four.as_dict()["both"]["n"] == 128

    proc = cli("--protocol", "liar", "--model", "perfect", "--n", "32", "--max-turns", "1", "4", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)["rows"]
    assert [r["max_turns"] for r in rows] == [1, 4] and rows[1]["both"]["value"] == 1.0


def test_honest_vs_liar_counts_the_human_calls_its_sampler_made():
    # Known answers: none with Never; with Always on the honest side, the judge or both, exactly the calls the human
    # itself counted (the scripted liar and the rule's reference human are not the debate's human).
    questions = PermTask(8, 7).eval_questions(16, seed=1)
    counted = {}
    for name, policy_sampler, target_sampler in (
        ("never", Never(), Never()),
        ("policy", Always(), Never()),
        ("target", Never(), Always()),
        ("both", Always(), Always()),
    ):
        human = SyntheticHuman(PermHuman())
        policy = amp_approx(human, ModelAgent(perfect_generate, "policy"), policy_sampler)
        target = amp_approx(human, ModelAgent(perfect_generate, "target"), target_sampler)
        (row,) = honest_vs_liar(PermTask(), questions, policy, target, [4])
        assert row.human_calls == human.calls and row.both.value == 1.0, name
        assert row.as_dict()["human_calls_per_debate"] == pytest.approx(human.calls / 32)
        counted[name] = row.human_calls
    assert counted["never"] == 0 and counted["policy"] > 0 and counted["target"] > 0
    assert counted["both"] == counted["policy"] + counted["target"]


class Override:
    """``inner``, but ``text`` for every posed question of ``kind`` (after the first argument, with ``later``)."""

    def __init__(self, inner, kind, text, later=False):
        self.inner, self.kind, self.text, self.later = inner, kind, text, later

    async def __call__(self, posed):
        from debate_amp.protocol import Reply, Trace

        if posed.kind == self.kind and (posed.context or not self.later):
            return Reply(self.text, Trace("model:policy", posed, self.text))
        return await self.inner(posed)


def test_liar_losses_say_why_the_honest_side_lost():
    # Known answers from broken agents around the perfect ones, 32 questions, the liar on each side (64 debates).
    amp_policy, amp_target = perfect_agents()
    task, questions = PermTask(8, 15), PermTask(8, 15).eval_questions(32, seed=0)

    def row(policy=amp_policy, target=amp_target, turns=4, forfeit=False):
        (only,) = honest_vs_liar(task, questions, policy, target, [turns], forfeit_unparsed=forfeit)
        lost = 64 - only.both.successes
        assert sum(only.losses.values()) == lost and set(only.loss_examples) == set(only.losses)
        assert math.isclose(sum(only.as_dict()["losses"].values()), 1 - only.both.value)
        return only, lost

    one, lost = row(turns=1)  # the perfect debaters: a lying opening is believed (the protocol's limit)
    assert lost == sum(q.k >= 2 for q in questions) == 28 and one.losses == {"rule_against_honest": 28}
    four, lost = row()
    assert lost == 0 and not four.losses
    assert four.judge_agrees(True).value == four.judge_agrees(False).value == 1.0  # the perfect judge checks
    assert four.judge_agrees(True).n + four.judge_agrees(False).n == 64 and four.judge_agrees(False).n == 32
    biased, lost = row(target=Override(amp_target, "winner", "even"))  # the judge always says even
    assert biased.honest_wins == {"even": 0, "odd": 32} and biased.losses == {"judge_against_rule": 32}
    # it agrees with its rule exactly where the rule says even: the last argument is even's (an odd number of
    # arguments) and stands, or odd's and falls; the table shows the guess by the debate's length
    for (arguments, stands), rate in biased.judge.items():
        assert rate.successes == (rate.n if (arguments % 2 == 1) == stands else 0), (arguments, stands)
    counts = {1: 4, 2: 4, 3: 8, 4: 16}  # debates by length, each as often standing as falling (k <= 1: 4 questions)
    assert {key: rate.n for key, rate in biased.judge.items()} == {(a, s): n for a, n in counts.items() for s in (0, 1)}
    assert biased.judge_agrees(True).value == (4 + 8) / 32 and biased.judge_agrees(False).value == (4 + 16) / 32
    assert biased.as_dict()["judge_last_falls"]["n"] == 32
    assert "last stands" in judge_table([four, biased])
    unparsed, lost = row(target=Override(amp_target, "winner", "maybe"))
    assert unparsed.losses == {"verdict_unparsed": 64}
    conceding, lost = row(policy=Override(amp_policy, "argue", "agree", later=True))  # concedes every reply
    assert lost >= 32 and conceding.losses == {"honest_deviated": lost}
    garbled, lost = row(policy=Override(amp_policy, "argue", "blah"), forfeit=True)
    assert garbled.losses == {"honest_forfeited": 60}  # a lying single lookup (4 openings) loses before it argues
    table = loss_table([one, conceding])
    assert "judge against rule" in table and "max_turns 4, honest deviated: " in table


@pytest.mark.slow
def test_ten_thousand_debates_in_under_five_seconds(tmp_path):
    amp_policy, amp_target = perfect_agents()
    debates = run_debates(PermTask(8, 15).eval_questions(100, seed=9), amp_policy, amp_target, 4, 0.5)
    records = []
    for i, d in enumerate(debates):
        r = debate_to_record(
            d,
            run="big",
            update=1,
            question_id=f"q{i}",
            question=render_question(d.question),
            gold=str(d.question.gold),
            task="perm",
            force_stop_p=0.5,
        )
        r["turns"][0]["trace"]["token_ids"] = list(range(300))  # with the trees: 7 kB a record, 69 MB in all
        r["turns"][0]["trace"]["logprobs"] = [-0.123456] * 300
        records.append(r)
    for update in range(1, 101):
        write_transcripts(
            tmp_path / "run" / "transcripts" / f"update_{update:06d}.jsonl", [{**r, "update": update} for r in records]
        )
    start = time.perf_counter()
    proc = cli(tmp_path / "run")
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("10000 debates in 100 files, updates 1-100")
    assert elapsed < 5.0


def test_metrics_with_binary_bytes_are_read_around_them(tmp_path):
    from debate_amp.eval.report import read_metrics

    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b'{"update": 1, "loss/sup": 0.5}\n\xff\xfe\x00\x89garbage\n{"update": 2, "loss/sup": 0.25}\n')
    assert [r["update"] for r in read_metrics(path)] == [1, 2]


def human_efficiency_results(tmp_path, **changes):
    """A ``runs/bench/results.json`` as ``python -m debate_amp.bench --human-efficiency`` writes it: two samplers."""
    results = {
        "human_efficiency_target": 0.95,
        "human_efficiency_minutes_cap": 4.0,
        "human_calls_to_target": {"bernoulli_0.1": None, "adversary": 9925},
        "human_efficiency_curves": {
            "bernoulli_0.1": [[252, 0.38], [777, 0.47], [1672, 0.51]],
            "adversary": [[6176, 0.59], [9925, 0.96], [13358, 0.46]],
        },
        "adversary_over_best_bernoulli": None,
        **changes,
    }
    bench = tmp_path / "bench"
    bench.mkdir()
    (bench / "results.json").write_text(json.dumps(results))
    return bench


def test_human_efficiency_section_beside_the_bench_runs(tmp_path):
    from debate_amp.eval.report import human_efficiency_html

    bench = human_efficiency_results(tmp_path)
    html = human_efficiency_html(bench)  # the bench directory itself: both samplers, no run marked
    assert html.startswith("<h2>Human efficiency") and '<table class="final" id="human-efficiency">' in html
    assert "<td>bernoulli_0.1</td>" in html and "<td>adversary</td>" in html and 'class="this-run"' not in html
    assert "<td>1,672</td><td>51.0% (1,672)</td><td>51.0%</td><td>not reached</td>" in html
    assert "<td>13,358</td><td>96.0% (9,925)</td><td>46.0%</td><td>9,925</td>" in html
    (bench / "human_efficiency_adversary").mkdir()
    html = human_efficiency_html(bench / "human_efficiency_adversary")  # one sampler's run: its row marked
    assert html.count('class="this-run"') == 1 and '<tr class="this-run"><td>adversary</td>' in html
    assert 'alt="human efficiency" src="data:image/png;base64,' in html
    assert "rehearsal" not in html  # a bench from before the rehearsal was on: no such column


def test_human_efficiency_section_shows_the_rehearsal_apart(tmp_path):
    from debate_amp.eval.report import human_efficiency_html

    bench = human_efficiency_results(tmp_path, human_efficiency_rehearsal_calls={"adversary": 43122})
    html = human_efficiency_html(bench)
    assert "<th>warm-start labels replayed (not counted)</th>" in html and "nor those of the rehearsal" in html
    assert "<td>9,925</td><td>43,122</td></tr>" in html and "<td>not reached</td><td>-</td></tr>" in html


def test_human_efficiency_section_absent_or_malformed(tmp_path):
    from debate_amp.eval.report import human_efficiency_html

    (tmp_path / "run").mkdir()
    assert human_efficiency_html(tmp_path / "run") == ""  # no results.json
    (tmp_path / "results.json").write_text(json.dumps({"rollout_batched_speedup": 29.0}))
    assert human_efficiency_html(tmp_path / "run") == ""  # a bench run without --human-efficiency
    (tmp_path / "results.json").write_text('{"human_efficiency_curves": {"adversary": [[1, 0.5]]')
    html = human_efficiency_html(tmp_path / "run")
    assert html.startswith("<h2>Human efficiency</h2><p>") and "results.json does not parse" in html
    assert html.count("<p>") == 1 and "<img" not in html
    bad = human_efficiency_results(tmp_path, human_efficiency_curves={"adversary": [[1, "half"]]})
    assert "does not parse: human_efficiency_curves is not" in human_efficiency_html(bad)


def test_human_efficiency_figure_is_a_png():
    from debate_amp.eval.report import human_efficiency_figure

    curves = {"bernoulli_0.1": [[252, 0.38], [777, 0.47]], "adversary": [[6176, 0.59], [9925, 0.96]], "none": []}
    assert human_efficiency_figure(curves, 0.95, highlight="adversary").startswith(b"\x89PNG\r\n\x1a\n")


def test_report_of_the_bench_directory_shows_human_efficiency(tmp_path, capsys):
    from debate_amp.cli import main

    bench = human_efficiency_results(tmp_path)  # results.json only: no metrics.jsonl, transcripts, config, final
    assert main(["report", str(bench), "--out", str(tmp_path / "report.html")]) == 0
    page = (tmp_path / "report.html").read_text()
    assert '<table class="final" id="human-efficiency">' in page and "no metrics.jsonl in this run directory" in page


def test_heldout_evaluation_asks_only_the_skills_it_is_given(tiny_model):
    # A learning curve, or the supervised baseline (gold answers teach no steps), asks for the answers alone: the
    # human's steps are most of the generated tokens. The default asks every skill the task has.
    from debate_amp.eval.heldout import evaluate_heldout

    model, tokenizer = tiny_model
    task = PermTask(n_elements=8, max_power=7)
    questions = task.eval_questions(16, seed=1)
    answers = evaluate_heldout(model, tokenizer, task, questions, max_new_tokens=4, progress=False, skills=("answer",))
    assert {skill for skill, _ in answers.total} == {"answer"}
    assert sum(answers.total.values()) == 16
    every = evaluate_heldout(model, tokenizer, task, questions, max_new_tokens=4, progress=False)
    assert {skill for skill, _ in every.total} == {"answer", "step", "integrate"}
    assert sum(n for (skill, _), n in every.total.items() if skill == "answer") == 16
    assert sum(n for (skill, _), n in every.total.items() if skill == "step") == 16


# ---------------------------------------------------------------------------------------------------------------
# People as judges beside the model judge


def test_people_and_the_model_judge_are_compared_on_the_same_debates(tmp_path):
    """Four judged debates, the even opening right in each, ann right in each: one the model judge got right, two
    forfeited (the rule's winner, odd: the judge was not asked), one whose verdict did not parse. Beside the model
    judge only the first counts: agreement 1/1 (not 1/3), ann 1/1 and the model judge 1/1 there; ann's own accuracy
    after debate stays 4/4 over every debate she judged."""
    from debate_amp.eval.human_judges import format_human_judges, human_judge_statistics
    from debate_amp.serve.judgments import Judgment

    forfeits = [record(winner="odd", update=u) for u in (2, 3)]
    for r in forfeits:
        r["winner"]["forced"] = True
    records = [record(winner="even", update=1), *forfeits, record(winner=None, update=4)]
    path = write_transcripts(tmp_path / "t.jsonl", records)
    rows = load([path]).rows
    assert [(r.winner, r.forfeit, r.even_right) for r in rows] == [
        ("even", False, True),
        ("odd", True, True),
        ("odd", True, True),
        (None, False, True),
    ]
    t = str(path.resolve())
    judgments = [Judgment(t, n, f"u{n}", n, "ann", "4", 70, "even", 80, 1.0, 2.0, 0, 0, 0) for n in (1, 2, 3, 4)]
    stats = human_judge_statistics(rows, judgments)

    def rate(key):
        return stats[key]["successes"], stats[key]["n"]

    assert (stats["judgments"], stats["debates"]) == (4, 4)
    assert rate("naive_accuracy") == rate("accuracy_after_debate") == (4, 4)  # every judged debate
    assert stats["same_debates"] == 1 and stats["same_debates_left_out"] == {"forfeit": 2, "no_verdict": 1}
    assert rate("accuracy_after_debate_same_debates") == (1, 1)
    assert rate("agreement_with_model_judge") == (1, 1)
    assert rate("model_judge_accuracy") == (1, 1)
    text = format_human_judges(stats, "j.sqlite")
    assert "all 4 judged debates:" in text
    assert "same debates: the 1 the model judge gave a verdict in (left out: 2 forfeited, 1 without a verdict):" in text
    for label in ("human accuracy after debate (same debates)", "agreement with the model judge (same debates)"):
        assert re.search(rf"{re.escape(label)}\s+100.0%.*\s1/1$", text, re.M), text
    # nothing left out: no reasons given
    plain = human_judge_statistics(rows[:1], judgments[:1])
    assert plain["same_debates_left_out"] == {"forfeit": 0, "no_verdict": 0}
    assert "same debates: the 1 the model judge gave a verdict in:" in format_human_judges(plain, "j.sqlite")
