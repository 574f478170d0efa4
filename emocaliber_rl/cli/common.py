"""What every command module shares: the help formatter, ``add_command`` (formatter, description
and an example epilog in one call), the image-path map and the pixel-bound options."""

from __future__ import annotations

import argparse
import re
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

from emocaliber_rl.limits import OFFICIAL_PIXEL_BOUNDS

_LO, _HI = OFFICIAL_PIXEL_BOUNDS

_DEFAULT_WORD = re.compile(r"\bdefault\b", re.IGNORECASE)
_NO_VALUE = (None, False, "", [])


class HelpFormatter(argparse.HelpFormatter):
    """Each real default shown once, and paragraphs that keep their layout.

    ``ArgumentDefaultsHelpFormatter`` appends "(default: X)" to every option, also where the help
    already names the default (an option whose ``None`` means "take the config file's") and where
    there is none (``-o`` printed "(default: None)"). Here the default is appended only when the
    help does not mention one and the default is a value. Descriptions and epilogs are wrapped per
    paragraph; a paragraph with an indented line (an example, a list) is printed as written.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "%(default)" in text or _DEFAULT_WORD.search(text):
            return text
        if action.default is argparse.SUPPRESS or any(action.default is v or action.default == v
                                                      for v in _NO_VALUE):
            return text
        if action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE):
            return text + " (default: %(default)s)"
        return text

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        out = []
        for para in textwrap.dedent(text).strip("\n").split("\n\n"):
            lines = para.splitlines()
            if any(line[:1].isspace() or line.lstrip().startswith(("- ", "* ")) for line in lines):
                out.append("\n".join(indent + line for line in lines))
            else:
                out.append(super()._fill_text(para, width, indent))
        return "\n\n".join(out)


def positive_int(text: str) -> int:
    """An argparse ``type``: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def add_command(sub: argparse._SubParsersAction, name: str, *, help: str, description: str,
                example: str | None = None, **kwargs: Any) -> argparse.ArgumentParser:
    """``sub.add_parser`` with the house formatter; ``example`` (one or more command lines) ends
    the help as its epilog."""
    epilog = None
    if example:
        epilog = "example:\n" + "\n".join("  " + line for line in example.strip().splitlines())
    return sub.add_parser(name, help=help, description=description, epilog=epilog,
                          formatter_class=HelpFormatter, **kwargs)


def add_group_command(sub: argparse._SubParsersAction, name: str, *, help: str, description: str,
                      dest: str, metavar: str = "SUBCOMMAND") -> argparse._SubParsersAction:
    """A command with subcommands (``eval score``...): its parser's subparsers."""
    p = add_command(sub, name, help=help, description=description)
    return p.add_subparsers(dest=dest, metavar=metavar, required=True)


# ----------------------------------------------------------------------------------------------
# exit codes and one-line errors

EXIT_OK, EXIT_NOTHING, EXIT_USAGE, EXIT_PARTIAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

EXIT_CODES_HELP = """\
exit codes (every command that reads rows; docs/outputs-and-resume.md lists them per command):
  0    every input row was used
  1    nothing usable written (no row left to write); the message says what to try
  2    bad invocation or input (a flag, an unreadable or damaged file, -o naming a folder):
       one line names it, and nothing is written
  3    written, with rows left out (each listed in the problem report, rejects file or
       OUT.errors.jsonl); a resumable command retries them when rerun
  130  interrupted (Ctrl-C): what was committed stays; rerun the same command to resume"""


class CliError(Exception):
    """A mistake the user can fix, raised anywhere under a command's ``func``: ``emocaliber``'s
    ``main`` prints ``error: MESSAGE`` (one line, no traceback) and exits with ``code``."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def rows_exit_code(written: int, left_out: int) -> int:
    """The exit code of a command that takes rows: 1 nothing written, 3 written with rows left
    out, 0 every row used."""
    if written == 0:
        return EXIT_NOTHING
    return EXIT_PARTIAL if left_out else EXIT_OK


def output_file(path: str | Path, flag: str = "-o") -> Path:
    """``path`` as an output file, refused before any work when it names a folder (the final
    rename would fail after everything was computed, and leave ``OUT.tmp`` behind)."""
    p = Path(path)
    if p.is_dir():
        raise CliError(f"{flag} {path}: is a folder; give a file name")
    return p


def output_folder(path: str | Path, flag: str = "-o") -> Path:
    """``path`` as an output folder, refused before any work when it names an existing file."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise CliError(f"{flag} {path}: is a file, not a folder; give a folder to write into")
    return p


