"""One question's amplification tree: Amp~(H, M) answering sigma^13(5) with the perfect scripted model.

    .venv/bin/python examples/amplification_tree.py        # under a second

Prints the tree, one node a line: the posed question's kind (``answer`` or a ``step`` with its workspace of
sub-answers), the x and k it is about, the reply, and who answered it: the synthetic human H (one lookup; it
decomposes sigma^k into two halves) or the policy M; where the sampler sent a call to the human, the model draft
the human's answer replaced. Then the answer against gold and the number of human calls. Approx's sampler asks the
human with probability 0.5 (seeded), so both kinds of node show. The same from the command line:
``debate-amp amp --model perfect --question "..." sampler.kind=bernoulli sampler.p=0.5``.
Last seen (2026-11-23, 2-core CPU): answer 7: correct; human calls 1 (the opening step, which the human answered).
"""

import asyncio

from debate_amp.agents.humans.synthetic import SyntheticHuman
from debate_amp.agents.model_agent import ModelAgent
from debate_amp.cli import render_tree
from debate_amp.combinators import amp_approx
from debate_amp.protocol import Posed
from debate_amp.samplers import Bernoulli
from debate_amp.tasks.perm import PermHuman, parse_question, perfect_generate

question = parse_question("s=37016254 x=5 k=13")
expert = PermHuman()
amp = amp_approx(SyntheticHuman(expert), ModelAgent(perfect_generate, "policy"), Bernoulli(0.5, seed=1))
reply = asyncio.run(amp(Posed("answer", question)))

print(render_tree(reply.trace))
verdict = "correct" if reply.text == str(question.gold) else f"wrong (gold {question.gold})"
print(f"\nanswer {reply.text}: {verdict}; human calls {expert.calls}")
