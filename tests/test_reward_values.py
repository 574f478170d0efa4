"""Stage-3 reward values against hand arithmetic (paper Eq. 4 and Eq. 6), the strict response
format, confidence parsing, answer matching, and the official release's preset."""

from __future__ import annotations

import json

import pytest

from emocaliber_rl.prompts import format_response
from emocaliber_rl.taxonomy import MIKELS_8, aliases_for
from reward_fns.emocaliber import (
    STEP_TAGS,
    compute_score,
    extract_answer,
    extract_confidence,
    is_correct,
    parse_confidence,
    parse_response,
)

STEPS = {
    "element": "a clown with a red nose",
    "human": "a child laughing",
    "context": "a circus tent",
    "interaction": "the clown makes the child laugh",
    "analysis": "a playful, light scene",
}


def resp(answer: str = "amusement", conf: str = "0.83", steps: dict[str, str] | None = None) -> str:
    think = "".join(f"<{t}>{(steps or STEPS)[t]}</{t}>" for t in STEP_TAGS)
    return f"<think>{think}</think><answer>{answer}</answer><confidence>{conf}</confidence>"


# ---------------------------------------------------------------- hand-computed reward values
# ln 0.83 = ln 0.8 + ln 1.0375 = -0.2231436 + 0.0368140 = -0.1863296
# ln 0.17 = ln 0.2 + ln 0.85  = -1.6094379 - 0.1625189 = -1.7719568
# ln 0.01 = -2 ln 10 = -2 * 2.3025851 = -4.6051702 ;  ln 0.99 = -0.0100503
# ln 0.5  = -0.6931472
LN_083, LN_017, LN_001, LN_099, LN_05 = -0.1863296, -1.7719568, -4.6051702, -0.0100503, -0.6931472


@pytest.mark.parametrize(
    ("answer", "conf", "kwargs", "expected"),
    [
        # Eq. 4, right, c = .83: 1 (format) + 1 (correct) + ln .83
        ("amusement", "0.83", {}, 1 + 1 + LN_083),  # = 1.8136704
        # Eq. 4, wrong, c = .83: 1 + 0 + ln(1 - .83)
        ("fear", "0.83", {}, 1 + 0 + LN_017),  # = -0.7719568
        # Eq. 4, right, c = 0 is clamped to eps = .01: 1 + 1 + ln .01
        ("amusement", "0", {}, 2 + LN_001),  # = -2.6051702
        # Eq. 4, wrong, c = 1 clamped to .99: 1 + 0 + ln(1 - .99)
        ("fear", "1.00", {}, 1 + LN_001),  # = -3.6051702
        # Eq. 4, right, c = 1 clamped to .99: 2 + ln .99
        ("amusement", "100%", {}, 2 + LN_099),  # = 1.9899497
        # Eq. 6, right, c = .83: 1 + 1 - (1 - .83)^2 = 2 - .0289
        ("amusement", "0.83", {"conf_reward": "brier"}, 1.9711),
        # Eq. 6, wrong, c = .83: 1 + 0 - (0 - .83)^2 = 1 - .6889
        ("fear", "0.83", {"conf_reward": "brier"}, 0.3111),
        # Eq. 6, wrong, c = 0: 1 + 0 - 0 = 1 (no clamp needed)
        ("fear", "0", {"conf_reward": "brier"}, 1.0),
        # weights: 0.5*1 + 2*1 + 3*ln .5
        ("amusement", ".5", {"w_format": 0.5, "w_correct": 2.0, "w_conf": 3.0}, 0.5 + 2 + 3 * LN_05),  # = 0.4205584
        # eps = 0.1: c = .99 clamped to .9; wrong: 1 + ln .1 = 1 - 2.3025851
        ("fear", "0.99", {"eps": 0.1}, 1 - 2.3025851),
    ],
)
def test_paper_preset_values(answer: str, conf: str, kwargs: dict, expected: float) -> None:
    out = compute_score("FI-8", resp(answer, conf), "amusement", None, **kwargs)
    assert out["score"] == pytest.approx(expected, abs=1e-6)
    assert out["format"] == 1.0


