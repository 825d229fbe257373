#!/usr/bin/env python3
"""Writes data/sampling_reference.json: final sampling distributions computed by numpy in float64
for each processor alone and for the whole chain, to check vela::Sampler::distribution().

Chain (llama.cpp default order): penalties -> top_k -> top_p -> min_p -> temperature.
top_p and min_p act on the temperature-1 softmax of the survivors; ranking ties go to the lower id.
Each truncation is checked to sit far from its threshold, so float32 vs float64 rounding cannot
flip a token in or out.
Run: python3 tests/sampling/gen_sampling_reference.py (from the repository root)."""
import collections
import json
import pathlib

import numpy as np

NEUTRAL = dict(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, repetition_penalty=1.0,
               frequency_penalty=0.0, presence_penalty=0.0, penalty_last_n=64)


def penalize(logits, history, p):
    out = logits.copy()
    n = p["penalty_last_n"]
    window = history if n < 0 else history[max(0, len(history) - n):] if n > 0 else []
    for tok, count in collections.Counter(window).items():
        out[tok] = out[tok] / p["repetition_penalty"] if out[tok] > 0 else out[tok] * p["repetition_penalty"]
        out[tok] -= count * p["frequency_penalty"] + p["presence_penalty"]
    return out


def softmax(x, t=1.0):
    w = np.exp((x - x.max()) / t)
    return w / w.sum()


def reference(logits, history, p):
    """Returns (support ids in rank order, their final probabilities)."""
    l = penalize(logits.astype(np.float64), history, p)
    order = np.lexsort((np.arange(len(l)), -l))  # logit desc, id asc
    if 0 < p["top_k"] < len(l):
        assert l[order[p["top_k"] - 1]] - l[order[p["top_k"]]] > 1e-4, "top_k boundary too close"
        order = order[:p["top_k"]]
    if p["top_p"] < 1.0:
        cum = np.cumsum(softmax(l[order]))
        cut = int(np.argmax(cum >= p["top_p"]))
        assert abs(cum[cut] - p["top_p"]) > 1e-6 and (cut == 0 or abs(cum[cut - 1] - p["top_p"]) > 1e-6)
        order = order[:cut + 1]
    if p["min_p"] > 0.0:
        margin = l[order] - l[order[0]] - np.log(p["min_p"])
        assert np.min(np.abs(margin)) > 1e-4, "min_p boundary too close"
        order = order[margin >= 0]
    return order, softmax(l[order], p["temperature"])


CANONICAL = ("top_k", "top_p", "min_p", "temperature")
# Orders a sampler might plausibly use instead; the order-sensitive case must tell each of them
# apart from CANONICAL (orders that only swap commuting steps, such as top_k with min_p or with
# temperature, give the same result and are not listed).
ALTERNATIVE_ORDERS = [
    ("temperature", "top_k", "top_p", "min_p"),  # temperature first (as vLLM does)
    ("top_k", "temperature", "top_p", "min_p"),
    ("top_p", "top_k", "min_p", "temperature"),
    ("top_k", "min_p", "top_p", "temperature"),
    ("min_p", "top_p", "top_k", "temperature"),
]


def reference_in_order(logits, history, p, steps):
    """The chain with its four steps in the given order; temperature rescales the logits that
    every later step sees. Returns (support in rank order, final probabilities)."""
    l = penalize(logits.astype(np.float64), history, p)
    order = np.lexsort((np.arange(len(l)), -l))
    scaled = False
    for step in steps:
        if step == "temperature":
            l = l / p["temperature"]
            scaled = True
        elif step == "top_k" and 0 < p["top_k"] < len(order):
            order = order[:p["top_k"]]
        elif step == "top_p" and p["top_p"] < 1.0:
            cum = np.cumsum(softmax(l[order]))
            order = order[:int(np.argmax(cum >= p["top_p"])) + 1]
        elif step == "min_p" and p["min_p"] > 0.0:
            order = order[l[order] - l[order[0]] >= np.log(p["min_p"])]
    return order, softmax(l[order], 1.0 if scaled else p["temperature"])


