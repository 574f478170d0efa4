"""Any string, including megabytes of repeated tags, scores finitely within the documented bounds,
without raising, in time linear in its length; the official preset equals the regex baseline."""

from __future__ import annotations

import importlib.util
import math
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emocaliber_rl.prompts import format_response
from reward_fns.emocaliber import STEP_TAGS, TAGS, compute_score, parse_response

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("bench_reward", REPO / "benchmarks" / "bench_reward.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

# Documented bounds (module docstring), default weights, eps = 0.01:
LOGLIK_BOUNDS = (math.log(0.01), 2 + math.log(0.99))  # [-4.6052, 1.9900]
BRIER_BOUNDS = (-1.0, 2.0)
OFFICIAL_BOUNDS = (1 + 2 * math.log(5e-324), 2.0)  # [-1487.9, 2); -5 on failure

VALID = format_response({t: f"{t} text" for t in STEP_TAGS}, "awe", 0.62)
FRAGMENTS = [*TAGS, "<", ">", "/", "</", "<thin", "<answer", " ", "\n", "\t", "awe", "Awe.", "fear",
             "0.62", ".5", "83%", "{0.9}", "1", "0", "-1", "nan", "1e-300", "0.99999999999999999", "%", "{", "}"]

pieces = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=6)), max_size=40).map("".join)
mutated = st.tuples(
    st.integers(0, len(VALID)), st.integers(0, len(VALID)), st.sampled_from(["delete", "duplicate", "insert"]), pieces
).map(
    lambda t: {
        "delete": VALID[: min(t[0], t[1])] + VALID[max(t[0], t[1]) :],
        "duplicate": VALID[: max(t[0], t[1])] + VALID[min(t[0], t[1]) :],
        "insert": VALID[: t[0]] + t[3] + VALID[t[0] :],
    }[t[2]]
)
# One draw in 16 is 100 KB to 1 MB: a model stuck repeating tags (the case that breaks lazy regexes).
REPEATS = [1] * 13 + [50, 100_000, 1_000_000]
repeated = st.tuples(st.sampled_from(["", VALID[:40], "<think>", "<think><element>x"]), pieces,
                     st.sampled_from(REPEATS)).map(
    lambda t: (t[0] + t[1] * max(1, t[2] // max(1, len(t[1]))))[: max(t[2], 1) + 60]
)
responses = st.one_of(st.text(), pieces, mutated, repeated, st.just(VALID))


# 2,500 examples: each of the five sources above still gets ~500 and the 100 KB - 1 MB repeats
# (1 draw in 40) ~60, which the linear-time test below covers at full size besides; 10,000 took
# ~30 s on a loaded 2-core machine for the same branches, four times over.
@settings(max_examples=2_500, deadline=None, suppress_health_check=list(HealthCheck))
@given(text=responses, truth=st.sampled_from(["awe", "Awe", "fear", ""]))
def test_any_string_scores_finitely_within_bounds(text: str, truth: str) -> None:
    paper = compute_score("FI-8", text, truth, {"candidates": ["awe", "fear"], "aliases": {"awed": "awe"}})
    brier = compute_score("FI-8", text, truth, None, conf_reward="brier")
    official = compute_score("FI-8", text, truth, None, preset="official")
    for out, (lo, hi) in ((paper, LOGLIK_BOUNDS), (brier, BRIER_BOUNDS), (official, OFFICIAL_BOUNDS)):
        assert math.isfinite(out["score"])
        assert lo - 1e-12 <= out["score"] <= hi + 1e-12
        assert all(math.isfinite(v) for v in out.values())
    assert paper["format"] in (0.0, 1.0) and paper["correct"] in (0.0, 1.0)
    assert paper["confidence"] == -1.0 or 0.0 <= paper["confidence"] <= 1.0
    parsed = parse_response(text)
    if parsed.format_ok:
        assert parsed.answer and 0.0 <= parsed.confidence <= 1.0 and not parsed.reason
        # surrounding whitespace never changes the verdict
        assert parse_response("\n " + text + " \n").format_ok
    else:
        assert parsed.reason
    if len(text) <= 4000:  # the regex baseline is quadratic; keep it to short inputs
        assert official == bench.regex_official_score(text, truth)


def _best(fn, text: str, repeat: int = 5) -> float:
    best = math.inf
    for _ in range(repeat):
        start = time.perf_counter()
        fn(text)
        best = min(best, time.perf_counter() - start)
    return best


ADVERSARIAL = {
    "repeated <think>": lambda n: "<think>" * (n // 7),
    "repeated <think><element>": lambda n: "<think><element>" * (n // 16),
    "open step, '<b>' content": lambda n: "<think><element>" + "a<b>" * (n // 4),
    "valid but huge content": lambda n: VALID.replace("element text", "x<y> " * (n // 5)),
    "repeated <answer>": lambda n: VALID[: VALID.index("<answer>")] + "<answer>" * (n // 8),
    "repeated </confidence>": lambda n: VALID + "</confidence>" * (n // 13),
    "huge confidence": lambda n: VALID.replace("0.62", "0." + "6" * n),
    "only '<'": lambda n: "<" * n,
}


def test_time_is_linear_in_length() -> None:
    scorers = {
        "paper": lambda s: compute_score("FI-8", s, "awe", {"candidates": ["awe", "fear"]}),
        "official": lambda s: compute_score("FI-8", s, "awe", None, preset="official"),
    }
    # 48 KB -> 192 KB stays under MAX_RESPONSE_CHARS (full strict parse); 250 KB -> 1 MB is past it
    for n in (48_000, 250_000):
        for name, make in ADVERSARIAL.items():
            small, large = make(n), make(4 * n)
            for scorer_name, fn in scorers.items():
                t_small, t_large = _best(fn, small), _best(fn, large)
                # linear: 4x the input costs ~4x; quadratic would cost 16x. 2.5x slack for a shared
                # CPU, plus 2 ms for timer noise on sub-millisecond runs.
                assert t_large <= 10 * t_small + 0.002, (name, scorer_name, t_small, t_large)
                assert t_large < 0.05, (name, scorer_name, t_large)  # up to ~1 MB: well under 50 ms


def test_length_cap() -> None:
    from reward_fns.emocaliber import MAX_RESPONSE_CHARS

    pad = MAX_RESPONSE_CHARS - len(VALID) + len("element text")
    assert parse_response(VALID.replace("element text", "x" * pad)).format_ok  # exactly at the cap
    over = parse_response(VALID.replace("element text", "x" * (pad + 1)))
    assert not over.format_ok and over.reason.startswith("response longer than")
    assert (over.answer, over.confidence) == ("awe", 0.62)  # still read for correctness/confidence


_BLOCK_PIECES = st.lists(st.sampled_from(["<think>", "</think>", "<answer>", "</answer>", "a", " ", "\n", "<", ">"]),
                         max_size=30).map("".join)


@given(_BLOCK_PIECES)
@settings(max_examples=300, deadline=None)
def test_block_readers_match_the_regexes_they_replace(text: str) -> None:
    # cot_prompts and the official preset used re.search / re.findall with (.*?) and DOTALL
    import re

    from reward_fns.emocaliber import all_blocks, first_block

    for tag in ("think", "answer"):
        m = re.search(rf"<{tag}>(.*?)</{tag}>", text, re.DOTALL)
        assert first_block(text, tag) == (None if m is None else (m.start(), m.group(1)))
        assert all_blocks(text, tag) == re.findall(rf"<{tag}>(.*?)</{tag}>", text, re.DOTALL)
