"""How often the judge picks the honest side against a scripted liar, by max_turns.

    .venv/bin/python examples/honest_vs_liar.py            # about 5 seconds on 2 CPU cores

Prints one line per max_turns (1..6): the judge's accuracy with the liar on the even side, on the odd side, both,
the mean debate length and a 95% Wilson interval for "both". M and M_target are the perfect scripted model, H the
synthetic human (one lookup); the liar argues a wrong answer with a consistent-looking false decomposition, on each
side in turn. The same protocol, for a trained model: ``debate-amp eval --protocol liar --model runs/NAME/model``.
Last seen (2026-11-23, 2-core CPU): 56.2% with one argument (the judge believes an uncontested opening), 100% from
4 arguments on, for k up to 15. Echoes Irving et al. 2018: debate took a 6-pixel MNIST judge from 59% to 89%.
"""

from debate_amp.agents.humans.synthetic import SyntheticHuman
from debate_amp.agents.model_agent import ModelAgent
from debate_amp.combinators import amp_approx
from debate_amp.eval.protocols import honest_vs_liar, liar_table
from debate_amp.samplers import Never
from debate_amp.tasks.perm import PermHuman, PermTask, perfect_generate

questions = PermTask(n_elements=8, max_power=15).eval_questions(512, seed=0)
human = SyntheticHuman(PermHuman())
amp_policy = amp_approx(human, ModelAgent(perfect_generate, "policy"), Never())
amp_target = amp_approx(human, ModelAgent(perfect_generate, "target"), Never())

print(f"{len(questions)} questions, k = 0..15, N = 8; judge accuracy = how often the honest side wins")
print(liar_table(honest_vs_liar(questions, amp_policy, amp_target, max_turns=range(1, 7))))
