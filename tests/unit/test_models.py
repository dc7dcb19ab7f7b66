import logging

import pytest
import torch
from transformers.utils import logging as transformers_logging

from debate_amp.config import LoraConfig, ModelConfig
from debate_amp.generation import generate
from debate_amp.models import (
    PROMPT_END,
    ValueHead,
    apply_lora,
    build_tiny_model,
    byte_tokenizer,
    encode_prompts,
    hidden_size_of,
    load_model,
    prefix_lm_mask,
    save_model,
)


def test_byte_tokenizer_round_trips_and_ends_prompts():
    tok = byte_tokenizer()
    assert len(tok) == 260
    text = "s=37016254 x=5 k=6 A= héllo→"
    ids = tok(text, add_special_tokens=False).input_ids
    assert tok.decode(ids) == text
    assert tok.eos_token_id not in ids
    # A prompt ends with <prompt_end>; prompt + completion is the prompt's tokens and then the completion's.
    prompt_end = tok.convert_tokens_to_ids(PROMPT_END)
    assert encode_prompts(tok, ["s=3 A="]) == [tok("s=3 A=", add_special_tokens=False).input_ids + [prompt_end]]
    assert tok.decode(encode_prompts(tok, ["s=3 A="])[0], skip_special_tokens=True) == "s=3 A="


def test_tiny_model_default_size():
    model, _ = build_tiny_model(ModelConfig())
    n = sum(p.numel() for p in model.parameters())
    assert 50e3 < n < 150e3, n  # one block of width 64, applied 4 times
    assert hidden_size_of(model) == ModelConfig().hidden_size


def test_tiny_model_is_seeded(tiny_model_cfg):
    a, _ = build_tiny_model(tiny_model_cfg, seed=1)
    b, _ = build_tiny_model(tiny_model_cfg, seed=1)
    c, _ = build_tiny_model(tiny_model_cfg, seed=2)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters(), strict=True))


def test_save_and_load_a_local_directory(tiny_model, tiny_model_cfg, tmp_path):
    model, tok = tiny_model
    save_model(model, tok, tmp_path / "m")
    loaded, loaded_tok = load_model(tiny_model_cfg, tmp_path / "m")
    ids = tok(["x=1 k=2 A="], return_tensors="pt").input_ids
    assert type(loaded) is type(model) and loaded.config.prompt_end_token_id == model.config.prompt_end_token_id
    torch.testing.assert_close(model(ids).logits, loaded(ids).logits)
    assert loaded_tok("abc").input_ids == tok("abc").input_ids
    # cfg.path is honoured the same way
    again, _ = load_model(ModelConfig(path=str(tmp_path / "m")))
    torch.testing.assert_close(model(ids).logits, again(ids).logits)


def test_a_save_killed_midway_leaves_the_folder_as_it_was_and_the_next_save_whole(tiny_model, tmp_path, monkeypatch):
    """A[0]'s ``config.json`` is what says a warm start is on disk: a save killed after it was written must not
    leave one beside missing weights (the next run would load a broken A[0] instead of redoing it)."""
    model, tok = tiny_model
    path = tmp_path / "sft"

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # the process dies between the model's files and the tokenizer's

    monkeypatch.setattr(tok, "save_pretrained", killed)
    with pytest.raises(KeyboardInterrupt):
        save_model(model, tok, path)
    assert not path.exists() and (tmp_path / ".partial-sft" / "config.json").is_file()  # half written, aside
    monkeypatch.undo()
    save_model(model, tok, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sft"]  # the leftover cleared
    old = (path / "model.safetensors").stat().st_ino
    save_model(model, tok, path)  # over a whole one: replaced, never mixed
    assert (path / "model.safetensors").stat().st_ino != old and sorted(p.name for p in tmp_path.iterdir()) == ["sft"]
    loaded, _ = load_model(ModelConfig(path=str(path)))
    ids = tok(["x=1 k=2 A="], return_tensors="pt").input_ids
    torch.testing.assert_close(model(ids).logits, loaded(ids).logits)


def test_load_model_rejects_a_directory_that_is_not_a_model(tmp_path, tiny_model_cfg):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_model(tiny_model_cfg, tmp_path)


def test_lora_trains_only_adapters(tiny_model):
    model, _ = tiny_model
    peft_model = apply_lora(model, LoraConfig(enabled=True, r=4))
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)


