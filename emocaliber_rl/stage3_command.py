"""The one builder of a stage-3 command line: ``bash recipes/stage3_grpo.sh`` with its options and
Hydra overrides.

The demo, the calibration study, Table 9's study and the tests start stage 3 through this function,
so a change to the recipe's options (a renamed flag, a new required one) is made in one place.
The recipe itself (``recipes/stage3_grpo.sh``) turns the options into veRL's ``main_ppo`` keys.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

STAGE3_RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "stage3_grpo.sh"


def stage3_command(
    *,
    model: str | os.PathLike[str],
    train: str | os.PathLike[str],
    val: str | os.PathLike[str],
    out: str | os.PathLike[str],
    profile: str = "cpu",
    steps: int | None = None,
    experiment: str | None = None,
    nnodes: int | None = None,
    gpus_per_node: int | None = None,
    overrides: Sequence[str] = (),
) -> list[str]:
    """``bash recipes/stage3_grpo.sh --profile P --model M --train T --val V --out O [--steps N]
    [--experiment E] [--nnodes K] [--gpus-per-node G] -- OVERRIDES...``: the recipe's defaults
    where an option is None (one epoch; experiment ``stage3_grpo``; one node; the visible GPUs).
    Overrides follow ``--``, so none can be read as an option. ``cmd[2:]`` are the recipe's
    arguments, what ``recipes/submit_stage3.sh`` takes after its own ``--``."""
    cmd = ["bash", str(STAGE3_RECIPE), "--profile", profile, "--model", str(model), "--train", str(train),
           "--val", str(val), "--out", str(out)]
    if steps is not None:
        cmd += ["--steps", str(steps)]
    if experiment is not None:
        cmd += ["--experiment", experiment]
    if nnodes is not None:
        cmd += ["--nnodes", str(nnodes)]
    if gpus_per_node is not None:
        cmd += ["--gpus-per-node", str(gpus_per_node)]
    return [*cmd, "--", *overrides]