# ----------------------------------------------------------------------------------------------
# image paths


def add_extra_subcommand(sub: argparse._SubParsersAction, name: str,
                         configure: Callable[[argparse.ArgumentParser], None], kwargs: dict[str, Any]) -> None:
    """Add a subcommand registered by another module (``eval``/``stage2`` extension hooks)."""
    configure(sub.add_parser(name, **{"formatter_class": HelpFormatter, **kwargs}))


def add_path_map(p: argparse.ArgumentParser) -> None:
    p.add_argument("--path-map", action="append", default=[], metavar="OLD=NEW",
                   help="rewrite image paths starting with OLD to start with NEW (repeatable; for "
                        "published files that name images by absolute paths on another machine)")


def path_map_from_args(args: argparse.Namespace) -> list[tuple[str, str]]:
    out = []
    for item in args.path_map:
        old, sep, new = item.partition("=")
        if not sep or not old:
            raise SystemExit(f"error: --path-map needs OLD=NEW, got {item!r}")
        out.append((old, new))
    return out


def add_test_guard(p: argparse.ArgumentParser) -> None:
    """``--test-manifest`` and ``--allow-test``: the train/test guard's options
    (:mod:`emocaliber_rl.data.leak_guard`)."""
    p.add_argument("--test-manifest", action="append", default=[], metavar="PATH",
                   help="test manifest (e.g. data/vecbench/test.jsonl; repeatable): an input record "
                        "whose image has the sha256 of one of its images is test data and refused")
    p.add_argument("--allow-test", action="store_true",
                   help="let test data through (split test, a test-only OOD subtask, an image of a "
                        "--test-manifest); without it such records stop the command, nothing written")


def nothing_usable(report: Any, what: str, out: Path) -> int:
    """Say why nothing usable was written and what to try; the exit code (1) for it."""
    print(f"error: {what} written to {out}: every input row has a problem (listed above and in "
          "the problem report)", file=sys.stderr)
    missing = [p for p in report.problems if p.kind == "image_missing"]
    if missing:
        example = missing[0].detail.split(" does not exist")[0].split(": ")[0]
        print(f"hint: {len(missing)} images were not found (e.g. {example}). If the file names "
              "them by paths on another machine, rewrite the prefix with --path-map OLD=NEW "
              "(e.g. --path-map /their/data=/my/data); relative paths resolve against "
              "--image-root DIR (default: the input file's folder)", file=sys.stderr)
    return 1


# ----------------------------------------------------------------------------------------------
# pixel bounds (exports store them with each image; engines resize to them before the processor)


def pixel_options(description: str) -> argparse.ArgumentParser:
    """Parent parser: ``--min-pixels/--max-pixels``, ``--official-pixels``, ``--processor-pixels``."""
    parent = argparse.ArgumentParser(add_help=False)
    g = parent.add_argument_group("image pixel bounds", description)
    g.add_argument("--min-pixels", type=int, default=None,
                   help="smallest image area in pixels: each image is resized to at least this many, "
                        "as qwen-vl-utils does for training data (default: the official release's "
                        f"{_LO}..{_HI}, 256..576 image tokens)")
    g.add_argument("--max-pixels", type=int, default=None,
                   help="largest image area in pixels (with --min-pixels)")
    g.add_argument("--official-pixels", action="store_true",
                   help=f"the official release's bounds, {_LO}..{_HI} pixels (the default)")
    g.add_argument("--processor-pixels", action="store_true",
                   help="no bounds: images are left to the model processor's own (the opt-out; "
                        "Qwen2.5-VL's allow 16384 image tokens, the tiny test model's a few; for a "
                        "model trained on --processor-pixels exports)")
    return parent


def pixel_bounds_from_args(args: argparse.Namespace) -> tuple[int, int] | None:
    """The bounds the pixel options name; ``None`` for ``--processor-pixels``."""
    from emocaliber_rl.data.exports import check_pixel_bounds

    if (args.min_pixels is None) != (args.max_pixels is None):
        raise SystemExit("give both --min-pixels and --max-pixels, or neither")
    if sum([args.official_pixels, args.processor_pixels, args.min_pixels is not None]) > 1:
        raise SystemExit("give one of --official-pixels, --processor-pixels, --min/--max-pixels")
    if args.processor_pixels:
        return None
    if args.min_pixels is None:
        return OFFICIAL_PIXEL_BOUNDS
    return check_pixel_bounds((args.min_pixels, args.max_pixels))
