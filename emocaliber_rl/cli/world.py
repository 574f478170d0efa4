"""`emocaliber world oracle`: the known-answer world's oracle as a predictions file."""

from __future__ import annotations

import argparse

from emocaliber_rl.cli.common import CliError, add_command, add_group_command, output_file


def _run_oracle(args: argparse.Namespace) -> int:
    from emocaliber_rl.data.records import write_jsonl
    from emocaliber_rl.inference.eval_run import read_eval_manifest
    from emocaliber_rl.world.oracle import NoSceneError, oracle_rows, read_scene_file

    output_file(args.out, "--out")
    try:
        rows = oracle_rows(read_eval_manifest(args.manifest), read_scene_file(args.scenes))
    except NoSceneError as e:
        raise CliError(f"{args.manifest}:{_line_of(args.manifest, e.row_id)}: id {e.row_id!r}: field "
                       f"'image': {e} (scene file {args.scenes}); nothing written") from None
    write_jsonl(args.out, rows)
    print(f"oracle: {len(rows)} predictions -> {args.out}")
    return 0 if rows else 1


def _line_of(manifest: str, row_id: str) -> int | str:
    """The line of the manifest row with ``row_id`` (looked up only for an error message)."""
    from emocaliber_rl.jsonl import read_jsonl

    return next((n for n, obj in read_jsonl(manifest) if str(obj.get("id")) == row_id), "?")


def register(sub: argparse._SubParsersAction) -> None:
    wsub = add_group_command(
        sub, "world", help="the demo's known-answer world: its Bayes oracle's predictions, the best "
                           "any model can do on its images",
        description="The known-answer world (emocaliber_rl.world) that the demo draws its images from: "
                    "every image has a known label posterior.",
        dest="world_command", metavar="COMMAND")
    o = add_command(
        wsub, "oracle", help="write the Bayes oracle's predictions for an evaluation manifest",
        description="Predictions of the known-answer world's oracle (answer: the posterior's argmax; "
                    "confidence: its max) for every row of an evaluation manifest, in `eval run`'s "
                    "format, so `eval score` and `eval report` show how far each model is from perfect.",
        example="emocaliber world oracle --scenes runs/demo/world/scenes.jsonl "
                "--manifest runs/demo/data/test.eval.jsonl --out runs/demo/eval/oracle/predictions.jsonl")
    o.add_argument("--scenes", required=True, help="scene file the world's writer wrote (jsonl)")
    o.add_argument("--manifest", required=True, help="evaluation manifest (`emocaliber export eval`)")
    o.add_argument("--out", required=True, help="predictions jsonl to write")
    o.set_defaults(func=_run_oracle)
