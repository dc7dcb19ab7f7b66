import pytest
import torch

from debate_amp.config import LoraConfig, ModelConfig
from debate_amp.models import (
    ValueHead,
    apply_lora,
    build_tiny_model,
    byte_tokenizer,
    generate,
    hidden_size_of,
    load_model,
    save_model,
)


def test_byte_tokenizer_round_trips_and_adds_nothing():
    tok = byte_tokenizer()
    assert len(tok) == 259
    text = "s=0:3 1:7 x=5 k=6 A= héllo→"
    ids = tok(text).input_ids
    assert tok.decode(ids) == text
    assert tok.eos_token_id not in ids
    # A prompt tokenizes to a prefix of prompt + completion (TRL masks the prompt by that prefix).
    prompt, completion = "s=0:3 x=1 k=1 A=", "3</s>"
    assert tok(prompt + completion).input_ids[: len(tok(prompt).input_ids)] == tok(prompt).input_ids
    assert tok(prompt + completion).input_ids[-1] == tok.eos_token_id


def test_tiny_model_default_size():
    model, _ = build_tiny_model(ModelConfig())
    n = sum(p.numel() for p in model.parameters())
    assert 0.5e6 < n < 2e6, n
    assert hidden_size_of(model) == 128


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
    torch.testing.assert_close(model(ids).logits, loaded(ids).logits)
    assert loaded_tok("abc").input_ids == tok("abc").input_ids
    # cfg.path is honoured the same way
    again, _ = load_model(ModelConfig(path=str(tmp_path / "m")))
    torch.testing.assert_close(model(ids).logits, again(ids).logits)


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
    assert values.shape == (2, 3)
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


def test_sampled_logprobs_are_the_sampling_distribution(tiny_model):
    model, tok = tiny_model
    torch.manual_seed(0)
    out = generate(model, tok, ["x=1"], max_new_tokens=4, temperature=1.0)
    ids = tok(["x=1"], return_tensors="pt").input_ids
    full = torch.cat([ids, torch.tensor([out.token_ids[0]])], dim=1)
    logits = model(full).logits[0, ids.shape[1] - 1 : -1]
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
