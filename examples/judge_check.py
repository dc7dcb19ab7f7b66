"""Can the tiny model learn the judge's lookup check? Verdicts alone, trained from scratch.

    .venv/bin/python examples/judge_check.py --examples 64000                        # ~4 min, one thread
    .venv/bin/python examples/judge_check.py --examples 200000 --lookups-only --show-check \
        --recent-first model.shared_layers=false                                   # ~13 min
    .venv/bin/python examples/judge_check.py --examples 400 --eval 200             # the mechanics, seconds

The verdict that decides a debate against the scripted liar is the judge's check of a one-lookup claim
(``judge_winner``: the last argument ``no 4^1=7`` wins if sigma(4) = 7). This trains the default tiny model
(``recipes/default.yaml``'s ``model.*``, any ``key=value`` overrides after the options) on nothing but winner
judgments ``... W=`` of debates between the honest debater and ``PermLiar`` (liar on a random side or none, 1-4
arguments, cut where the judge's ``sufficient`` rule would stop), in batches of 32 at AdamW 1e-3 (one thread unless
``--threads``), and prints held-out accuracy (exact reply) by how the debate ended, every 500 steps. Debates cut
off before a lookup, whose verdict is the transcript's coin flip, are left out of both sets.

- ``--recent-first``: the arguments listed newest first, so the argument the judge checks sits at a fixed position;
- ``--show-check``: the judge's reply to a lookup-level claim starts with the value it looked up (``5 odd``), an
  8-way target for the lookup rather than one bit;
- ``--lookups-only``: only debates that end on a lookup-level claim;
- ``--relative``: the verdict says whether the last argument ``stands`` or ``falls`` rather than naming a side (the
  side is the argument's parity, which code knows), so the target is the check itself, not the check XOR parity;
- ``--mix-answers``: as many direct lookups ``s=... x=4 k=1 A=`` mixed in (the warm start teaches those);
- ``--aligned``: the last claim's value also written under sigma at its key's position (``s=37016254 c=....7...``),
  so that the check is a comparison of two digits a fixed distance apart, with nothing to look up by content.

Last seen: docs/training.md ("The judge's lookup check", 2026-12-01/03): with four heads no width-64 variant learned
it, ``--aligned`` included; width 128 with ``--show-check --recent-first`` did (100% from step 2,500), and so did
width 64 with eight heads (``model.num_heads=8``: 100% at 4,500 steps of 250,000 debates, seed 0; 91% / 82% on true /
false claims at 4,766 steps, seed 1); in today's format neither within the steps measured. In the full warm start
the check was not learned (branch ``exp/check-format``).

This script poses the verdict directly (``... W=``). The debates' judge, Amp~(H, M_target), is M's draft of the
human's step towards it (``... SW=`` -> ``ans odd``; tests/unit/test_amp.py), which a model taught the direct form
answers far worse (95% against 50.5% of false claims, twenty-third session). The branch ``exp/check-format``, whose
copy of this script had ``--form step``, was not kept (docs/training.md has what it measured).
"""

import argparse
import collections
import itertools
import random
import time

import torch

from debate_amp.config import load_config
from debate_amp.models import build_tiny_model
from debate_amp.protocol import Posed
from debate_amp.tasks.perm import (
    AGREE,
    Example,
    PermLiar,
    PermQuestion,
    answer_prompt,
    is_sufficient,
    judge_winner,
    parse_argument,
    power,
    render_claim,
    render_posed,
)
from debate_amp.trainer.sft import imitation_dataset, make_task


