"""How often the judge picks the honest side against a scripted liar, by max_turns.

    .venv/bin/python examples/honest_vs_liar.py              # perm; about 5 seconds on 2 CPU cores
    .venv/bin/python examples/honest_vs_liar.py --task add   # any registered task, with its default settings

Prints one line per max_turns (1..6): the judge's accuracy with the liar on the even side, on the odd side, both,
the mean debate length and a 95% Wilson interval for "both". M and M_target are the task's perfect scripted model,
H its synthetic human; the liar (``Task.liar``) argues a wrong answer with a consistent-looking false decomposition,
on each side in turn. The same protocol, for a trained model: ``debate-amp eval --protocol liar --model
runs/NAME/model``. Last seen (2026-11-23, 2-core CPU, perm): 56.2% with one argument (the judge believes an
uncontested opening), 100% from 4 arguments on, for k up to 15. Echoes Irving et al. 2018: debate took a 6-pixel
MNIST judge from 59% to 89%. Then where the honest side lost, and the judge's agreement with its rule by the number
of arguments, where the last argument stands and where it falls (a trained judge that guesses from the debate's
length shows it there: docs/eval.md).
"""

import argparse

from debate_amp.agents.humans.synthetic import SyntheticHuman
from debate_amp.agents.model_agent import ModelAgent
from debate_amp.combinators import amp_approx
from debate_amp.eval.protocols import honest_vs_liar, judge_table, liar_table, loss_table
from debate_amp.samplers import Never
from debate_amp.tasks import TASKS, task_named
from debate_amp.tasks.perm import PermTask

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--task", default="perm", choices=sorted(TASKS), help="the task (default perm, k up to 15)")
parser.add_argument("--n", type=int, default=512, help="held-out questions (default 512)")
args = parser.parse_args()

task = PermTask(n_elements=8, max_power=15) if args.task == "perm" else task_named(args.task)
questions = task.eval_questions(args.n, seed=0)
human = SyntheticHuman(task.human())
amp_policy = amp_approx(human, ModelAgent(task.perfect_generate, "policy"), Never())
amp_target = amp_approx(human, ModelAgent(task.perfect_generate, "target"), Never())

print(f"{len(questions)} {task.name} questions, {task.summary()}; judge accuracy = how often the honest side wins")
rows = honest_vs_liar(task, questions, amp_policy, amp_target, max_turns=range(1, 7))
print(liar_table(rows))
print("where the honest side lost (with perfect debaters and judge: only the protocol's own limit):")
print(loss_table(rows))
print("does the judge check the last argument or guess? (the perfect judge checks: its rule every time)")
print(judge_table(rows))
