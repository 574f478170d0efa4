"""The README leads with the user's job: at most 150 lines, the GPU path as its first code block
(install, the three stage recipes, `ray job submit`, the hardware), the CPU commands exactly as
.ci/run runs them, commands that the real parsers accept, and links that resolve."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from .conftest import REPO_ROOT

README = REPO_ROOT / "README.md"
MAX_LINES = 150
_FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
SUBMITTED = {"recipes/submit_stage1.sh": "recipes/stage1_sft.sh", "recipes/submit_stage2.sh": "recipes/stage2_sft.sh",
             "recipes/submit_stage3.sh": "recipes/stage3_grpo.sh"}
_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def code_blocks(text: str) -> list[str]:
    return _FENCE.findall(text)


def commands(block: str) -> list[str]:
    """Each command of a bash block: comments dropped, backslash continuations joined."""
    out: list[str] = []
    pending = ""
    for line in block.splitlines():
        line = line.split(" #", 1)[0].rstrip() if not line.lstrip().startswith("#") else ""
        if not line.strip():
            continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        out.append((pending + line.strip()).strip())
        pending = ""
    return out


def ci_commands(ci: Path = REPO_ROOT / ".ci" / "run") -> list[str]:
    """.ci/run's commands: what it runs after its shell set-up lines."""
    return [c for c in commands(ci.read_text(encoding="utf-8"))
            if not c.startswith(("set ", "cd ")) and not c.startswith("#!")]


def gpu_block_problems(block: str) -> list[str]:
    needed = {"the GPU install": "recipes/install.sh gpu", "stage 1": "bash recipes/stage1_sft.sh",
              "stage 2": "bash recipes/stage2_sft.sh", "stage 3": "bash recipes/stage3_grpo.sh",
              "ray job submit": "bash recipes/submit_stage", "the hardware": "GPUs"}
    return [what for what, text in needed.items() if text not in block]


def test_readme_is_at_most_150_lines() -> None:
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n <= MAX_LINES, f"README.md has {n} lines, at most {MAX_LINES}"


def test_first_code_block_is_the_gpu_path() -> None:
    first = code_blocks(README.read_text(encoding="utf-8"))[0]
    assert not gpu_block_problems(first), f"README's first code block lacks {gpu_block_problems(first)}"


def test_gpu_check_sees_a_cpu_first_block() -> None:
    assert gpu_block_problems("bash recipes/install.sh cpu\n.venv/bin/python -m pytest tests\n")


def test_ci_runs_the_readme_commands_in_order() -> None:
    ci = ci_commands()
    assert ci == ["bash recipes/install.sh cpu", ".venv/bin/python -m pytest tests",
                  ".venv/bin/emocaliber demo --out runs/demo"]
    blocks = [commands(b) for b in code_blocks(README.read_text(encoding="utf-8"))]
    assert ci in blocks, "README.md has no code block that is exactly .ci/run's commands, in order"


def test_readme_emocaliber_commands_parse() -> None:
    from emocaliber_rl.cli import build_parser

    text = README.read_text(encoding="utf-8")
    cmds = [c for b in code_blocks(text) for c in commands(b) if re.match(r"(\.venv/bin/)?emocaliber ", c)]
    assert len(cmds) >= 8
    for cmd in cmds:
        argv = [a for a in shlex.split(cmd)[1:] if a != "..."]
        if "..." in cmd:  # an elided command (`study table9 ...`): the subcommand alone must exist
            argv = argv[:2] + ["--help"]
        try:
            build_parser().parse_args(argv)
        except SystemExit as e:
            assert e.code == 0, f"README.md: `{cmd}` is refused by emocaliber's parser"


def test_readme_recipe_commands_use_existing_scripts_and_flags() -> None:
    lib = "".join(p.read_text(encoding="utf-8") for p in sorted((REPO_ROOT / "recipes" / "lib").glob("*.sh")))
    text = README.read_text(encoding="utf-8")
    cmds = [c for b in code_blocks(text) for c in commands(b) if c.startswith("bash recipes/")]
    assert len(cmds) >= 6
    for cmd in cmds:
        words = shlex.split(cmd)
        script = REPO_ROOT / words[1]
        assert script.is_file(), f"README.md: {words[1]} does not exist"
        known = script.read_text(encoding="utf-8") + lib
        if words[1] in SUBMITTED:  # after `--` come the stage recipe's own options
            known += (REPO_ROOT / SUBMITTED[words[1]]).read_text(encoding="utf-8")
        for flag in (w for w in words[2:] if w.startswith("--") and w != "--"):
            flag = flag.split("=", 1)[0]
            assert re.search(re.escape(flag) + r"(?![\w-])", known), f"README.md: `{cmd}`: {words[1]} has no option {flag}"


@pytest.mark.parametrize("target", sorted(set(_LINK.findall(README.read_text(encoding="utf-8")))))
def test_readme_links_resolve(target: str) -> None:
    if target.startswith(("http://", "https://")):
        return
    assert (REPO_ROOT / target).exists(), f"README.md links {target}, which does not exist"


def test_paper_map_is_the_first_doc_link() -> None:
    text = README.read_text(encoding="utf-8")
    docs_links = [t for t in _LINK.findall(text.split("## Documentation", 1)[1]) if t.startswith("docs/")]
    assert docs_links[0] == "docs/paper-map.md"
