"""debate_amp.objectives against numbers worked out by hand (the arithmetic is in the comments)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from debate_amp.objectives import (
    AdaptiveKLController,
    FixedKLController,
    combine_constrained,
    combine_weighted,
    fold_supervised_into_reward,
    gae,
    kl_penalty,
    lagrange_update,
    masked_mean,
    masked_var,
    policy_loss,
    supervised_nll,
    token_rewards,
    value_loss,
    whiten,
)

INF, NAN = math.inf, math.nan


def t(data) -> torch.Tensor:
    """float64 so hand-computed decimals compare at tight tolerance."""
    return torch.tensor(data, dtype=torch.float64)


def close(actual: torch.Tensor, expected) -> None:
    assert_close(actual, torch.as_tensor(expected, dtype=actual.dtype))


# ---------------------------------------------------------------------------------------------------- masking

# Real entries 1, 2, 4 (the padding holds nan and inf, which must not leak).
X = t([[1.0, 2.0, NAN], [4.0, NAN, INF]])
M = t([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])


def test_masked_mean_by_hand():
    close(masked_mean(X, M), 7.0 / 3.0)  # (1 + 2 + 4) / 3
    close(masked_mean(X, M, dim=-1), [1.5, 4.0])  # row 0: (1 + 2) / 2; row 1: 4 / 1
    close(masked_mean(X, M.bool()), 7.0 / 3.0)  # bool mask == float mask


def test_masked_mean_empty_row_is_zero():
    x = t([[1.0, 2.0], [5.0, 6.0]])
    m = t([[1.0, 1.0], [0.0, 0.0]])
    close(masked_mean(x, m, dim=1), [1.5, 0.0])


def test_masked_var_by_hand():
    # mean 7/3; deviations -4/3, -1/3, 5/3; squares 16/9 + 1/9 + 25/9 = 42/9.
    close(masked_var(X, M, unbiased=False), 42.0 / 9.0 / 3.0)  # / n = 14/9
    close(masked_var(X, M, unbiased=True), 42.0 / 9.0 / 2.0)  # / (n - 1) = 7/3


@pytest.mark.parametrize("statistic", ["mean", "var", "whiten"])
def test_padding_that_holds_nan_or_inf_gives_finite_gradients(statistic):
    x = X.clone().requires_grad_(True)
    out = {"mean": lambda: masked_mean(x, M), "var": lambda: masked_var(x, M), "whiten": lambda: whiten(x, M)[0, 0]}
    out[statistic]().backward()
    assert torch.isfinite(x.grad).all(), x.grad
    assert (x.grad[M == 0] == 0).all()  # padding gets no gradient


def test_masked_var_unbiased_needs_two_tokens():
    with pytest.raises(ValueError):
        masked_var(t([[3.0, 9.0]]), t([[1.0, 0.0]]))


def test_whiten_by_hand():
    # mean 7/3, unbiased var 7/3: (x - 7/3) / sqrt(7/3 + 1e-8); padding -> 0.
    s = math.sqrt(7.0 / 3.0 + 1e-8)
    mu = 7.0 / 3.0
    close(whiten(X, M), [[(1 - mu) / s, (2 - mu) / s, 0.0], [(4 - mu) / s, 0.0, 0.0]])
    # shift_mean=False adds the mean back to the real entries only.
    close(whiten(X, M, shift_mean=False), [[(1 - mu) / s + mu, (2 - mu) / s + mu, 0.0], [(4 - mu) / s + mu, 0.0, 0.0]])


def test_whiten_gives_zero_mean_unit_variance_on_real_tokens():
    x = torch.randn(4, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3 + 5
    m = torch.ones(4, 7, dtype=torch.bool)
    m[1, 4:] = False
    m[3, 2:] = False
    w = whiten(x, m)
    close(masked_mean(w, m), 0.0)
    assert abs(masked_var(w, m).item() - 1.0) < 1e-6  # 1e-8 in the denominator only
    assert (w[~m] == 0).all()


# ---------------------------------------------------------------------------------------------------- gae


def test_gae_three_tokens_by_hand():
    # gamma = 0.9, gae_lambda = 0.8, so gamma * gae_lambda = 0.72.
    # Row 0: r = [1, 0, 2], V = [0.5, 1.0, 1.5], no padding.
    #   delta_2 = 2 + 0.9 * 0   - 1.5 = 0.5        (V beyond the last token is 0)
    #   delta_1 = 0 + 0.9 * 1.5 - 1.0 = 0.35
    #   delta_0 = 1 + 0.9 * 1.0 - 0.5 = 1.4
    #   A_2 = 0.5
    #   A_1 = 0.35 + 0.72 * 0.5  = 0.71
    #   A_0 = 1.4  + 0.72 * 0.71 = 1.9112
    #   returns = A + V = [2.4112, 1.71, 2.0]
    # Row 1: two real tokens r = [1, 2], V = [0.5, 1.5], then padding holding r = 5, V = 7 (must be ignored).
    #   delta_1 = 2 + 0.9 * 0   - 1.5 = 0.5        (not 0.9 * 7: the padding is not bootstrapped from)
    #   delta_0 = 1 + 0.9 * 1.5 - 0.5 = 1.85
    #   A = [1.85 + 0.72 * 0.5, 0.5] = [2.21, 0.5]; returns = [2.71, 2.0]; padding -> 0.
    rewards = t([[1.0, 0.0, 2.0], [1.0, 2.0, 5.0]])
    values = t([[0.5, 1.0, 1.5], [0.5, 1.5, 7.0]])
    mask = t([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    advantages, returns = gae(rewards, values, mask, gamma=0.9, gae_lambda=0.8)
    close(advantages, [[1.9112, 0.71, 0.5], [2.21, 0.5, 0.0]])
    close(returns, [[2.4112, 1.71, 2.0], [2.71, 2.0, 0.0]])


def test_gae_lambda_one_is_discounted_return_minus_value():
    # gamma = 0.5, gae_lambda = 1: A_t = sum_k 0.5^k r_{t+k} - V_t.
    # r = [4, 2, 8], V = [1, 1, 1]: G = [4 + 1 + 2, 2 + 4, 8] = [7, 6, 8]; A = [6, 5, 7]; returns = G.
    advantages, returns = gae(t([[4.0, 2.0, 8.0]]), t([[1.0, 1.0, 1.0]]), t([[1.0, 1.0, 1.0]]), 0.5, 1.0)
    close(advantages, [[6.0, 5.0, 7.0]])
    close(returns, [[7.0, 6.0, 8.0]])


def test_gae_padding_does_not_change_results():
    g = torch.Generator().manual_seed(1)
    rewards, values = torch.randn(2, 4, generator=g), torch.randn(2, 4, generator=g)
    short = gae(rewards, values, torch.ones(2, 4), 0.99, 0.95)
    # Same sequences with 3 padding positions of garbage appended (a bool mask this time).
    pad = torch.tensor([[NAN, INF, -INF]] * 2)
    mask = torch.cat([torch.ones(2, 4), torch.zeros(2, 3)], dim=1).bool()
    long = gae(torch.cat([rewards, pad], 1), torch.cat([values, pad], 1), mask, 0.99, 0.95)
    for s, ln in zip(short, long, strict=True):
        assert_close(ln[:, :4], s)
        assert (ln[:, 4:] == 0).all()


# ---------------------------------------------------------------------------------------------------- policy loss

# clip_range = 0.2, so the ratio is clipped to [0.8, 1.2]. old_logprobs = -1 everywhere; logprobs = -1 + log(ratio).
#   token  ratio  A    -A*ratio  -A*clip(ratio)  max    clipped term chosen?
#   a      1.5    +1   -1.5      -1.2            -1.2   yes  (ratio above 1 + eps, positive advantage)
#   b      1.5    -1   +1.5      +1.2            +1.5   no   (ratio above 1 + eps, negative advantage)
#   c      0.5    +2   -1.0      -1.6            -1.0   no   (ratio below 1 - eps, positive advantage)
#   d      0.5    -2   +1.0      +1.6            +1.6   yes  (ratio below 1 - eps, negative advantage)
#   e      1.1    +3   -3.3      -3.3            -3.3   no   (inside the range: equal, not strictly greater)
# pg_loss  = (-1.2 + 1.5 - 1.0 + 1.6 - 3.3) / 5 = -2.4 / 5 = -0.48
# clipfrac = 2 / 5 = 0.4
# approx_kl = 0.5 * (2 log(1.5)^2 + 2 log(0.5)^2 + log(1.1)^2) / 5
#           = 0.5 * (2 * 0.164402 + 2 * 0.480453 + 0.009084) / 5 = 0.129879
# Layout [2, 3]: row 0 = a, b, c; row 1 = d, e, padding (logprobs and advantage nan).
RATIOS = [[1.5, 1.5, 0.5], [0.5, 1.1, 1.0]]
ADV = t([[1.0, -1.0, 2.0], [-2.0, 3.0, NAN]])
PG_MASK = t([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])


def pg_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    old = torch.full((2, 3), -1.0, dtype=torch.float64)
    logprobs = old + torch.log(t(RATIOS))
    logprobs[1, 2] = NAN
    return logprobs.requires_grad_(), old


def test_policy_loss_by_hand():
    logprobs, old = pg_inputs()
    pg_loss, clipfrac, approx_kl = policy_loss(logprobs, old, ADV, PG_MASK, clip_range=0.2)
    close(pg_loss, -0.48)
    close(clipfrac, 0.4)
    close(approx_kl, 0.5 * (2 * math.log(1.5) ** 2 + 2 * math.log(0.5) ** 2 + math.log(1.1) ** 2) / 5)
    assert abs(approx_kl.item() - 0.129879) < 1e-6
    assert not clipfrac.requires_grad and not approx_kl.requires_grad


def test_policy_loss_gradient_is_zero_where_clipped():
    # d(-A * ratio)/d logprobs = -A * ratio, divided by the 5 real tokens; 0 where the clipped (constant) term won.
    #   a: 0;  b: -(-1)(1.5)/5 = 0.3;  c: -(2)(0.5)/5 = -0.2;  d: 0;  e: -(3)(1.1)/5 = -0.66;  padding: 0 (not nan).
    logprobs, old = pg_inputs()
    pg_loss, _, _ = policy_loss(logprobs, old, ADV, PG_MASK, clip_range=0.2)
    pg_loss.backward()
    assert logprobs.grad is not None
    close(logprobs.grad, [[0.0, 0.3, -0.2], [0.0, -0.66, 0.0]])


def test_policy_loss_padding_does_not_change_results():
    logprobs, old = pg_inputs()
    full = policy_loss(logprobs, old, ADV, PG_MASK, 0.2)
    # The same five real tokens as one unpadded row.
    flat_mask = PG_MASK.bool()
    flat = policy_loss(logprobs[flat_mask][None], old[flat_mask][None], ADV[flat_mask][None], torch.ones(1, 5), 0.2)
    for a, b in zip(full, flat, strict=True):
        assert_close(a, b)


# ---------------------------------------------------------------------------------------------------- value loss


def test_token_rewards_put_the_reward_on_the_last_real_token_and_mask_the_kl():
    # kl_coef 0.1; row 0 has 3 real tokens, row 1 has 2; the padding's kl (nan, inf) must not leak.
    kl = t([[0.1, 0.2, 0.3, NAN], [0.5, 0.5, INF, INF]])
    mask = t([[1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0]])
    rewards = token_rewards(t([1.0, -2.0]), kl, mask, kl_coef=0.1)
    close(rewards, [[-0.01, -0.02, -0.03 + 1.0, 0.0], [-0.05, -0.05 - 2.0, 0.0, 0.0]])
    # a left-padded row (prompt and padding before the response) puts it on its own last real token too
    close(token_rewards(t([3.0]), t([[NAN, 0.0, 0.0]]), t([[0.0, 1.0, 1.0]]), 0.1), [[0.0, 0.0, 3.0]])


def test_value_loss_clips_from_below_too():
    #   values  old   R      v_clipped            (v - R)^2   (v_clipped - R)^2   max     clipped chosen?
    #   0.0     0.5   1.0    0.5 - 0.2 = 0.3      1.0         0.49                1.0     no
    #   0.0     0.5   -1.0   0.3                  1.0         1.69                1.69    yes
    # v_loss = 0.5 * (1.0 + 1.69) / 2 = 0.6725; v_clipfrac = 1/2; gradient 0.5 * 2 (0 - 1) / 2 = -0.5, then 0.
    values = t([[0.0, 0.0]]).requires_grad_()
    v_loss, v_clipfrac = value_loss(values, t([[0.5, 0.5]]), t([[1.0, -1.0]]), t([[1.0, 1.0]]), clip_range_value=0.2)
    close(v_loss, 0.6725)
    close(v_clipfrac, 0.5)
    v_loss.backward()
    assert values.grad is not None
    close(values.grad, [[-0.5, 0.0]])


def test_value_loss_by_hand():
    # clip_range_value = 0.2.
    #   values  old   R     v_clipped            (v - R)^2   (v_clipped - R)^2   max      clipped chosen?
    #   1.0     0.5   1.0   0.5 + 0.2 = 0.7      0.0         0.09                0.09     yes
    #   1.0     0.5   0.0   0.7                  1.0         0.49                1.0      no
    #   0.55    0.5   2.0   0.55 (inside)        2.1025      2.1025              2.1025   no (equal)
    # v_loss = 0.5 * (0.09 + 1.0 + 2.1025) / 3 = 0.5 * 3.1925 / 3 = 0.53208333...; v_clipfrac = 1/3.
    # Row 1 carries the third token and then garbage padding.
    values = t([[1.0, 1.0], [0.55, NAN]]).requires_grad_()
    old = t([[0.5, 0.5], [0.5, INF]])
    returns = t([[1.0, 0.0], [2.0, -INF]])
    mask = t([[1.0, 1.0], [1.0, 0.0]])
    v_loss, v_clipfrac = value_loss(values, old, returns, mask, clip_range_value=0.2)
    close(v_loss, 0.5 * 3.1925 / 3)
    close(v_clipfrac, 1.0 / 3.0)
    # Gradient: 0.5 * 2 (v - R) / 3 where unclipped won: [0 (clipped), 1/3, -1.45/3], padding 0.
    v_loss.backward()
    assert values.grad is not None
    close(values.grad, [[0.0, 1.0 / 3.0], [-1.45 / 3.0, 0.0]])


# ---------------------------------------------------------------------------------------------------- KL penalty


def test_kl_penalty_by_hand():
    # logp - ref = d = [1, -1].
    logp, ref = t([[-1.0, -2.0]]), t([[-2.0, -1.0]])
    close(kl_penalty(logp, ref, "k1"), [[1.0, -1.0]])
    close(kl_penalty(logp, ref), [[1.0, -1.0]])  # k1 is the default
    close(kl_penalty(logp, ref, "abs"), [[1.0, 1.0]])
    close(kl_penalty(logp, ref, "mse"), [[0.5, 0.5]])  # 0.5 * d^2
    # k3: r = exp(ref - logp) = [e^-1, e]; (r - 1) - log r = [e^-1 - 1 + 1, e - 1 - 1] = [0.367879, 0.718282].
    close(kl_penalty(logp, ref, "k3"), [[math.exp(-1.0), math.e - 2.0]])


def test_kl_k3_is_nonnegative():
    g = torch.Generator().manual_seed(2)
    logp, ref = torch.randn(8, 16, generator=g) * 2, torch.randn(8, 16, generator=g) * 2
    ref[0] = logp[0]  # equal log-probabilities: exactly 0
    k3 = kl_penalty(logp, ref, "k3")
    assert k3.shape == (8, 16)
    assert (k3 >= 0).all()
    assert (k3[0] == 0).all() and (k3[1:] > 0).all()


def test_kl_penalty_unknown_kind():
    with pytest.raises(ValueError):
        kl_penalty(t([0.0]), t([0.0]), "k2")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------- supervised


def test_supervised_nll_by_hand():
    # Vocabulary of 3. Two kinds of logits rows:
    #   uniform [0, 0, 0]             -> log_softmax = [-log 3] * 3
    #   log([1, 2, 5]) = [0, log 2, log 5] -> softmax = [1/8, 2/8, 5/8], log_softmax = [-log 8, -log 4, -log 1.6]
    # seq 0: (uniform, label 1) -> log 3 = 1.098612;  (1:2:5, label 2) -> log 1.6 = 0.470004
    # seq 1: (1:2:5, label 0)   -> log 8 = 2.079442;  ignored
    # seq 2: ignored, ignored   -> per-sequence 0
    # mean_nll (over the 3 labelled tokens) = (1.098612 + 0.470004 + 2.079442) / 3 = 1.216019
    # per_sequence = [(1.098612 + 0.470004) / 2, 2.079442, 0] = [0.784308, 2.079442, 0]
    uni, skew = [0.0, 0.0, 0.0], [0.0, math.log(2.0), math.log(5.0)]
    logits = t([[uni, skew], [skew, [9.0, -9.0, 3.0]], [uni, skew]])
    labels = torch.tensor([[1, 2], [0, -100], [-100, -100]])
    mean_nll, per_seq = supervised_nll(logits, labels)
    close(mean_nll, (math.log(3) + math.log(1.6) + math.log(8)) / 3)
    close(per_seq, [(math.log(3) + math.log(1.6)) / 2, math.log(8), 0.0])
    assert abs(mean_nll.item() - 1.216019) < 1e-6
    # A custom ignore_index: with -1 as the marker, -100 would be an (invalid) label, so relabel.
    mean_custom, _ = supervised_nll(logits, labels.masked_fill(labels == -100, -1), ignore_index=-1)
    assert_close(mean_custom, mean_nll)


def test_supervised_nll_no_shift_and_shapes():
    # labels[:, t] is scored against logits[:, t]: a confident right answer at t = 0 only.
    logits = t([[[20.0, 0.0], [0.0, 0.0]]])
    mean_nll, per_seq = supervised_nll(logits, torch.tensor([[0, -100]]))
    assert per_seq.shape == (1,)
    assert mean_nll.item() < 1e-8  # log(1 + e^-20) ~ 2e-9; a shift would give log 2
    with pytest.raises(ValueError):
        supervised_nll(logits[0], torch.tensor([0, 0]))


def test_supervised_nll_upcasts_half_precision():
    logits = torch.tensor([[[0.0, math.log(2.0), math.log(5.0)]]], dtype=torch.bfloat16)
    mean_nll, per_seq = supervised_nll(logits, torch.tensor([[2]]))
    assert mean_nll.dtype == torch.float32 and per_seq.dtype == torch.float32
    # bf16 rounds log 2 and log 5 (to 0.69140625 and 1.609375), so compare loosely with log(8/5) = 0.470004.
    assert abs(mean_nll.item() - math.log(1.6)) < 1e-2


# ---------------------------------------------------------------------------------------------------- mixing


def test_lagrange_update_rises_above_limit_and_clamps_at_zero():
    # Above the limit: 1.0 + 0.5 * (1.5 - 1.1) = 1.2.
    assert lagrange_update(1.0, 1.5, limit=1.1, lr=0.5) == pytest.approx(1.2)
    # Below the limit: 1.0 + 0.5 * (0.9 - 1.1) = 0.9.
    assert lagrange_update(1.0, 0.9, limit=1.1, lr=0.5) == pytest.approx(0.9)
    # Far below: 0.3 + 0.5 * (0.1 - 1.1) = -0.2 -> clamped to 0.
    assert lagrange_update(0.3, 0.1, limit=1.1, lr=0.5) == 0.0
    # A tensor constraint value is accepted and a plain float comes back.
    out = lagrange_update(1.0, torch.tensor(1.5), limit=1.1, lr=0.5)
    assert isinstance(out, float) and out == pytest.approx(1.2)


def test_combine_weighted_and_constrained_by_hand():
    rl, sup = t(2.0), t(4.0)
    close(combine_weighted(rl, sup, 0.25), 3.5)  # 0.25 * 2 + 0.75 * 4 = 0.5 + 3
    close(combine_constrained(rl, sup, 3.0), 3.5)  # (2 + 3 * 4) / (1 + 3) = 14 / 4: alpha = 1 / (1 + lambda)
    close(combine_constrained(rl, sup, 0.0), 2.0)  # pure RL
    assert_close(combine_constrained(rl, sup, 0.0), combine_weighted(rl, sup, 1.0))
    with pytest.raises(ValueError):
        combine_weighted(rl, sup, 1.5)
    with pytest.raises(ValueError):
        combine_constrained(rl, sup, -0.1)


def test_fold_supervised_into_reward():
    # [B] with [B]: r - 0.1 d = [1 - 0.05, 2 - 0.4] = [0.95, 1.6].
    close(fold_supervised_into_reward(t([1.0, 2.0]), t([0.5, 4.0]), 0.1), [0.95, 1.6])
    # [B, T] with [B] (B == T == 2, where torch's trailing-dim broadcast would subtract d per column instead):
    # row 0 - 0.5 * 1, row 1 - 0.5 * 10.
    rewards = t([[1.0, 2.0], [0.0, 0.0]])
    close(fold_supervised_into_reward(rewards, t([1.0, 10.0]), 0.5), [[0.5, 1.5], [-5.0, -5.0]])
    # [B, T] with [B, T]: elementwise.
    close(fold_supervised_into_reward(rewards, t([[0.0, 2.0], [4.0, 0.0]]), 0.5), [[1.0, 1.0], [-2.0, 0.0]])
    with pytest.raises(ValueError):
        fold_supervised_into_reward(t([1.0, 2.0]), t([[1.0, 2.0], [3.0, 4.0]]), 0.5)


# ---------------------------------------------------------------------------------------------------- KL controllers


def test_fixed_kl_controller():
    ctl = FixedKLController(0.05)
    ctl.update(100.0, 1000)
    assert ctl.value == 0.05
    other = FixedKLController(0.0)
    other.load_state_dict(ctl.state_dict())
    assert other.value == 0.05


def test_adaptive_kl_controller_by_hand():
    ctl = AdaptiveKLController(init_coef=0.1, target=6.0, horizon=10000)
    # KL 9 above target 6: error = 9/6 - 1 = 0.5 -> clipped to 0.2; mult = 1 + 0.2 * 1000 / 10000 = 1.02.
    ctl.update(9.0, n_steps=1000)
    assert ctl.value == pytest.approx(0.1 * 1.02)  # 0.102
    # KL 5.4 below target: error = 5.4/6 - 1 = -0.1 (inside the clip); mult = 1 - 0.1 * 0.1 = 0.99.
    ctl.update(torch.tensor(5.4), n_steps=1000)
    assert ctl.value == pytest.approx(0.102 * 0.99)  # 0.10098
    # KL 1.5 far below: error = 0.25 - 1 = -0.75 -> clipped to -0.2; mult = 1 - 0.2 * 500 / 10000 = 0.99.
    ctl.update(1.5, n_steps=500)
    assert ctl.value == pytest.approx(0.10098 * 0.99)
    # Checkpoint round trip: plain floats.
    state = ctl.state_dict()
    assert state == {"value": pytest.approx(0.10098 * 0.99)} and isinstance(state["value"], float)
    fresh = AdaptiveKLController(init_coef=0.5, target=6.0, horizon=10000)
    fresh.load_state_dict(state)
    assert fresh.value == ctl.value
    with pytest.raises(ValueError):
        ctl.update(0.0, n_steps=50000)  # error -1 -> -0.2; mult = 1 - 0.2 * 50000 / 10000 = 0: the sign would flip
    with pytest.raises(ValueError):
        AdaptiveKLController(0.1, target=0.0, horizon=10)


# ---------------------------------------------------------------------------------------------------------------
# The three modes as the loop uses them (debate_amp.trainer.modes): one table, chosen once


def _mode_state(**counters):
    from types import SimpleNamespace

    return SimpleNamespace(**({"lagrange_multiplier": 0.0, "sup_baseline": None} | counters))


def test_each_mode_combines_the_losses_and_anneals_its_own_parameter():
    from debate_amp.config import ObjectiveConfig
    from debate_amp.trainer.modes import OBJECTIVE_MODES, objective_mode

    assert set(OBJECTIVE_MODES) == {"weighted", "constrained", "reward"}
    rl, sup = torch.tensor(2.0), torch.tensor(4.0)
    o = ObjectiveConfig(mode="weighted", alpha=0.25)
    weighted = objective_mode(o)
    assert weighted.start() == 0.25 and float(weighted.loss(rl, sup, 0.25, _mode_state())) == 0.25 * 2 + 0.75 * 4
    assert weighted.tags(0.25, float("nan"), 3.0)["objective/alpha"] == 0.25
    constrained = objective_mode(ObjectiveConfig(mode="constrained", limit=1.5))
    state = _mode_state(lagrange_multiplier=3.0)
    assert constrained.start() == 1.5 and float(constrained.loss(rl, sup, 1.5, state)) == (2 + 3 * 4) / (1 + 3)
    reward = objective_mode(ObjectiveConfig(mode="reward", reward_coef=0.5))
    assert reward.start() == 0.5 and float(reward.loss(rl, sup, 0.5, _mode_state())) == 2.0  # L_rl alone
    terminal = torch.tensor([1.0, -1.0])
    folded = reward.reward(terminal, lambda: torch.tensor([0.2, 0.4]), 0.5)
    assert torch.allclose(folded, torch.tensor([0.9, -1.2]))
    assert weighted.reward(terminal, lambda: 1 / 0, 0.5) is terminal  # distances are not even computed
    # sup_weight is L_sup's weight in the loss (the loop skips steps with no RL minibatch where it is 0)
    for mode, weight, at in [
        (weighted, 0.25, _mode_state()),
        (weighted, 1.0, _mode_state()),
        (constrained, 1.5, state),
        (constrained, 1.5, _mode_state()),
        (reward, 0.5, _mode_state()),
    ]:
        rl_leaf, sup_leaf = torch.tensor(2.0, requires_grad=True), torch.tensor(4.0, requires_grad=True)
        loss = mode.loss(rl_leaf, sup_leaf, weight, at)
        _, grad = torch.autograd.grad(loss, (rl_leaf, sup_leaf), allow_unused=True)
        assert mode.sup_weight(weight, at) == pytest.approx(0.0 if grad is None else float(grad)), mode.name


def test_the_constrained_limit_is_relative_to_the_first_measured_sup_loss_and_lambda_moves_on_the_violation():
    from debate_amp.config import ObjectiveConfig
    from debate_amp.trainer.modes import objective_mode

    mode = objective_mode(ObjectiveConfig(mode="constrained", limit=1.1, limit_kind="relative", lagrange_lr=0.5))
    state, measured = _mode_state(), []

    def sup_loss():
        measured.append(1)
        return 2.0

    assert mode.limit(state, sup_loss, 1.1) == pytest.approx(2.2) and state.sup_baseline == 2.0
    assert mode.limit(state, sup_loss, 1.0) == pytest.approx(2.0) and len(measured) == 1  # measured once, kept
    mode.after_update(state, 3.2, 2.0)  # violated by 1.2: lambda <- 0 + 0.5 * 1.2
    assert state.lagrange_multiplier == pytest.approx(0.6)
    mode.after_update(state, float("nan"), 2.0)  # no supervised examples this update: lambda stays
    assert state.lagrange_multiplier == pytest.approx(0.6)
    tags = mode.tags(1.0, 2.0, 2.5)
    assert tags["constraint/limit"] == 2.0 and tags["constraint/violation"] == 0.5
    absolute = objective_mode(ObjectiveConfig(mode="constrained", limit=0.7, limit_kind="absolute"))
    assert absolute.limit(_mode_state(), lambda: 1 / 0, 0.7) == 0.7
    assert mode.transcript_fields(1.0, 0.6) == {"alpha": None, "lagrange_multiplier": 0.6}


def test_a_process_without_supervised_examples_still_joins_the_pooled_l_sup():
    """The relative limit's baseline is L_sup over every process's supervised tokens (one token mean, as
    ``objective/sup_loss``); a process with no batch that skipped the gather would leave the others waiting in it
    for ever (two processes, one of them without examples)."""
    from types import SimpleNamespace

    from debate_amp.trainer.loop import _sup_loss

    gathered = []

    def accelerator(other_total: float, other_tokens: float):
        def gather(tensor):
            gathered.append(tensor)
            return torch.cat([tensor, torch.tensor([[other_total, other_tokens]], dtype=tensor.dtype)])

        return SimpleNamespace(num_processes=2, device="cpu", gather=gather)

    assert _sup_loss(SimpleNamespace(accelerator=accelerator(2.5 * 40, 40)), SimpleNamespace(), None) == 2.5
    assert len(gathered) == 1 and gathered[0].tolist() == [[0.0, 0.0]]  # it joined, with nothing of its own
    assert _sup_loss(SimpleNamespace(accelerator=accelerator(0.0, 0.0)), SimpleNamespace(), None) is None
    one = SimpleNamespace(num_processes=1)
    assert _sup_loss(SimpleNamespace(accelerator=one), SimpleNamespace(), None) is None
