"""`emocaliber loops build | show | plot`: the emotion loops (paper section 3.2, Figure 5)."""

from __future__ import annotations

import argparse
import json
import sys

from emocaliber_rl.cli.common import add_command, add_group_command


def _run_build(args: argparse.Namespace) -> int:
    from emocaliber_rl.loops import build_all
    from emocaliber_rl.vad_lexicon import LexiconError

    try:
        written = build_all(args.lexicon, args.out)
    except LexiconError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path in written:
        data = json.loads(path.read_text(encoding="utf-8"))
        print(f"{path}  length {data['total_length']:.4f}  " + " > ".join(data["order"]))
    return 0


def _run_show(args: argparse.Namespace) -> int:
    from emocaliber_rl.loops import UnknownLoopError, resolve_loop

    try:
        loop = resolve_loop(args.taxonomy, args.loops_dir)
    except (UnknownLoopError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    table = {a: {b: round(d, 6) for b, d in row.items()} for a, row in loop.distance_table().items()}
    if args.json:
        json.dump(
            {
                "loop": loop.name,
                "order": list(loop.order),
                "positions": dict(loop.positions),
                "distance": table,
            },
            sys.stdout,
            indent=2,
        )
        print()
        return 0
    print(f"{loop.name}: " + " > ".join(loop.order) + f" (back to {loop.order[0]})")
    width = max(len(x) for x in loop.order)
    print(" " * width + " " + " ".join(f"{x[:6]:>6}" for x in loop.order))
    for a in loop.order:
        print(f"{a:>{width}} " + " ".join(f"{table[a][b]:6.3f}" for b in loop.order))
    return 0


def _run_plot(args: argparse.Namespace) -> int:
    from emocaliber_rl.loops import plot_loops

    print(plot_loops(args.out, args.loops_dir, dpi=args.dpi))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``emocaliber loops build|show|plot``."""
    from emocaliber_rl import loops  # light at import: --help stays instant

    loops_sub = add_group_command(
        sub, "loops",
        help="emotion loops: the VAD-based label distances d in [0, 0.5] that stage 2's Eq. 2 "
             "reads (build, show, plot)",
        description=loops.__doc__, dest="loops_command", metavar="ACTION")

    b = add_command(
        loops_sub, "build",
        help="recompute every loop from a user-supplied NRC VAD lexicon",
        description="Recompute every emotion loop exactly from an NRC VAD lexicon (v1 or v2.1, "
        "detected from the header) and write one JSON file per loop. The lexicon may not be "
        "redistributed: never commit it; commit only the derived JSON.",
        example="emocaliber loops build --lexicon NRC-VAD-Lexicon.txt --out my_loops",
    )
    b.add_argument(
        "--lexicon",
        metavar="FILE",
        help="NRC VAD lexicon file (v1 NRC-VAD-Lexicon.txt or v2.1 NRC-VAD-Lexicon-v2.1.txt); "
        "default: $EMOCALIBER_VAD_LEXICON",
    )
    b.add_argument(
        "--out",
        metavar="DIR",
        help="directory for <loop>.json (default: the package's shipped emocaliber_rl/data/loops)",
    )
    b.set_defaults(func=_run_build)

    s = add_command(
        loops_sub, "show",
        help="print a loop's order and its pairwise distances",
        description="Print one loop's order and the distance d between every pair of labels.",
        example="emocaliber loops show FI-8\nemocaliber loops show webemo25 --json",
    )
    s.add_argument(
        "taxonomy",
        metavar="TAXONOMY",
        help=f"a loop ({', '.join(loops.LOOP_NAMES)}) or a subtask name (e.g. FI-8, WebEmo-25)",
    )
    s.add_argument(
        "--json",
        action="store_true",
        help='print {"loop", "order", "positions", "distance": {a: {b: d}}} as JSON '
        "instead of a table",
    )
    s.add_argument(
        "--loops-dir",
        metavar="DIR",
        help="read loops from DIR (written by `loops build --out DIR`) instead of the shipped ones",
    )
    s.set_defaults(func=_run_show)

    pl = add_command(
        loops_sub, "plot",
        help="draw every loop as in the paper's Figure 5 (PNG)",
        description="Draw every loop: labels on a circle at their arc-length positions "
        "(position 0 at the top, clockwise); WebEmo-25 coloured by WebEmo-7 parent.",
        example="emocaliber loops plot --out loops.png",
    )
    pl.add_argument(
        "--out",
        metavar="FILE.png",
        default="loops.png",
        help="output PNG file (default: loops.png in the current directory)",
    )
    pl.add_argument(
        "--loops-dir",
        metavar="DIR",
        help="read loops from DIR (written by `loops build --out DIR`) instead of the shipped ones",
    )
    pl.add_argument("--dpi", type=int, default=80, help="resolution of the PNG (default: 80)")
    pl.set_defaults(func=_run_plot)
