"""The limits the recipes' YAML states and the toolkit's defaults are the same numbers, stated once
in Python (emocaliber_rl/limits.py)."""

from __future__ import annotations

import ast

import yaml

from emocaliber_rl import limits
from tests.conftest import REPO_ROOT

CONFIG = REPO_ROOT / "recipes" / "config"


def _data(name: str) -> dict:
    return yaml.safe_load((CONFIG / name).read_text(encoding="utf-8"))["data"]


def test_limits_are_the_recipes() -> None:
    assert _data("stage1_sft.yaml")["max_length"] == limits.SFT_MAX_LENGTH == 2048
    assert _data("stage2_sft.yaml")["max_length"] == limits.SFT_MAX_LENGTH
    rl = _data("stage3_grpo.yaml")
    assert rl["max_prompt_length"] == limits.RL_MAX_PROMPT_LENGTH == 4096
    assert rl["max_response_length"] == limits.RL_MAX_RESPONSE_LENGTH == 2048
    # the release's bounds: 256..576 image tokens of 28x28 pixels
    assert limits.OFFICIAL_PIXEL_BOUNDS == (256 * 28 * 28, 576 * 28 * 28)


def test_the_cli_defaults_are_the_limits() -> None:
    from emocaliber_rl.cli import build_parser

    parser = build_parser()
    label = parser.parse_args(["stage2", "label", "g.jsonl", "--out", "o.parquet"])
    assert label.max_length == limits.SFT_MAX_LENGTH


def test_no_module_retypes_the_pixel_bounds() -> None:
    numbers = set(limits.OFFICIAL_PIXEL_BOUNDS)
    home = REPO_ROOT / "emocaliber_rl" / "limits.py"
    offenders = []
    for path in sorted((REPO_ROOT / "emocaliber_rl").rglob("*.py")):
        if path == home:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and (node.value in numbers and type(node.value) is int
                                                   or isinstance(node.value, str)
                                                   and any(str(n) in node.value for n in numbers)):
                offenders.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno}")
    assert not offenders, offenders
