"""Tests of the sampler chain against literal Python ports of llama.cpp's 2023 sampling functions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from airoboros_ggml.generation.options import SamplingOptions
from airoboros_ggml.generation.sampling import (
    Candidates,
    apply_logit_bias,
    apply_penalties,
    draw,
    make_sampler,
    min_p,
    mirostat_v1,
    mirostat_v2,
    softmax,
    tail_free,
    temperature,
    top_k,
    top_p,
    typical,
)

# --- literal ports of llama.cpp (2023) over a list of (id, logit) sorted as llama_sample_softmax does ---


def ref_softmax(cands):
    cands = sorted(cands, key=lambda c: -c[1])
    mx = cands[0][1]
    e = [math.exp(c[1] - mx) for c in cands]
    s = sum(e)
    return cands, [x / s for x in e]


def ref_top_k(cands, k, min_keep=1):
    if k <= 0:
        k = len(cands)
    k = min(max(k, min_keep), len(cands))
    return sorted(cands, key=lambda c: -c[1])[:k]


def ref_tail_free(cands, z, min_keep=1):
    if z >= 1.0 or len(cands) <= 2:
        return cands
    cands, p = ref_softmax(cands)
    first = [p[i] - p[i + 1] for i in range(len(p) - 1)]
    second = [abs(first[i] - first[i + 1]) for i in range(len(first) - 1)]
    total = sum(second)
    second = [v / total for v in second] if total > 1e-6 else [1.0 / len(second)] * len(second)
    cum, last = 0.0, len(cands)
    for i, v in enumerate(second):
        cum += v
        if cum > z and i >= min_keep:
            last = i
            break
    return cands[:last]


def ref_typical(cands, mass, min_keep=1):
    if mass >= 1.0:
        return cands
    cands, p = ref_softmax(cands)
    entropy = -sum(x * math.log(x) for x in p if x > 0)
    shifted = [abs(-math.log(x) - entropy) for x in p]
    order = sorted(range(len(p)), key=lambda i: shifted[i])
    cum, last = 0.0, len(order)
    for i, idx in enumerate(order):
        cum += p[idx]
        if cum > mass and i >= min_keep - 1:
            last = i + 1
            break
    return [cands[i] for i in order[:last]]


def ref_top_p(cands, mass, min_keep=1):
    if mass >= 1.0:
        return cands
    cands, p = ref_softmax(cands)
    cum, last = 0.0, len(cands)
    for i, x in enumerate(p):
        cum += x
        if cum >= mass and i + 1 >= min_keep:
            last = i + 1
            break
    return cands[:last]


def ref_min_p(cands, mass, min_keep=1):
    if mass <= 0.0:
        return cands
    cands, p = ref_softmax(cands)
    i = 1
    while i < len(cands):
        if p[i] < mass * p[0] and i >= min_keep:
            break
        i += 1
    return cands[:i]


def as_list(c: Candidates):
    return [(int(i), float(v)) for i, v in zip(c.ids, c.logits)]


def random_candidates(rng, n, scale=2.0):
    logits = (rng.standard_normal(n) * scale).astype(np.float32)  # float32 (n,)
    return Candidates.from_logits(logits)


# --- penalties and bias ----------------------------------------------------------------------------


def test_repeat_penalty_divides_positive_and_multiplies_non_positive():
    logits = np.array([2.0, -2.0, 0.0, 1.0, 3.0], dtype=np.float32)
    apply_penalties(logits, np.array([0, 1, 2, 0]), 2.0, 0.0, 0.0)
    np.testing.assert_array_equal(logits, [1.0, -4.0, 0.0, 1.0, 3.0])


def test_frequency_and_presence_penalties_count_occurrences():
    logits = np.zeros(4, dtype=np.float32)
    apply_penalties(logits, np.array([1, 1, 1, 3]), 1.0, 0.5, 0.25)
    np.testing.assert_allclose(logits, [0.0, -(3 * 0.5 + 0.25), 0.0, -(0.5 + 0.25)])


def test_penalty_window_is_last_n_tokens():
    opts = SamplingOptions(temperature=0, repeat_penalty=100.0, repeat_last_n=2)
    s = make_sampler(opts, 4)
    logits = np.array([5.0, 4.0, 3.0, 0.0], dtype=np.float32)
    assert s.sample(logits, [0, 1, 2]) == 0  # 0 is outside the window of 2
    assert s.sample(logits, [1, 2, 0]) == 1
    no_penalty = make_sampler(opts.with_overrides(repeat_last_n=0), 4)
    assert no_penalty.sample(logits, [0, 1, 2]) == 0
    whole = make_sampler(opts.with_overrides(repeat_last_n=-1), 4)
    assert whole.sample(logits, [0, 1, 1, 1, 1]) == 2


def test_logit_bias_adds_and_bans():
    logits = np.array([1.0, 2.0, 3.0], dtype=np.float32)
    apply_logit_bias(logits, np.array([0, 2]), np.array([5.0, -np.inf], dtype=np.float32))
    np.testing.assert_array_equal(logits, [6.0, 2.0, -np.inf])
    s = make_sampler(SamplingOptions(temperature=0, logit_bias={2: -math.inf}), 3)
    assert s.sample(np.array([1.0, 2.0, 3.0], dtype=np.float32)) == 1
    s = make_sampler(SamplingOptions(top_k=0, seed=1, logit_bias={0: -math.inf, 1: -math.inf}), 3)
    assert {s.sample(np.zeros(3, dtype=np.float32)) for _ in range(200)} == {2}


def test_logit_bias_out_of_vocabulary_is_rejected():
    with pytest.raises(ValueError, match="logit_bias: token id 7 is out of range"):
        make_sampler(SamplingOptions(logit_bias={7: 1.0}), 5)


def test_all_banned_raises_clearly():
    s = make_sampler(SamplingOptions(seed=0, logit_bias={0: -math.inf, 1: -math.inf}), 2)
    with pytest.raises(ValueError, match="-inf"):
        s.sample(np.zeros(2, dtype=np.float32))


# --- truncation steps vs the llama.cpp ports ----------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3, 50, 300])
def test_truncation_steps_match_llama_cpp(n):
    rng = np.random.default_rng(n)
    for trial in range(40):
        c = random_candidates(rng, n, scale=float(rng.uniform(0.3, 4.0)))
        ref = as_list(c)
        k = int(rng.integers(-1, n + 3))
        z, tp, pp, mp = rng.uniform(0.05, 1.05, size=4)
        keep = int(rng.integers(1, 4))
        if 0 < k < n:
            assert as_list(top_k(c, k, keep)) == ref_top_k(ref, k, keep)
        else:  # disabled: llama.cpp sorts everything, we leave the order alone
            assert sorted(as_list(top_k(c, k, keep))) == sorted(ref_top_k(ref, k, keep))
        assert as_list(tail_free(c, z, keep)) == ref_tail_free(ref, z, keep)
        assert as_list(top_p(c, tp, keep)) == ref_top_p(ref, tp, keep)
        assert sorted(as_list(typical(c, pp, keep))) == sorted(ref_typical(ref, pp, keep))
        assert sorted(as_list(min_p(c, mp, keep))) == sorted(ref_min_p(ref, mp, keep))


@pytest.mark.parametrize("n_vocab,k", [(49152, 40), (32000, 1), (32000, 1000), (5000, 4999)])
def test_top_k_on_a_whole_vocabulary_is_exact(n_vocab, k):
    rng = np.random.default_rng(k)
    for logits in [
        (rng.standard_normal(n_vocab) * 3).astype(np.float32),
        np.sort(rng.standard_normal(n_vocab)).astype(np.float32),  # structured by id
        rng.integers(-3, 3, n_vocab).astype(np.float32),  # many ties
    ]:
        out = top_k(Candidates.from_logits(logits), k)
        assert out.is_sorted and out.ids.shape == (k,)
        np.testing.assert_array_equal(out.logits, np.sort(logits)[::-1][:k])
        np.testing.assert_array_equal(logits[out.ids], out.logits)
        assert len(set(out.ids.tolist())) == k


def test_top_p_prefix_search_equals_full_sort():
    rng = np.random.default_rng(3)
    for scale in [0.5, 2.0, 6.0]:
        logits = (rng.standard_normal(32000) * scale).astype(np.float32)
        unsorted = Candidates.from_logits(logits)
        full = softmax(unsorted)[0]
        for p in [0.1, 0.5, 0.95]:
            a, b = top_p(unsorted, p), top_p(full, p)
            np.testing.assert_array_equal(a.logits, b.logits)
            assert a.is_sorted


def test_min_p_keeps_tokens_relative_to_the_best():
    logits = np.log(np.array([0.5, 0.3, 0.1, 0.06, 0.04], dtype=np.float32))
    kept = min_p(Candidates.from_logits(logits), 0.15)
    assert sorted(kept.ids.tolist()) == [0, 1, 2]  # 0.1 >= 0.15 * 0.5, 0.06 < 0.075


def test_temperature_scales_logits():
    c = temperature(Candidates.from_logits(np.array([1.0, -2.0], dtype=np.float32)), 0.5)
    np.testing.assert_array_equal(c.logits, [2.0, -4.0])


# --- drawing -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [10, 5000])
def test_draw_follows_the_softmax(n):
    rng = np.random.default_rng(0)
    logits = np.full(n, -np.inf, dtype=np.float32)
    support = rng.choice(n, size=min(n, 6), replace=False)
    logits[support] = rng.uniform(-1, 1, support.shape[0])
    p = np.exp(logits[support] - logits[support].max())
    p /= p.sum()
    c = Candidates.from_logits(logits)
    draws = np.array([draw(c, rng) for _ in range(12000)])
    assert set(np.unique(draws)) <= set(support.tolist())  # zero-probability tokens never drawn
    freq = np.array([(draws == t).mean() for t in support])
    sigma = np.sqrt(p * (1 - p) / draws.shape[0])
    assert np.all(np.abs(freq - p) < 5 * sigma + 1e-9), (freq, p)


def test_chain_order_top_p_before_temperature():
    # p(token 0) = 0.6 untempered; at temperature 10 it would be ~0.2, but top-p acts first.
    p = np.array([0.6, 0.1, 0.1, 0.1, 0.1])
    s = make_sampler(SamplingOptions(temperature=10.0, top_k=0, top_p=0.5, repeat_penalty=1.0, seed=0), 5)
    assert {s.sample(np.log(p).astype(np.float32)) for _ in range(100)} == {0}


def test_chain_order_penalties_before_top_k():
    logits = np.array([10.0, 9.0, 1.0], dtype=np.float32)
    s = make_sampler(SamplingOptions(top_k=1, repeat_penalty=100.0, seed=0), 3)
    assert {s.sample(logits, [0]) for _ in range(20)} == {1}


# --- the composed sampler ----------------------------------------------------------------------------


def test_greedy_is_argmax_and_does_not_touch_the_input():
    rng = np.random.default_rng(5)
    logits = rng.standard_normal(1000).astype(np.float32)
    before = logits.copy()
    s = make_sampler(SamplingOptions(temperature=0.0), 1000)
    assert s.sample(logits, [7]) == int(np.argmax(logits))
    np.testing.assert_array_equal(logits, before)
    with pytest.raises(ValueError, match="shape"):
        s.sample(logits[:10])


@pytest.mark.parametrize(
    "extra",
    [{}, {"top_k": 0}, {"tfs_z": 0.9, "typical_p": 0.9}, {"min_p": 0.05}, {"mirostat": 1}, {"mirostat": 2}],
)
def test_same_seed_same_tokens_and_no_seed_differs(extra):
    rng = np.random.default_rng(11)
    steps = [(rng.standard_normal(2000) * 0.5).astype(np.float32) for _ in range(30)]

    def run(seed):
        s = make_sampler(SamplingOptions(seed=seed, temperature=1.5, **extra), 2000)
        hist: list[int] = []
        for logits in steps:
            hist.append(s.sample(logits, hist))
        return hist

    assert run(1234) == run(1234)
    assert run(1234) != run(4321)
    assert run(None) != run(None)


def ref_mirostat_k(probs_sorted, n, mu, m=100):
    t_b = [
        (math.log((i + 2) / (i + 1)), math.log(probs_sorted[i] / probs_sorted[i + 1]))
        for i in range(min(m - 1, n - 1))
    ]
    s_hat = sum(t * b for t, b in t_b) / sum(t * t for t, _ in t_b)
    eps = s_hat - 1
    return int((eps * 2**mu / (1 - n ** (-eps))) ** (1 / s_hat))


def test_mirostat_v1_uses_llama_cpp_k_and_updates_mu():
    rng = np.random.default_rng(2)
    n = 3000
    zipf = -1.1 * np.log(np.arange(1, n + 1))
    logits = (zipf + rng.normal(0, 0.01, n)).astype(np.float32)[rng.permutation(n)]
    c = Candidates.from_logits(logits)
    _, p = softmax(c)
    for mu in [4.0, 6.0, 10.0]:
        k = ref_mirostat_k([float(x) for x in p[:100]], n, mu)
        assert 1 <= k < n
        kept = set(top_k(c, k).ids.tolist())
        for _ in range(20):
            token, new_mu = mirostat_v1(c, 5.0, 0.1, mu, rng)
            assert token in kept
            q = np.exp(logits[list(kept)] - logits[list(kept)].max())
            q_tok = np.exp(logits[token] - logits[list(kept)].max()) / q.sum()
            assert new_mu == pytest.approx(mu - 0.1 * (-math.log2(q_tok) - 5.0), rel=1e-5)


def test_mirostat_v2_truncates_by_surprise_and_updates_mu():
    rng = np.random.default_rng(4)
    logits = (rng.standard_normal(500) * 2).astype(np.float32)
    c = Candidates.from_logits(logits)
    sorted_c, p = softmax(c)
    for mu in [0.0, 3.0, 8.0]:
        allowed = set(sorted_c.ids[-np.log2(p) <= mu].tolist()) or {int(sorted_c.ids[0])}
        for _ in range(20):
            token, new_mu = mirostat_v2(c, 5.0, 0.1, mu, rng)
            assert token in allowed
            q = np.exp(logits[list(allowed)] - logits[list(allowed)].max())
            q_tok = np.exp(logits[token] - logits[list(allowed)].max()) / q.sum()
            assert new_mu == pytest.approx(mu - 0.1 * (-math.log2(q_tok) - 5.0), rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("mode", [1, 2])
def test_mirostat_controls_average_surprise(mode):
    n, tau = 8000, 4.0
    logits = (-1.2 * np.log(np.arange(1, n + 1))).astype(np.float32)  # Zipf-like text distribution
    p = np.exp(logits - logits.max())
    p /= p.sum()
    s = make_sampler(SamplingOptions(mirostat=mode, mirostat_tau=tau, temperature=1.0, seed=9), n)
    surprises = [-math.log2(p[s.sample(logits)]) for _ in range(1500)]
    assert abs(np.mean(surprises[300:]) - tau) < 0.6
    assert s.mu != 2 * tau
