"""``python -m emocaliber_rl.cli.cluster_check``: the job ``submit_stage*.sh --check`` submits
(``recipes/lib/ray_submit.sh``); the work is :func:`emocaliber_rl.cluster_check.check_cluster`."""

from __future__ import annotations

import argparse
import sys

from emocaliber_rl import cluster_check


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emocaliber_rl.cli.cluster_check",
                                     description=(cluster_check.__doc__ or "").split("\n\n")[0])
    parser.add_argument("--stage-script", help="the recipe, relative to the repository root (runs its --dry-run)")
    parser.add_argument("--repo", required=True, help="the submitting machine's repository root")
    parser.add_argument("--python", required=True, help="the interpreter the job runs")
    parser.add_argument("recipe_args", nargs="*", help="the recipe's arguments (after --)")
    args = parser.parse_args(argv)
    return cluster_check.check_cluster(args.stage_script, args.repo, args.python, args.recipe_args)


if __name__ == "__main__":
    sys.exit(main())