def honest_claim(q: PermQuestion, x: int, k: int, no: bool) -> str:
    if k <= 1:
        return render_claim(x, k, power(q.sigma, x, k), no=no)
    x0 = q.sigma[x] if k % 2 else x
    return render_claim(x, k, power(q.sigma, x, k), via=power(q.sigma, x0, k // 2), no=no)


def honest(q: PermQuestion, context: list[str]) -> str:
    """The honest debater, from gold values (what Amp(H, M) argues with a perfect model)."""
    previous = parse_argument(context[-1], len(q.sigma)) if context else None
    if previous is None or previous.agree:
        return honest_claim(q, q.x, q.k, no=False)
    if previous.k <= 1:
        true = power(q.sigma, previous.x, previous.k)
        return AGREE if true == previous.value else honest_claim(q, previous.x, previous.k, no=True)
    for claim in previous.subclaims(q.sigma):
        if power(q.sigma, claim.x, claim.k) != claim.value:
            return honest_claim(q, claim.x, claim.k, no=True)
    return AGREE


def ending(q: PermQuestion, context: list[str]) -> str:
    last = parse_argument(context[-1], len(q.sigma))
    if last is None:
        return "garbage"
    if last.agree:
        return "agree"
    if last.k <= 1:
        return "lookup true" if power(q.sigma, last.x, last.k) == last.value else "lookup false"
    return "opening" if len(context) == 1 else "coin flip"


def debate_verdict(task, rng: random.Random, heldout: bool, args) -> Example:
    q = task.sample(rng, heldout=heldout)
    liar, liar_side = PermLiar(seed=rng.randrange(2**31)), rng.choice(["even", "odd", None])
    context: list[str] = []
    for t in range(rng.randint(1, 4)):
        side = "even" if t % 2 == 0 else "odd"
        context.append(liar.argue(q, tuple(context)) if side == liar_side else honest(q, context))
        if is_sufficient(q, context[-1]):
            break
    verdict, kind = judge_winner(q, tuple(context)), ending(q, context)
    if args.relative:  # the last argument's side wins: it stands; else it falls
        verdict = "stands" if verdict == ("even" if len(context) % 2 else "odd") else "falls"
    if args.show_check and kind.startswith("lookup"):
        last = parse_argument(context[-1], len(q.sigma))
        verdict = f"{power(q.sigma, last.x, last.k)} {verdict}"
    shown = context[::-1] if args.recent_first else context
    prompt = render_posed(Posed("winner", q, tuple(shown)))
    if args.aligned:  # the last claim's value written under sigma at its key's position: c=....7...
        last, n = parse_argument(context[-1], len(q.sigma)), len(q.sigma)
        row = ["."] * n
        if last is not None and not last.agree and 0 <= last.x < n:
            row[last.x] = str(last.value)
        prompt = prompt[: 2 + n] + " c=" + "".join(row) + prompt[2 + n :]
    return Example(prompt, verdict, kind, q.k, q)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=64000, help="training debates drawn (before filtering)")
    parser.add_argument("--eval", type=int, default=3000, help="held-out debates drawn (before filtering)")
    parser.add_argument("--recent-first", action="store_true")
    parser.add_argument("--show-check", action="store_true")
    parser.add_argument("--lookups-only", action="store_true")
    parser.add_argument("--mix-answers", action="store_true")
    parser.add_argument("--relative", action="store_true")
    parser.add_argument("--aligned", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("overrides", nargs="*", help="recipe overrides for the model, e.g. model.shared_layers=false")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    cfg = load_config("recipes/default.yaml", args.overrides)
    task = make_task(cfg)

    rng = random.Random(args.seed)
    train = [debate_verdict(task, rng, False, args) for _ in range(args.examples)]
    train = [e for e in train if e.kind != "coin flip" and (not args.lookups_only or e.kind.startswith("lookup"))]
    if args.mix_answers:
        lookups = (q for q in (task.sample(rng) for _ in itertools.count()) if q.k <= 1)
        train += [
            Example(answer_prompt(q), str(q.gold), "answer", q.k, q) for q in itertools.islice(lookups, len(train))
        ]
        rng.shuffle(train)
    held_rng = random.Random(args.seed + 99)
    test = [debate_verdict(task, held_rng, True, args) for _ in range(args.eval)]
    test = [e for e in test if e.kind != "coin flip"]
    print(f"training on {len(train)} examples: {dict(collections.Counter(e.kind for e in train))}")
    print(f"e.g. {train[0].prompt!r} -> {train[0].completion!r}")

    model, tokenizer = build_tiny_model(cfg.model, seed=args.seed)
    train_set, test_set = imitation_dataset(tokenizer, train), imitation_dataset(tokenizer, test)
    train_rows, train_masks = train_set["input_ids"], train_set["completion_mask"]

    def batch(rows: list[list[int]], masks: list[list[int]]) -> tuple[torch.Tensor, ...]:
        width = max(map(len, rows))  # left padding, as the trainer pads
        ids = torch.full((len(rows), width), tokenizer.pad_token_id)
        attention, completion = torch.zeros_like(ids), torch.zeros_like(ids)
        for i, (row, mask) in enumerate(zip(rows, masks, strict=True)):
            ids[i, width - len(row) :] = torch.tensor(row)
            attention[i, width - len(row) :] = 1
            completion[i, width - len(row) :] = torch.tensor(mask)
        return ids, attention, completion

    def errors(ids, attention, completion) -> tuple[torch.Tensor, torch.Tensor]:
        logits = model(input_ids=ids, attention_mask=attention).logits[:, :-1]
        target, mask = ids[:, 1:], completion[:, 1:].bool()
        loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), target, reduction="none")
        return (loss * mask).sum() / mask.sum(), ((logits.argmax(-1) == target) | ~mask).all(-1)

    def evaluate() -> str:
        model.eval()
        right: dict[str, list[bool]] = collections.defaultdict(list)
        with torch.no_grad():
            for start in range(0, len(test), 256):
                chunk = test_set[start : start + 256]
                _, exact = errors(*batch(chunk["input_ids"], chunk["completion_mask"]))
                for example, ok in zip(test[start : start + 256], exact.tolist(), strict=True):
                    right[example.kind].append(ok)
        model.train()
        return "  ".join(f"{kind} {sum(v) / len(v):.1%}" for kind, v in sorted(right.items()))

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    order = list(range(len(train)))
    random.Random(args.seed).shuffle(order)
    began, step = time.perf_counter(), 0
    for start in range(0, len(order) - 31, 32):
        idx = order[start : start + 32]
        loss, _ = errors(*batch([train_rows[i] for i in idx], [train_masks[i] for i in idx]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        step += 1
        if step % 500 == 0:
            print(f"step {step:>5}  loss {loss.item():.3f}  {evaluate()}  ({time.perf_counter() - began:.0f} s)")
    print(f"final {step:>5} steps  {evaluate()}  ({time.perf_counter() - began:.0f} s)")


if __name__ == "__main__":
    main()
