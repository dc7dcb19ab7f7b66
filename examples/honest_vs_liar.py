"""How often the judge picks the honest side against a scripted liar, by max_turns.

    .venv/bin/python examples/honest_vs_liar.py            # about 5 seconds on 2 CPU cores

M and M_target are the perfect scripted model, H the synthetic human (one lookup); the liar argues a wrong answer
with a consistent-looking false decomposition, on each side in turn. Last seen (2026-11-23, 2-core CPU): 56% with
one argument (the judge believes an uncontested opening), 100% from 4 arguments on, for k up to 15.
Echoes Irving et al. 2018: debate took a 6-pixel MNIST judge from 59% to 89%.
"""

from debate_amp.agents.humans.synthetic import SyntheticHuman
from debate_amp.agents.model import ModelAgent
from debate_amp.combinators import amp_approx
from debate_amp.debate.engine import ScriptedDebater, run_debates
from debate_amp.samplers import Never
from debate_amp.tasks.perm import PermHuman, PermLiar, PermTask, perfect_generate

questions = PermTask(n_elements=8, max_power=15).eval_questions(512, seed=0)
human = SyntheticHuman(PermHuman())
amp_policy = amp_approx(human, ModelAgent(perfect_generate, "policy"), Never())
amp_target = amp_approx(human, ModelAgent(perfect_generate, "target"), Never())

print(f"{len(questions)} questions, k = 0..15, N = 8; judge accuracy = how often the honest side wins")
print(f"{'max_turns':>9}  {'liar even':>9}  {'liar odd':>9}  {'both':>6}  {'mean turns':>10}")
for max_turns in range(1, 7):
    accuracy, turns = {}, []
    for liar_side, honest in (("even", "odd"), ("odd", "even")):
        liar = {liar_side: ScriptedDebater(PermLiar(seed=max_turns))}
        debates = run_debates(questions, amp_policy, amp_target, max_turns, **liar)
        accuracy[liar_side] = sum(d.winner.value == honest for d in debates) / len(debates)
        turns += [len(d.turns) for d in debates]
    both = (accuracy["even"] + accuracy["odd"]) / 2
    print(
        f"{max_turns:>9}  {accuracy['even']:>9.1%}  {accuracy['odd']:>9.1%}  {both:>6.1%}  {sum(turns) / len(turns):>10.2f}"
    )