def assert_order_sensitive(case):
    """Every alternative order must give a different support or clearly different probabilities
    than the canonical one, so a sampler that applies its steps in another order fails."""
    logits = np.array(case["logits"], dtype=np.float32)
    want_support, want_probs = reference_in_order(logits, case["history"], case["params"], CANONICAL)
    assert want_support.tolist() == case["support"], "generalised chain disagrees with reference()"
    for steps in ALTERNATIVE_ORDERS:
        support, probs = reference_in_order(logits, case["history"], case["params"], steps)
        same = support.tolist() == want_support.tolist() and np.max(np.abs(probs - want_probs)) < 1e-3
        assert not same, f"order {steps} gives the same distribution as {CANONICAL}"


def make_case(rng, name, vocab, scale, history_len, **overrides):
    params = dict(NEUTRAL, **overrides)
    # 4 decimals keep the fixture small; the reference works on their float32 values, which is
    # exactly what the C++ side reads.
    decimals = np.round(rng.standard_normal(vocab) * scale, 4)
    logits = decimals.astype(np.float32)
    # Repeats in the history exercise the per-occurrence frequency penalty.
    history = rng.integers(0, vocab, size=history_len)
    history = np.concatenate([history, history[: history_len // 3]]).tolist()
    support, probs = reference(logits, history, params)
    return dict(name=name, params=params, logits=[round(float(x), 4) for x in decimals], history=history,
                support=support.tolist(), probs=[float(f"{x:.12g}") for x in probs])


def main():
    rng = np.random.default_rng(20240611)
    pen = dict(repetition_penalty=1.3, frequency_penalty=0.4, presence_penalty=0.25)
    cases = [
        make_case(rng, "penalties_window", 211, 2.0, 60, penalty_last_n=17, **pen),
        make_case(rng, "penalties_whole_context", 211, 2.0, 60, penalty_last_n=-1, **pen),
        make_case(rng, "repetition_only", 101, 2.0, 30, penalty_last_n=-1, repetition_penalty=1.7),
        make_case(rng, "top_k", 997, 2.0, 0, top_k=37),
        make_case(rng, "top_p", 997, 3.0, 0, top_p=0.7),
        make_case(rng, "top_p_wide", 5003, 0.5, 0, top_p=0.93),  # nucleus of thousands
        make_case(rng, "min_p", 997, 2.0, 0, min_p=0.1),
        make_case(rng, "temperature_cold", 331, 2.0, 0, temperature=0.6),
        make_case(rng, "temperature_hot", 331, 2.0, 0, temperature=1.7),
        make_case(rng, "full_chain", 4099, 2.5, 80, temperature=0.8, top_k=40, top_p=0.95,
                  min_p=0.05, penalty_last_n=64, **pen),
        make_case(rng, "full_chain_no_top_k", 1999, 2.5, 80, temperature=1.3, top_p=0.8,
                  min_p=0.01, penalty_last_n=-1, **pen),
    ]
    # One case whose result depends on the order of top-k, top-p, min-p and temperature: min-p
    # removes enough mass that top-p after it cuts elsewhere. Its own generator (seed found by
    # search) keeps the cases above unchanged.
    order_case = make_case(np.random.default_rng(0), "order_sensitive", 307, 0.8, 0,
                           temperature=0.5, top_k=50, top_p=0.6, min_p=0.2)
    assert_order_sensitive(order_case)
    cases.append(order_case)
    out = pathlib.Path(__file__).parent / "data" / "sampling_reference.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"cases": cases}, separators=(",", ":")) + "\n")
    for c in cases:
        print(f"{c['name']}: vocab {len(c['logits'])}, support {len(c['support'])}")


if __name__ == "__main__":
    main()
