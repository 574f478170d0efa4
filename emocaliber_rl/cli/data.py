"""`emocaliber bench build | import`: the VECBench manifests, from local copies of the six datasets
or from the published release files."""

from __future__ import annotations

import argparse
import sys

from emocaliber_rl.cli.common import (
    EXIT_PARTIAL,
    add_command,
    add_group_command,
    add_path_map,
    nothing_usable,
    output_file,
    output_folder,
    path_map_from_args,
    rows_exit_code,
)

DATASET_FLAGS = {
    "FI": "--fi",
    "EmoSet": "--emoset",
    "WebEmo": "--webemo",
    "Abstract": "--abstract",
    "ArtPhoto": "--artphoto",
    "UnbiasedEmo": "--unbiasedemo",
}
DATASET_HELP = {
    "FI": "FI root: emotion_dataset/, i.e. <emotion>/<file>.jpg folders",
    "EmoSet": "EmoSet-118K root: image/<emotion>/*.jpg + train/val/test.json + info.json",
    "WebEmo": "WebEmo root: {train,test}/<label_index>/<url basename> as ccivit/download_webEmo's "
              "download_dataset.py writes them, + train25.txt/test25.txt/category.txt",
    "Abstract": "Abstract root: testImages_abstract/, images + ABSTRACT_groundTruth.csv "
                "(majority vote; ties reported)",
    "ArtPhoto": "ArtPhoto root: testImages_artphoto/, <emotion>_<n>.jpg (spellings like sad accepted)",
    "UnbiasedEmo": "UnbiasedEmo root: the zip's images/ folder, <emotion>/<object>/*.jpg",
}


