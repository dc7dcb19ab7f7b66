"""Fuzzing the three doors bad input comes through (issue 12): recipes, transcript files, model replies.

Seeded (``derandomize``), so a failure reproduces; Hypothesis prints the smallest input that failed.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import random
from pathlib import Path

import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from debate_amp import cli
from debate_amp.protocol import Generation

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = yaml.safe_load((ROOT / "recipes" / "default.yaml").read_text())
FUZZ = settings(derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck))

# Values of every JSON / YAML shape, odd ones included.
values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**12), max_value=10**12)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.sampled_from(["", "/no/such/dir", "../..", "1e3", "true", "~", "\x00", "nan", "[1, 2", "{a: 1}"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)


def _paths(data, prefix=()):
    """Every key path of a nested mapping, sections included."""
    for key, value in data.items():
        yield (*prefix, key)
        if isinstance(value, dict):
            yield from _paths(value, (*prefix, key))


RECIPE_PATHS = list(_paths(DEFAULT))


def _set(data, path, value):
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


def _main(argv) -> tuple[int, str]:
    """``debate-amp ARGV`` in this process: (exit code, stderr). Anything but a clean exit raises, failing the test."""
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            code = cli.main(argv)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
    return code, err.getvalue()


@st.composite
def bad_recipes(draw) -> bytes:
    kind = draw(st.sampled_from(["value", "value", "value", "unknown key", "binary", "not a mapping", "yaml"]))
    if kind == "binary":
        return draw(st.binary(min_size=1, max_size=200))
    if kind == "not a mapping":
        return yaml.safe_dump(draw(st.lists(values, max_size=3) | st.integers() | st.text(max_size=20))).encode()
    if kind == "yaml":
        return draw(st.text(max_size=120)).encode()
    data = copy.deepcopy(DEFAULT)
    path = draw(st.sampled_from(RECIPE_PATHS))
    if kind == "unknown key":
        path = (*path[:-1], path[-1] + draw(st.sampled_from(["_", "s", "x", "2"])))
    _set(data, path, draw(values))
    return yaml.safe_dump(data).encode()


@settings(FUZZ, max_examples=200)
@given(bad_recipes())
def test_200_mutated_recipes_load_or_fail_in_one_line(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("recipe") / "recipe.yaml"
    path.write_bytes(text)
    code, err = _main(["config", str(path)])
    event(f"exit {code}")
    lines = err.strip().splitlines()
    assert code in (0, 2), err
    if code == 2:
        assert len(lines) == 1 and lines[0].startswith("debate-amp: error: "), err
    assert "Traceback" not in err


def _record():
    from tests.unit.test_eval import record

    return record(arguments=["5^6=4 via 3", "agree"], continues=[True, False], costs=[0.0, 0.0])


def _record_paths(data, prefix=()):
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for key, value in items:
        yield (*prefix, key)
        yield from _record_paths(value, (*prefix, key))


RECORD_PATHS = list(_record_paths(_record()))


@st.composite
def bad_transcripts(draw) -> str:
    lines = []
    for _ in range(draw(st.integers(1, 3))):
        data = _record()
        for _ in range(draw(st.integers(0, 2))):
            path = draw(st.sampled_from(RECORD_PATHS))
            with contextlib.suppress(KeyError, IndexError, TypeError):  # the path went with an earlier mutation
                _set(data, path, draw(values))
        line = json.dumps(data, separators=(",", ":"))
        if draw(st.integers(0, 9)) == 0:
            line = line[: draw(st.integers(0, len(line)))]  # a record cut short
        lines.append(line)
    return "\n".join(lines) + "\n"


@settings(FUZZ, max_examples=200)
@given(bad_transcripts())
def test_200_mutated_transcript_files_load_or_name_file_and_line(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("transcripts") / "update_000001.jsonl"
    path.write_text(text)
    code, err = _main(["eval", str(path)])
    event(f"exit {code}")
    assert code in (0, 2), err
    if code == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"debate-amp: error: {path}:"), err


@settings(FUZZ, max_examples=50)
@given(st.lists(st.binary(max_size=48), min_size=1, max_size=8), st.integers(0, 2**31))
def test_50_random_byte_strings_as_model_replies_never_crash_a_debate(replies, seed):
    order = random.Random(seed)

    def babble(prompts, limits=None):
        texts = [order.choice(replies).decode("utf-8", errors="replace") for _ in prompts]
        return Generation(texts, [[] for _ in texts], [[] for _ in texts])

    original = cli._generate_fn
    cli._generate_fn = lambda *args, **kwargs: babble
    try:
        code, err = _main(["debate", "--model", "perfect", "--question", "s=37016254 x=5 k=13", "sampler.kind=never"])
    finally:
        cli._generate_fn = original
    assert code == 0, err


def test_a_replay_human_without_the_answer_ends_amp_and_debate_in_one_line(tmp_path):
    nothing = tmp_path / "none.jsonl"
    nothing.write_text("")
    for command in ("amp", "debate"):
        argv = [command, "--model", "perfect", "--question", "s=37016254 x=5 k=13", "human.kind=replay"]
        code, err = _main([*argv, f"human.replay_from={nothing}", "sampler.kind=always"])
        lines = err.strip().splitlines()
        assert code == 1 and len(lines) == 1 and lines[0].startswith("debate-amp: error:"), err
        assert "no recorded answer" in lines[0]


STEP_LANGUAGE = [
    *("ask 5^1", "ask 3^1;#1^1", "ask 9^1", "ask 2^2;#1^2", "ask 1^3;#1^3", "ask #1^1"),
    *("ans agree", "ans no 5^1=3", "ans 5^3=2 via 1", "ans no 2^1=7", "ans 6^7=1 via 4", "ans odd", "ans even"),
    *("ans yes", "ans no", "ans 1", "ans 0", "ans ?", "3", "odd", "agree", "?", "ask", ""),
]


@settings(FUZZ, max_examples=50)
@given(st.lists(st.sampled_from(STEP_LANGUAGE), min_size=1, max_size=8), st.integers(0, 2**31), st.floats(0, 1))
def test_50_model_replies_in_the_step_language_never_crash_a_debate_or_the_human(replies, seed, p):
    """Model replies in the step language, asking subquestions that refer to nothing or are out of range, or
    answering a question with another kind's answer, leave the synthetic human (asked with probability p) with
    workspaces of any content: data, not a crash. (With a step allowed to ask one subquestion, tried in the
    twenty-fourth session, a workspace one value short crashed the debater's check; this caught it.)"""
    from debate_amp.agents.humans.synthetic import SyntheticHuman
    from debate_amp.agents.model_agent import ModelAgent
    from debate_amp.combinators import amp_approx
    from debate_amp.debate.engine import ScriptedDebater, run_debates
    from debate_amp.samplers import Bernoulli
    from debate_amp.tasks.perm import PermHuman, PermLiar, PermTask

    order = random.Random(seed)

    def fn(prompts, limits=None):
        texts = [order.choice(replies) for _ in prompts]
        return Generation(texts, [[] for _ in texts], [[] for _ in texts])

    amp = amp_approx(SyntheticHuman(PermHuman()), ModelAgent(fn), Bernoulli(p, seed=seed))
    questions = PermTask(8, 7).questions(6, seed=seed)
    liar = ScriptedDebater(PermLiar(seed))
    for even, odd in ((None, None), (liar, None), (None, liar)):
        debates = run_debates(questions, amp, amp, 4, seed=seed, even=even, odd=odd)
        assert len(debates) == len(questions) and all(d.turns for d in debates)