def test_components_are_logged_separately() -> None:
    out = compute_score("FI-8", resp("fear", "0.83"), "amusement")
    assert set(out) == {"score", "format", "correct", "confidence", "confidence_valid", "conf_reward", "loglik", "brier"}
    assert out["correct"] == 0.0 and out["confidence"] == pytest.approx(0.83)
    assert out["loglik"] == pytest.approx(LN_017, abs=1e-6)
    assert out["brier"] == pytest.approx(-0.6889, abs=1e-9)  # -(0 - .83)^2
    assert out["conf_reward"] == out["loglik"]
    assert out["score"] == pytest.approx(out["format"] + out["correct"] + out["conf_reward"])


def test_format_failure_still_scores_answer_and_confidence_as_a_sum() -> None:
    broken = resp().replace("<human>", "<humans>")
    out = compute_score("FI-8", broken, "amusement")
    # 0 (format) + 1 (answer from the last <answer> block) + ln .83
    assert (out["format"], out["correct"]) == (0.0, 1.0)
    assert out["score"] == pytest.approx(1 + LN_083, abs=1e-6)
    # no confidence at all: the floor ln(eps) = ln .01
    out = compute_score("FI-8", "<answer>amusement</answer>", "amusement")
    assert out["score"] == pytest.approx(1 + LN_001, abs=1e-6)
    assert (out["confidence"], out["confidence_valid"]) == (-1.0, 0.0)
    out = compute_score("FI-8", "no tags at all", "amusement", conf_reward="brier")
    assert out["score"] == -1.0  # 0 + 0 - 1 (Brier floor)
    assert compute_score("FI-8", broken, "amusement", format_fail_score=-3.0)["score"] == -3.0


def test_unknown_options_and_bad_values_raise() -> None:
    with pytest.raises(TypeError, match="w_fromat"):
        compute_score("FI-8", resp(), "amusement", w_fromat=2.0)
    with pytest.raises(ValueError, match="preset"):
        compute_score("FI-8", resp(), "amusement", preset="nope")
    with pytest.raises(ValueError, match="conf_reward"):
        compute_score("FI-8", resp(), "amusement", conf_reward="l2")
    # veRL adds these when a reward router is configured: accepted and ignored
    out = compute_score("FI-8", resp(), "amusement", reward_router_address=None, reward_model_tokenizer=None)
    assert out["score"] == pytest.approx(2 + LN_083, abs=1e-6)


# ---------------------------------------------------------------- the strict format
def test_prompts_format_response_round_trips() -> None:
    text = format_response(STEPS, "Awe", 0.37)
    parsed = parse_response(text)
    assert parsed.format_ok and parsed.answer == "Awe" and parsed.confidence == pytest.approx(0.37)


GOOD = resp()


@pytest.mark.parametrize(
    "text",
    [
        GOOD,
        "  \n" + GOOD + "\n\n",
        GOOD.replace("><", ">\n  <"),  # whitespace between every pair of tags
        GOOD.replace("<answer>amusement", "<answer>\n Amusement! "),
        GOOD.replace("a child laughing", "a child <laughing> & 1 < 2"),  # '<' that is no tag
    ],
)
def test_format_ok(text: str) -> None:
    assert parse_response(text).format_ok, parse_response(text).reason


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("Sure! " + GOOD, "unexpected text before <think>"),
        (GOOD.replace("</think>", "</think>so:"), "unexpected text before <answer>"),
        (GOOD + " done", "text after </confidence>"),
        (GOOD.replace("</element><human>", "</element>and<human>"), "unexpected text before <human>"),
        (GOOD.replace("<human>a child laughing</human>", ""), "missing <human>"),
        (resp(steps={**STEPS, "human": "  "}), "empty <human>"),
        (GOOD.replace("<answer>amusement", "<answer> "), "empty <answer>"),
        (GOOD.replace("a child laughing", "<context>x</context>"), "unexpected tag inside <human>"),
        (GOOD.replace("a playful", "<answer>fear</answer> a playful"), "unexpected tag inside <analysis>"),
        (GOOD.replace("<answer>", "<answer><answer>", 1), "unexpected tag inside <answer>"),
        (GOOD.replace("<think>", "<Think>"), "missing <think>"),
        (GOOD.replace("</confidence>", "</confidence><confidence>0.5</confidence>"), "text after </confidence>"),
        (GOOD.replace("0.83", "high"), "invalid confidence"),
        (GOOD.replace("<confidence>0.83</confidence>", ""), "missing <confidence>"),
    ],
)
def test_format_fails(text: str, reason: str) -> None:
    parsed = parse_response(text)
    assert not parsed.format_ok
    assert parsed.reason == reason
    assert compute_score("FI-8", text, "amusement")["format"] == 0.0