def _run_build(args: argparse.Namespace) -> int:
    from emocaliber_rl.data.raw import LayoutError
    from emocaliber_rl.data.splits import build_splits, write_build

    roots = {name: getattr(args, flag[2:]) for name, flag in DATASET_FLAGS.items()
             if getattr(args, flag[2:]) is not None}
    if not roots:
        print("error: give at least one dataset root (--fi, --emoset, ...)", file=sys.stderr)
        return 2
    output_folder(args.output)
    try:
        res = build_splits(roots, seed=args.seed, test_size=args.test_size, workers=args.workers,
                           progress=not args.no_progress, near_duplicates=not args.no_near_duplicates,
                           near_threshold=args.near_threshold)
    except LayoutError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    paths = write_build(res, args.output, seed=args.seed, test_size=args.test_size)
    print(res.table())
    print()
    print(res.dataset_table())
    print(res.overlap_line())
    for note in res.report.notes:
        print(f"note: {note}", file=sys.stderr)
    for name, n in res.short.items():
        print(f"note: {name} has only {n} test samples (requested {args.test_size})", file=sys.stderr)
    res.report.print_summary("images or entries")
    print(f"manifests: {paths['train']} {paths['test']}; summary: {paths['summary']}; "
          f"problem report: {paths['report']}", file=sys.stderr)
    # 3: manifests written, with images or entries left out (each in the problem report)
    rc = EXIT_PARTIAL if res.report.problems else 0
    for name in res.empty:
        print(f"error: {name} ({DATASET_FLAGS[name]} {roots[name]}) yielded no usable sample; "
              "see the problem report", file=sys.stderr)
        rc = 1
    if res.overlap or res.overlap_near:
        print(f"error: {res.overlap} identical and {res.overlap_near or 0} near-duplicate images "
              "are in both train and test", file=sys.stderr)
        rc = 1
    return rc


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``emocaliber bench build | import``."""
    bsub = add_group_command(
        sub, "bench",
        help="data: build the VECBench train/test manifests from the six datasets, or import the "
             "published release",
        description="Build VECBench from raw datasets, or import the published release.",
        dest="bench_command")

    b = add_command(
        bsub, "build",
        help="split local copies of the six datasets into VECBench train/test manifests",
        description=(
            "FI -> FI-2/FI-8 halves; WebEmo -> WebEmo-25/7/2 thirds; EmoSet -> EmoSet-8; "
            "TEST_SIZE test samples each, the rest train. Abstract-8 and Artphoto-8: all samples, "
            "test only; UnbiasedEmo-6: TEST_SIZE samples, test only. Every image is decoded and "
            "hashed; undecodable images, duplicates (same sha256), near-duplicates (perceptual "
            "hash; the test-only copy is kept) and unknown labels are listed in OUTPUT/report.jsonl. "
            "Writes OUTPUT/train.jsonl, test.jsonl, summary.md (per-dataset found/kept/reported). "
            "Exit 0: every image used; 3: manifests written, with images or entries left out "
            "(report.jsonl); 2: a root or metadata file is not the published layout, or OUTPUT is "
            "a file; 1: a dataset yielded no usable sample, or train and test overlap."
        ),
        example="emocaliber bench build --fi data/FI --emoset data/EmoSet --webemo data/WebEmo "
                "--abstract data/Abstract --artphoto data/ArtPhoto --unbiasedemo data/UnbiasedEmo "
                "-o data/vecbench",
    )
    for name, flag in DATASET_FLAGS.items():
        b.add_argument(flag, default=None, metavar="DIR", help=DATASET_HELP[name])
    b.add_argument("-o", "--output", required=True, help="output folder for the manifests")
    b.add_argument("--seed", type=int, default=0, help="shuffle seed (same seed + files = same bytes)")
    b.add_argument("--test-size", type=int, default=1000,
                   help="test samples per subtask (fewer when a subset is smaller; reported)")
    b.add_argument("--workers", type=int, default=None,
                   help="decode/hash processes (default: the cores this process may use)")
    from emocaliber_rl.data.splits import PHASH_THRESHOLD  # light: no PIL/numpy at import

    def bits(text: str) -> int:
        if not text.isdigit() or int(text) > 63:
            raise argparse.ArgumentTypeError(f"need a whole number of bits 0..63, got {text!r}")
        return int(text)

    b.add_argument("--near-threshold", type=bits, default=PHASH_THRESHOLD,
                   help="largest pHash Hamming distance (of 64 bits) treated as the same picture")
    b.add_argument("--no-near-duplicates", action="store_true",
                   help="skip perceptual hashing: duplicates are then caught by identical bytes only")
    b.add_argument("--no-progress", action="store_true", help="no progress bar")
    b.set_defaults(func=_run_build)
    _register_bench_import(bsub)


def _run_import(args: argparse.Namespace) -> int:
    from emocaliber_rl.data.release import import_release, inline_image_dir, write_import
    from emocaliber_rl.data.report import DataProblemError

    output_file(args.output)
    try:
        res = import_release(args.inputs, split=args.split, keep_response=args.keep_response,
                             image_root=args.image_root, default_subtask=args.subtask,
                             path_map=path_map_from_args(args),
                             strict=args.strict, hash_files=not args.no_hash, workers=args.workers,
                             progress=not args.no_progress, image_dir=inline_image_dir(args.output))
    except DataProblemError as e:
        print(f"error (--strict): {e}", file=sys.stderr)
        return 2
    if not res.records and not res.report.problems:
        # an empty input: nothing written, no table of zeros, no "no problems" line
        print(f"error: nothing written to {args.output}: {', '.join(args.inputs)} holds no rows",
              file=sys.stderr)
        return 1
    out, rep = write_import(res, args.output)
    print(res.table())
    res.report.print_summary("rows")
    print(f"manifest: {out}; problem report: {rep}", file=sys.stderr)
    if not res.records:
        return nothing_usable(res.report, "no records", out)
    return rows_exit_code(len(res.records), len(res.report.problems))


def _register_bench_import(bsub: argparse._SubParsersAction) -> None:
    p = add_command(
        bsub, "import",
        help="turn the published VECBench test file or VEC-CoT stage files into a manifest",
        description=(
            "Reads jsonl rows in the ms-swift layout (messages + images) or ShareGPT layout "
            "(conversations + image/images) with task, ground_truth/label and candidates; "
            "validates every label against the taxonomy and reports bad rows by line number. "
            "Image parts in every form qwen-vl-utils reads ({'image': ...} with or without "
            "type, image_url parts, file:// paths, data URIs: saved under OUTPUT.images/); "
            "http(s) images are reported (map them to local copies with --path-map). A repeated id "
            "is reported (duplicate_id) and the first row kept. The manifest stores image paths "
            "absolute, or relative to its own folder when inside it, as every command reads them. "
            "Exit 0: every row imported; 3: written, with rows left out (OUTPUT.report.jsonl); "
            "1: no row imported; 2: --strict and a bad row, or OUTPUT is a folder."
        ),
        example="emocaliber bench import test_8k.jsonl -o data/vecbench/test_release.jsonl "
                "--image-root /data/images",
    )
    p.add_argument("inputs", nargs="+", help="published jsonl file(s)")
    p.add_argument("-o", "--output", required=True, help="output manifest (jsonl)")
    p.add_argument("--split", default="test", help="split name written into every record")
    p.add_argument("--keep-response", action="store_true",
                   help="keep the assistant turn as the record's CoT (VEC-CoT files)")
    p.add_argument("--image-root", default=None,
                   help="folder relative image paths resolve against (default: the file's folder)")
    p.add_argument("--subtask", default=None, help="subtask for rows without a task field")
    add_path_map(p)
    p.add_argument("--strict", action="store_true", help="exit 2 at the first invalid row")
    p.add_argument("--no-hash", action="store_true",
                   help="skip decoding/hashing images (no checksums; each image is still checked "
                        "to exist)")
    p.add_argument("--workers", type=int, default=None, help="decode/hash processes")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_import)