def test_value_head_starts_at_zero_and_has_per_token_values(tiny_model):
    model, tok = tiny_model
    head = ValueHead(hidden_size_of(model))
    ids = tok(["abc", "abd"], return_tensors="pt").input_ids
    hidden = model(ids, output_hidden_states=True).hidden_states[-1]
    values = head(hidden)
    assert values.shape == ids.shape
    assert torch.count_nonzero(values) == 0
    values.sum().backward()
    assert head.summary.weight.grad is not None


def test_batched_generation_matches_one_at_a_time(tiny_model):
    # Left padding must not change what the model says: a batched greedy reply equals the unbatched one.
    model, tok = tiny_model
    prompts = ["x=1 k=2 A=", "s=0:1 1:0 x=1 k=1 S=", "a"]
    batched = generate(model, tok, prompts, max_new_tokens=8)
    for i, prompt in enumerate(prompts):
        alone = generate(model, tok, [prompt], max_new_tokens=8)
        assert alone.token_ids[0] == batched.token_ids[i]
        assert alone.texts[0] == batched.texts[i]
        torch.testing.assert_close(
            torch.tensor(alone.logprobs[0]), torch.tensor(batched.logprobs[i]), atol=1e-4, rtol=1e-4
        )
    assert all(len(ids) == len(lp) <= 8 for ids, lp in zip(batched.token_ids, batched.logprobs, strict=True))


def test_a_reply_stops_where_its_row_would_run_past_the_position_table(tiny_model):
    # A long debate prompt near the tiny model's 128 positions gets a shorter reply instead of an IndexError in the
    # position table; a short prompt in the same batch is not cut short by it; a prompt longer than the table
    # itself still answers (model output is data).
    model, tok = tiny_model
    long, short = "s" * 110 + " A=", "x=1 A="
    batched = generate(model, tok, [long, short], max_new_tokens=32)
    room = 128 - len(tok([long]).input_ids[0])
    assert 0 < len(batched.token_ids[0]) <= room < 32
    reply = batched.token_ids[1]  # runs to its own end or to 32 tokens, not to the long row's room
    assert len(reply) == 32 or reply[-1] == tok.eos_token_id
    assert len(reply) > room or reply[-1] == tok.eos_token_id
    alone = generate(model, tok, [long], max_new_tokens=32).token_ids[0]
    assert 0 < len(alone) <= room and alone[: room - 1] == batched.token_ids[0][: room - 1]
    assert len(generate(model, tok, ["s" * 200 + " A="], max_new_tokens=32).token_ids[0]) == 1


def test_no_position_warning_while_every_row_fits_the_table(tiny_model):
    # transformers warns when the padded batch is wider than the position table (it showed in `make bench`'s add
    # run); each row is capped inside the table (the test above), so generate() drops that warning, and only then:
    # a prompt longer than the table itself does run past it, and is warned about.
    model, tok = tiny_model
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("transformers.generation.stopping_criteria")
    logger.addHandler(handler)
    try:
        transformers_logging.warning_once.cache_clear()  # it warns once per process
        generate(model, tok, ["s" * 110 + " A=", "x=1 A="], max_new_tokens=32)
        inside = [r.getMessage() for r in records]
        transformers_logging.warning_once.cache_clear()
        generate(model, tok, ["s" * 200 + " A=", "x=1 A="], max_new_tokens=32)
    finally:
        logger.removeHandler(handler)
    assert inside == []
    assert any("maximum length (128)" in r.getMessage() for r in records)