def test_steps_out_of_order_fail() -> None:
    swapped = GOOD.replace("<element>", "<TMP>").replace("</element>", "</TMP>")
    swapped = swapped.replace("<human>", "<element>").replace("</human>", "</element>")
    swapped = swapped.replace("<TMP>", "<human>").replace("</TMP>", "</human>")
    assert not parse_response(swapped).format_ok


def test_failed_parse_reads_the_last_blocks() -> None:
    text = "<answer>fear</answer> hmm <answer> awe </answer><confidence>0.4</confidence>"
    parsed = parse_response(text)
    assert not parsed.format_ok
    assert (parsed.answer, parsed.confidence) == ("awe", 0.4)
    assert extract_answer(text) == "awe" and extract_confidence(text) == 0.4
    assert extract_answer("no answer") is None and extract_confidence("<confidence>2</confidence>") is None


@pytest.mark.parametrize(
    ("text", "value"),
    [("0.83", 0.83), (".83", 0.83), ("83%", 0.83), ("{0.83}", 0.83), (" 0.83 ", 0.83), ("{ 83% }", 0.83),
     ("1", 1.0), ("0", 0.0), ("1.", 1.0), ("100%", 1.0), ("0%", 0.0), ("0.05", 0.05)],
)
def test_confidence_accepted(text: str, value: float) -> None:
    assert parse_confidence(text) == pytest.approx(value)


@pytest.mark.parametrize(
    "text",
    ["", ".", "%", "{}", "1.2", "101%", "-0.1", "+0.5", "0.8.3", "1e-1", "nan", "inf", "0.83 0.9", "0,83",
     "high", "{0.83", "0.83}", "{{0.83}}", "\uff10.5", "0x1", "0." + "1" * 40],
)
def test_confidence_rejected(text: str) -> None:
    assert parse_confidence(text) is None
    assert not parse_response(resp(conf=text)).format_ok


# ---------------------------------------------------------------- answer matching
def test_exact_matching_normalises_case_punctuation_whitespace() -> None:
    for answer in ("amusement", "Amusement.", "  AMUSEMENT!  ", "'amusement'"):
        assert is_correct(answer, "amusement")
    for answer in ("it is amusement", "amusement, awe", "amusement/awe", "amusements", "", None):
        assert not is_correct(answer, "amusement")


def test_aliases_from_the_taxonomy() -> None:
    abstract = aliases_for("Abstract-8")  # e.g. sad -> sadness, content -> contentment
    assert abstract["sad"] == "sadness"
    assert is_correct("Sad", "sadness", aliases=abstract)
    assert is_correct("Sad", "sadness")  # the taxonomy's aliases ship with reward_fns
    webemo = aliases_for("WebEmo-25")  # dataset misspelling as ground truth
    assert is_correct("cheerfulness", "cheerfullness", aliases=webemo)


def test_aliases_in_extra_info_any_storage_form() -> None:
    text = resp("sad", "0.9")
    as_dict = {"sad": "sadness", "pos": None}  # None: parquet struct field of another subtask
    as_pairs = [["sad", "sadness"]]
    for aliases in (as_dict, as_pairs, json.dumps(as_dict)):
        assert compute_score("Abstract-8", text, "sadness", {"aliases": aliases})["correct"] == 1.0
    assert compute_score("Abstract-8", text, "sadness", None, aliases=as_dict)["correct"] == 1.0  # reward_kwargs
    assert compute_score("Abstract-8", text, "sadness", {})["correct"] == 1.0  # LABEL_ALIASES
    # a per-sample alias wins over the shipped one
    assert compute_score("Abstract-8", text, "sadness", {"aliases": {"sad": "anger"}})["correct"] == 0.0


