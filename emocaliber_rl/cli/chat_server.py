"""``python -m emocaliber_rl.cli.chat_server``: the scripted OpenAI-compatible test server
(:mod:`emocaliber_rl.data.chat_server`) in its own process, for benchmarks and offline dry runs of
`emocaliber cot ...`."""

from __future__ import annotations

import argparse
import json

from emocaliber_rl.cli.common import HelpFormatter


def build_parser() -> argparse.ArgumentParser:
    from emocaliber_rl.data import chat_server

    p = argparse.ArgumentParser(prog="python -m emocaliber_rl.cli.chat_server", description=chat_server.__doc__,
                                formatter_class=HelpFormatter,
                                epilog="example:\n  python -m emocaliber_rl.cli.chat_server --port 8011 --delay 0.05")
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free port)")
    p.add_argument("--delay", type=float, default=0.0, help="seconds before each normal answer")
    p.add_argument("--slow-s", type=float, default=5.0, help="sleep of the 'slow' action")
    p.add_argument("--script", default=None, help='JSON file {"record id": ["429", "ok", ...]}')
    p.add_argument("--default-script", default="", help="comma-separated actions for unscripted ids")
    p.add_argument("--world", action="store_true",
                   help="teacher and judge of the demo's known-answer world: read each request's image "
                        "and answer from its pixels (emocaliber_rl.world.teacher)")
    return p


def main(argv: list[str] | None = None) -> None:
    from emocaliber_rl.data.chat_server import ServerConfig, serve

    args = build_parser().parse_args(argv)
    cfg = ServerConfig(delay=args.delay, slow_s=args.slow_s, world=args.world,
                       default_script=[a for a in args.default_script.split(",") if a])
    if args.script:
        with open(args.script, encoding="utf-8") as f:
            cfg.script = json.load(f)
    serve(cfg, args.port)


if __name__ == "__main__":
    main()