def test_sampled_logprobs_are_the_sampling_distribution(tiny_model):
    model, tok = tiny_model
    torch.manual_seed(0)
    out = generate(model, tok, ["x=1"], max_new_tokens=4, temperature=1.0)
    ids = tok(["x=1"], return_tensors="pt").input_ids
    full = torch.cat([ids, torch.tensor([out.token_ids[0]])], dim=1)
    logits = model(full).logits[0, ids.shape[1] - 1 : -1]
    logits[:, tok.convert_tokens_to_ids(PROMPT_END)] = float("-inf")  # never sampled: a reply does not end a prompt
    expected = torch.log_softmax(logits, -1).gather(-1, torch.tensor(out.token_ids[0])[:, None]).squeeze(-1)
    torch.testing.assert_close(torch.tensor(out.logprobs[0]), expected, atol=1e-4, rtol=1e-4)


def test_row_limits_cap_each_reply_without_changing_the_others(tiny_model):
    model, tok = tiny_model
    prompts = ["x=1 k=2 A=", "s=0:1 1:0 x=1 k=1 S=", "abc"]
    free = generate(model, tok, prompts, max_new_tokens=10)
    capped = generate(model, tok, prompts, max_new_tokens=10, row_limits=[3, 10, 1])
    assert len(capped.token_ids[0]) <= 3 and capped.token_ids[2] == [tok.eos_token_id]
    assert capped.token_ids[1] == free.token_ids[1]  # an uncapped row is untouched
    assert capped.token_ids[0][:2] == free.token_ids[0][:2]  # a capped row agrees until its cap


# ---------------------------------------------------------------------------------------------------------------
# The prefix-LM: the prompt read both ways, the reply causally


def test_prefix_mask_reads_the_prompt_both_ways_and_the_reply_causally():
    end, pad = 9, 0
    # row 0: prompt of 3 (the third is <prompt_end>), reply of 2; row 1: left padding of 2, prompt of 2, reply of 1
    ids = torch.tensor([[5, 6, end, 7, 8], [pad, pad, 5, end, 7]])
    attention = torch.tensor([[1, 1, 1, 1, 1], [0, 0, 1, 1, 1]])
    visible = prefix_lm_mask(ids, attention, end)[:, 0]  # [B, Q, K]
    assert visible[0, 0, 1] and visible[0, 0, 2]  # a prompt token sees later prompt tokens
    assert not visible[0, 0, 3] and not visible[0, 2, 3]  # ... but not the reply
    assert visible[0, 3, :4].all() and not visible[0, 3, 4]  # a reply token: everything before it, nothing after
    assert visible[1, 2, 3] and not visible[1, 2, 4]
    assert not visible[1, 2:, :2].any()  # padding is never seen by a real token
    assert visible[1, 0, 0] and visible[1, 1, 1]  # a padding row sees itself only (never empty, never NaN)
    # a decoding step (the prompt already in the cache) is causal: it sees all 5 cached tokens and itself
    step = prefix_lm_mask(torch.tensor([[3]]), torch.ones(1, 6, dtype=torch.long), end, past_length=5)
    assert step.shape == (1, 1, 1, 6) and step.all()


def test_the_model_reads_its_prompt_both_ways_and_its_reply_causally(tiny_model):
    model, tok = tiny_model
    prompt = encode_prompts(tok, ["s=37016254 x=5 k=6 A="])[0]
    reply = tok("4 via 3", add_special_tokens=False).input_ids
    base = torch.tensor([prompt + reply])
    hidden = model(base, output_hidden_states=True).hidden_states[-1][0]

    later_prompt = base.clone()
    later_prompt[0, len(prompt) - 3] = tok.convert_tokens_to_ids("7")  # k=6 -> k=7
    changed = model(later_prompt, output_hidden_states=True).hidden_states[-1][0]
    assert not torch.allclose(hidden[2], changed[2])  # sigma's first entry sees k, which comes after it

    later_reply = base.clone()
    later_reply[0, -1] = tok.convert_tokens_to_ids("5")
    changed = model(later_reply, output_hidden_states=True).hidden_states[-1][0]
    torch.testing.assert_close(hidden[:-1], changed[:-1])  # nothing before the last token sees it