def test_several_labels_are_wrong_with_candidates() -> None:
    cands = list(MIKELS_8)
    ali = aliases_for("FI-8")
    for match in ("exact", "label"):
        assert not is_correct("amusement or awe", "amusement", candidates=cands, match=match)
        assert not is_correct("amused, angry", "amusement", aliases=ali, candidates=cands, match=match)
    # 'label' (I(e), the default) accepts one named label inside a sentence, 'exact' does not
    assert is_correct("The image evokes amusement.", "amusement", candidates=cands)
    assert not is_correct("The image evokes amusement.", "amusement", candidates=cands, match="exact")
    assert is_correct("I feel amused", "amusement", aliases=ali, candidates=cands)
    assert not is_correct("no idea", "amusement", candidates=cands)
    assert not is_correct("fear", "amusement", candidates=cands)
    # without the candidate list a second label cannot be recognised: whole-answer match only
    assert is_correct("Amusement!", "amusement")
    assert not is_correct("it is amusement", "amusement")
    with pytest.raises(ValueError, match="match"):
        is_correct("amusement", "amusement", match="word")
    with pytest.raises(ValueError, match="match"):
        compute_score("FI-8", resp("awe"), "awe", {"candidates": cands}, match="words")
    # the reward's default is I(e)
    out = compute_score("FI-8", resp("it is awe"), "awe", {"candidates": cands})
    assert out["correct"] == 1.0
    assert compute_score("FI-8", resp("it is awe"), "awe", {"candidates": cands}, match="exact")["correct"] == 0.0


def test_overlong_answer_is_wrong() -> None:
    assert not is_correct("amusement" + " " * 2000, "amusement")


# ---------------------------------------------------------------- official preset
OFFICIAL_KEYS = {"score", "format_score", "confidence_score", "correctness", "brier_score", "confidence"}


@pytest.mark.parametrize(
    ("text", "expected_score", "i"),
    [
        # 1 + 2*ln .83 + 1 = 2 - 0.3726592
        (resp("amusement", "0.83"), 1.6273408, 1),
        # 1 + 2*ln(1 - .83) + 0 = 1 - 3.5439137
        (resp("fear", "0.83"), -2.5439137, 0),
        # 1 + 2*ln .5 = 1 - 1.3862944
        (resp("fear", "0.5"), -0.3862944, 0),
        # punctuation deleted, case folded: 'Amusement!' is one word 'amusement'
        (resp("Amusement!", "0.5"), 2 - 1.3862944, 1),
        # float() accepts '1e-1': 1 + 2*ln(.9) = 1 - 0.2107210
        (resp("fear", "1e-1"), 0.7892790, 0),
    ],
)
def test_official_values(text: str, expected_score: float, i: int) -> None:
    out = compute_score("FI-8", text, "amusement", preset="official")
    assert set(out) == OFFICIAL_KEYS
    assert out["score"] == pytest.approx(expected_score, abs=1e-6)
    assert (out["format_score"], out["correctness"]) == (1, i)


@pytest.mark.parametrize(
    "text",
    [
        resp(conf="1"),  # c must be < 1 strictly
        resp(conf="0"),  # and > 0
        resp(conf="83%"),  # float() rejects it
        resp().replace("<interaction>", "<inter>"),
        resp().replace("<think>", ""),
    ],
)
def test_official_failure_is_minus_five(text: str) -> None:
    assert compute_score("FI-8", text, "amusement", preset="official") == {
        "score": -5, "format_score": 0, "confidence_score": -5, "correctness": 0, "brier_score": -1, "confidence": 1,
    }


def test_official_quirks_kept() -> None:
    # steps in any order, empty, text anywhere: still format 1
    loose = "hello <think><analysis></analysis><element></element><human>h</human><context>c</context>" \
            "<interaction>i</interaction></think> <confidence>0.5</confidence> x <answer>awe</answer>"
    out = compute_score("FI-8", loose, "awe", preset="official")
    assert out["format_score"] == 1 and out["correctness"] == 1
    # first <answer> counts; aliases are not applied; two words are wrong
    two = resp("awe").replace("</think>", "</think><answer>fear</answer>")
    assert compute_score("FI-8", two, "awe", preset="official")["correctness"] == 0
    assert compute_score("FI-8", resp("awed"), "awe", preset="official")["correctness"] == 0
    assert compute_score("FI-8", resp("awe fear"), "awe", preset="official")["correctness"] == 0
