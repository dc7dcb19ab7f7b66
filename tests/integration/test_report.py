"""``debate-amp report``: one self-contained HTML page, loaded in headless Chromium with no console errors.

Chromium comes from Debian (``make chromium``, which ``make test`` runs). Without it this test fails when ``CI`` is
set and is skipped otherwise.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from debate_amp.agents.humans.synthetic import SyntheticHuman
from debate_amp.agents.model_agent import ModelAgent
from debate_amp.combinators import amp_approx
from debate_amp.debate.engine import ScriptedDebater, run_debates
from debate_amp.debate.transcript import debate_to_record, write_transcripts
from debate_amp.samplers import Bernoulli
from debate_amp.tasks.perm import PermHuman, PermLiar, PermTask, perfect_generate, render_question

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
EVIL = "<script>window.pwned=1</script>&amp;\"'"
PER_UPDATE = 5


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run directory as the trainer leaves it: config.yaml, metrics.jsonl, two updates of transcripts."""
    run = tmp_path_factory.mktemp("report") / "evil<run>"
    human = SyntheticHuman(PermHuman())
    sampler = Bernoulli(0.3, seed=0)  # some nodes answered by the human
    amp_policy = amp_approx(human, ModelAgent(perfect_generate, "policy"), sampler)
    amp_target = amp_approx(human, ModelAgent(perfect_generate, "target"), sampler)
    questions = PermTask(8, 15).eval_questions(16, seed=1)
    metrics = []
    for update in (1, 2):
        # self-play, half of it stopped by force, and debates against the liar (never forced to stop)
        self_play = run_debates(questions[::2], amp_policy, amp_target, 2 * update, 0.5)
        liar = ScriptedDebater(PermLiar(seed=update))
        against = run_debates(questions[1::2], amp_policy, amp_target, 2 * update, 0.5, odd=liar)
        debates = [d for pair in zip(self_play, against, strict=True) for d in pair]
        records = [
            debate_to_record(
                d,
                run="evil<run>",
                update=update,
                question_id=f"u{update}-q{i}" if i else EVIL,
                question=render_question(d.question),
                gold=str(d.question.gold),
                task="perm",
                force_stop_p=0.5,
            )
            for i, d in enumerate(debates)
        ]
        records[1]["turns"][0]["text"] = EVIL  # an argument with markup in it: data, shown escaped
        write_transcripts(run / "transcripts" / f"update_{update:06d}.jsonl", records)
        metrics.append(
            {
                "update": update,
                "objective/alpha": 0.1 * update,
                "loss/policy": 0.5 / update,
                "objective/sup_loss": float("nan"),
            }
            | {"debate/mean_turns": 1.0 + update, "amp/human_call_fraction": 0.3, "perf/rollout_s": 1.5}
        )
    for m in metrics:  # held-out accuracy every other update, as trainer.eval_every writes it
        if m["update"] % 2 == 0:
            m |= {"eval/answer_accuracy_k1": 1.0, "eval/answer_accuracy_k2": 0.2 * m["update"]}
            m |= {"eval/answer_accuracy_k_ge_2": 0.1 * m["update"], "debate/judge_accuracy": 0.5}
    (run / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
    (run / "config.yaml").write_text(f"run:\n  name: {EVIL}\n")
    final = {"heldout_k_le_1": 1.0, "heldout_k_ge_2": 0.4375, "verdict_parse_rate": 0.96, "mean_debate_length": 2.5}
    final["pretrain"] = {"recipe": EVIL, "updates": 20, "human_calls": 70710, "heldout_k_ge_2": 0.9765625}
    (run / "final.json").write_text(json.dumps(final))
    (run / "sft").mkdir()
    (run / "sft" / "heldout.json").write_text(json.dumps({"answer": {"0": 1.0, "1": 1.0, "2": 0.25, "3": 0.35}}))
    return run


@pytest.fixture(scope="module")
def report(run_dir):
    proc = subprocess.run(
        [sys.executable, "-m", "debate_amp.cli", "report", str(run_dir), "--per-update", str(PER_UPDATE)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    path = run_dir / "report.html"
    assert proc.stdout.strip() == f"wrote {path}"
    return path


def test_report_is_self_contained_and_escaped(report):
    html = report.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//|@import|url\(""", html)  # nothing from outside
    pngs = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(pngs) == 7  # the headline figure, then objective, loss, debate, amp, perf, eval
    # what a researcher looks for first comes first: the final table, then held-out accuracy / judge / length
    assert html.index("Final table (final.json)") < html.index('alt="headline curves"') < html.index("Training curves")
    assert "<td>held-out questions asked directly, k &gt;= 2 (beyond the human)</td><td>43.8%</td>" in html
    assert "<td>A[0] (warm start): held-out k &ge; 2</td><td>30.0%</td>" in html
    assert "(20 updates, 70710 human calls): its M, held-out k &ge; 2</td><td>97.7%</td>" in html  # pretrain
    assert "window.pwned" not in html.replace("&lt;script&gt;window.pwned=1&lt;/script&gt;", "")
    evil = "&lt;script&gt;window.pwned=1&lt;/script&gt;&amp;amp;&quot;&#x27;"
    assert html.count(evil) >= 4  # id, argument, config, the pretrain stage's recipe
    assert html.count('<details class="debate"') == 2 * PER_UPDATE
    assert "showing 5 of 16 debates" in html and "judge accuracy" in html
    assert all(f'class="who who-{who}"' in html for who in ("human", "policy", "target", "scripted"))
    assert "continue_0 = false: forced (force_stop_p)" in html and "verdict: <b>" in html


def chromium(*args, user_data_dir):
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={user_data_dir}",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=5000",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def console_messages(stderr: str) -> list[str]:
    """Chromium logs every console message and uncaught exception of the page as ``...:CONSOLE...] "text"``."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


@pytest.fixture()
def need_chromium():
    if CHROMIUM is None:
        message = "chromium not found: install it with `make chromium` (Debian: apt-get install -y chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def test_console_errors_are_detected(tmp_path, need_chromium):
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><body><p>x</p><script>notDefined();</script></body></html>")
    proc = chromium("--dump-dom", page.as_uri(), user_data_dir=tmp_path / "profile")
    assert any("Uncaught ReferenceError: notDefined is not defined" in m for m in console_messages(proc.stderr))


def test_report_loads_in_headless_chromium(report, tmp_path, need_chromium):
    proc = chromium("--dump-dom", report.as_uri(), user_data_dir=tmp_path / "profile")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert console_messages(proc.stderr) == []
    status = re.search(r'<p id="js-status"([^>]*)>', proc.stdout)
    assert status, proc.stdout[-2000:]
    attributes = dict(re.findall(r'data-([a-z]+)="([^"]*)"', status.group(1)))
    assert attributes == {"state": "ok", "debates": str(2 * PER_UPDATE), "images": "7"}  # every plot decoded
    assert f"{2 * PER_UPDATE} of {2 * PER_UPDATE} debates shown" in proc.stdout

    shot = tmp_path / "report.png"
    chromium(f"--screenshot={shot}", "--window-size=1280,1600", report.as_uri(), user_data_dir=tmp_path / "profile2")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