def test_the_backbone_alone_builds_the_prefix_mask(tiny_model):
    # TRL's warm start calls the backbone and applies the head itself: the mask must not live in the head's forward
    model, tok = tiny_model
    ids = torch.tensor(encode_prompts(tok, ["s=37016254 x=5 k=6 A="]))
    backbone = model.transformer(ids).last_hidden_state
    torch.testing.assert_close(backbone, model(ids, output_hidden_states=True).hidden_states[-1])
    later = ids.clone()
    later[0, -3] = tok.convert_tokens_to_ids("7")
    assert not torch.allclose(backbone[0, 2], model.transformer(later).last_hidden_state[0, 2])


def test_padding_changes_nothing_the_model_computes(tiny_model):
    model, tok = tiny_model
    prompts = ["s=37016254 x=5 k=6 A=", "s=10 x=1 k=1 S="]
    alone = [model(torch.tensor(encode_prompts(tok, [p]))).logits[0, -1] for p in prompts]
    for side in ("left", "right"):
        tok.padding_side = side
        batch = tok(prompts, return_tensors="pt", padding=True)
        logits = model(**batch).logits
        last = batch.attention_mask.sum(1) - 1 if side == "right" else torch.full((2,), logits.shape[1] - 1)
        for i in range(2):
            torch.testing.assert_close(logits[i, last[i]], alone[i], atol=1e-5, rtol=1e-5)


def test_generation_with_and_without_the_kv_cache_agrees(tiny_model):
    model, tok = tiny_model
    tok.padding_side = "left"
    batch = tok(["s=37016254 x=5 k=6 A=", "s=10 x=1 k=1 S=", "abc"], return_tensors="pt", padding=True)
    common = {"max_new_tokens": 8, "do_sample": False, "pad_token_id": tok.pad_token_id, "eos_token_id": -1}
    cached = model.generate(**batch, use_cache=True, **common)
    uncached = model.generate(**batch, use_cache=False, **common)
    assert cached.shape[1] == batch.input_ids.shape[1] + 8
    assert torch.equal(cached, uncached)


def test_eager_and_sdpa_attention_agree(tiny_model_cfg):
    model, tok = build_tiny_model(tiny_model_cfg, seed=0)
    tok.padding_side = "left"
    batch = tok(["s=37016254 x=5 k=6 A=", "ab"], return_tensors="pt", padding=True)
    sdpa = model(**batch).logits
    model.config._attn_implementation = "eager"
    eager = model(**batch).logits
    real = batch.attention_mask.bool()
    torch.testing.assert_close(sdpa[real], eager[real], atol=1e-5, rtol=1e-5)


def test_shared_layers_are_one_block_saved_once_and_loaded_tied(tmp_path):
    cfg = ModelConfig(hidden_size=32, num_layers=3, num_heads=2, intermediate_size=64, shared_layers=True)
    model, tok = build_tiny_model(cfg, seed=0)
    blocks = model.transformer.h
    assert all(b.attn.c_attn.weight is blocks[0].attn.c_attn.weight for b in blocks)
    assert [b.attn.layer_idx for b in blocks] == [0, 1, 2]  # one KV-cache entry per application
    unshared, _ = build_tiny_model(ModelConfig(**{**cfg.__dict__, "shared_layers": False}), seed=0)
    per_block = sum(p.numel() for p in blocks[0].parameters())
    assert sum(p.numel() for p in unshared.parameters()) - sum(p.numel() for p in model.parameters()) == 2 * per_block

    save_model(model, tok, tmp_path / "m")
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "m" / "model.safetensors"))
    assert not any(k.startswith(("transformer.h.1.", "transformer.h.2.")) for k in saved)
    loaded, _ = load_model(cfg, tmp_path / "m")
    assert all(b.mlp.c_fc.weight is loaded.transformer.h[0].mlp.c_fc.weight for b in loaded.transformer.h)
    assert loaded.transformer.h[0].attn.c_attn.bias.shape == (3 * 32,)  # no bias cut to fit a tied embedding
    ids = tok(["s=37016254 x=5 k=6 A="], return_tensors="pt").input_ids
    torch.testing.assert_close(model(ids).logits, loaded(ids).logits)


def test_a_rollout_is_scored_without_dropout_and_the_mode_is_restored(tiny_model):
    # Old log-probs, old values and the KL are those of the policy the tokens were sampled from: dropout off.
    from debate_amp.trainer.loop import score_batch
    from debate_amp.trainer.rollout import make_batch

    model, tokenizer = tiny_model
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.5
    batch = make_batch(
        tokenizer, ["s=37016254 x=5 k=6 A=", "s=10 x=1 k=1 A="], [[50, 51], [52]], tokenizer.pad_token_id
    )
    model.eval()
    reference = score_batch(model, batch)
    model.train()
    first, second = score_batch(model, batch), score_batch(model, batch)
    assert model.training
    torch.testing.assert_close(first, reference)
    torch.testing.assert_close(second, reference)


def test_the_constraints_baseline_and_its_value_are_one_token_mean(tiny_model):
    # The relative limit is limit * L_sup(theta_0); the constraint compares it with objective/sup_loss. Both must be
    # the same average: a 20-token and a 2-token response, scored whole (the baseline) and as two minibatches (the
    # update).
    from debate_amp.objectives import supervised_nll
    from debate_amp.trainer.loop import token_nll
    from debate_amp.trainer.metrics import record as _record
    from debate_amp.trainer.metrics import token_mean as _token_mean
    from debate_amp.trainer.rollout import make_batch

    model, tokenizer = tiny_model
    model.eval()
    batch = make_batch(tokenizer, ["s=37016254 x=5 k=6 A=", "s=10 x=1 k=1 A="], [[50] * 20, [52, 53]], 0)
    baseline = token_nll(model, batch)
    stats: dict = {}
    per_sequence = []
    with torch.no_grad():
        for row in range(2):
            part = batch[row : row + 1].trimmed()
            logits = model(input_ids=part.input_ids, attention_mask=part.attention_mask).logits
            labels = torch.where(part.action_mask > 0, part.input_ids[:, 1:], -100)
            loss, _ = supervised_nll(logits[:, :-1].float(), labels)
            _record(stats, sup_loss=loss, sup_tokens=(labels != -100).sum())
            per_sequence.append(float(loss))
    assert stats["sup_tokens"] == [20.0, 2.0]
    assert abs(_token_mean(stats) - baseline) < 1e-5
    assert abs(baseline - (20 * per_sequence[0] + 2 * per_sequence[1]) / 22) < 1e-5


def test_a_model_directory_that_does_not_load_fails_in_one_line(tiny_model, tmp_path, capsys):
    from debate_amp import cli
    from debate_amp.config import ConfigError, load_config
    from debate_amp.models import save_model

    model, tokenizer = tiny_model
    good = tmp_path / "good"
    save_model(model, tokenizer, good)
    bad_config, no_weights, corrupt = tmp_path / "bad_config", tmp_path / "no_weights", tmp_path / "corrupt"
    for d in (bad_config, no_weights, corrupt):
        d.mkdir()
        for f in good.iterdir():
            (d / f.name).write_bytes(f.read_bytes())
    (bad_config / "config.json").write_text('{"model_type": "debate_amp_prefix_lm", ')
    capsys.readouterr()  # the save's progress bar
    (no_weights / "model.safetensors").unlink()
    weights = (corrupt / "model.safetensors").read_bytes()
    (corrupt / "model.safetensors").write_bytes(weights[: len(weights) // 3])
    with pytest.raises(ConfigError, match=r"model.path: .*config.json does not parse"):
        load_config(None, [f"model.path={bad_config}"])
    with pytest.raises(ConfigError, match=r"model.path: .*no_weights has no weights"):
        load_config(None, [f"model.path={no_weights}"])
    for directory, reason in ((corrupt, "cannot load the model"), (bad_config, "cannot load the model")):
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["amp", "--model", str(directory), "--question", "s=37016254 x=5 k=2"])
        err = capsys.readouterr().err.strip().splitlines()
        assert exit_info.value.code == 2 and len(err) == 1 and reason in err[0] and str(directory) in err[0], err


def test_the_warm_starts_data_is_what_trls_preparation_made():
    # labels -100 on the prompt, the completion and its end-of-sequence kept; rows cut to max_length from the start;
    # a row left without a completion token dropped (TRL's own preparation, now skipped: trainer/sft.py)
    from debate_amp.tasks import Example
    from debate_amp.trainer.sft import _training_dataset

    tokenizer = byte_tokenizer()
    eos = [tokenizer.eos_token_id]

    def ids(text):
        return tokenizer(text, add_special_tokens=False).input_ids

    examples = [Example(p, c, "answer", 0) for p, c in [("ab", "cd"), ("abcdefgh", "xy"), ("abcd", "zw")]]
    rows = _training_dataset(tokenizer, examples, max_length=6)
    assert len(rows) == 2  # "abcdefgh" and <prompt_end> fill the 6 tokens: nothing of its completion is left
    prompt = tokenizer("ab").input_ids  # "a", "b", <prompt_end>
    assert rows["input_ids"][0] == prompt + ids("cd") + eos and rows["labels"][0] == [-100] * 3 + ids("cd") + eos
    assert rows["input_ids"][1] == tokenizer("abcd").input_ids + ids("z")  # "w" and end-of-sequence cut
    assert rows["labels"][1] == [-100] * 5 + ids("z")


@pytest.mark.parametrize("shifted", [False, True])
def test_the_small_vocabulary_head_gives_trls_loss_gradients_and_metrics(tiny_model, shifted):
    # distill() swaps TRL's tiled LM head for full logits on a byte vocabulary (trainer/sft.py): the same
    # FusedCausalLMOutput to float rounding, on a batch with padding, a row with one completion token, and the
    # loss divided by the batch's completion tokens (num_items_in_batch) as SFTTrainer passes it.
    import types

    from trl.trainer.utils import add_fused_lm_head

    from debate_amp.trainer.sft import _small_vocabulary_lm_head

    model, _ = tiny_model
    add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))
    torch.manual_seed(0)
    ids = torch.randint(0, 256, (4, 12))
    mask = torch.ones_like(ids)
    mask[0, :3] = 0
    labels = ids.masked_fill(torch.arange(12) < 8, -100)
    labels[1] = -100
    labels[1, -1] = 7
    label_kwargs = {"shift_labels": labels[:, 1:]} if shifted else {"labels": labels}
    if shifted:  # a pre-shifted call scores every position of the input as it is
        ids, mask = ids[:, :-1], mask[:, :-1]

    def run():
        model.zero_grad()
        out = model(
            input_ids=ids, attention_mask=mask, fused_lm_head=True, num_items_in_batch=torch.tensor(14), **label_kwargs
        )
        out.loss.backward()
        return out, [p.grad.clone() for p in model.parameters()]

    trl_out, trl_grads = run()
    _small_vocabulary_lm_head(types.SimpleNamespace(model=model))
    out, grads = run()
    assert out.loss.item() == pytest.approx(trl_out.loss.item(), rel=1e-5)
    assert trl_out.label_mask.sum() == out.label_mask.sum() == 13  # 4 + 1 + 4 + 4
    for field in ("log_probs", "entropy"):
        assert torch.allclose(getattr(out, field), getattr(trl_out, field), atol=1e-5), field
    assert torch.equal(out.is_top1, trl_out.is_top1) and torch.equal(out.label_mask, trl_out.label_mask)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(grads, trl_grads, strict=True))
    plain = model(input_ids=ids, attention_mask=mask)  # without fused_lm_head: the model's own forward (generation)
    assert plain.logits.shape == (*ids.shape, model.config.vocab_size)
