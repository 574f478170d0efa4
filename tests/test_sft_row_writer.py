"""One writer of SFT rows for `export sft1` and `stage2 label` (data/exports.SFTRowWriter)."""

from __future__ import annotations

import ast
from pathlib import Path

import pyarrow.parquet as pq

from emocaliber_rl.data.exports import OFFICIAL_PIXEL_BOUNDS, SFTRowWriter, sft_schema
from tests.conftest import REPO_ROOT, draw_image, png_bytes

MESSAGES = [{"role": "system", "content": "s"}, {"role": "user", "content": "<image>q"},
            {"role": "assistant", "content": "a"}]


def test_writer_writes_bounded_images_and_checks_the_length(tmp_path: Path) -> None:
    data = png_bytes(draw_image(1, (64, 64)))
    # the official bounds resize any image to at least 200,704 pixels: 256 image tokens of 28x28
    short = SFTRowWriter(tmp_path / "a.parquet", max_length=255)
    assert short.overlong(MESSAGES, data).startswith("256 image tokens alone")
    writer = SFTRowWriter(tmp_path / "b.parquet", max_length=256)
    assert writer.overlong(MESSAGES, data) is None
    writer.add(MESSAGES, writer.images(data), id="r1", subtask="FI-8", label="awe")
    assert writer.rows == 1
    table = pq.read_table(writer.close())
    assert table.schema.equals(sft_schema(OFFICIAL_PIXEL_BOUNDS))
    row = table.to_pylist()[0]
    assert row["images"] == [{"bytes": data, "path": None, "min_pixels": 200_704, "max_pixels": 451_584}]
    assert (row["id"], row["subtask"], row["label"], row["messages"]) == ("r1", "FI-8", "awe", MESSAGES)


def test_writer_without_rows_writes_an_empty_file_and_abort_leaves_none(tmp_path: Path) -> None:
    empty = SFTRowWriter(tmp_path / "empty.parquet", pixel_bounds=None, max_length=None).close()
    assert pq.read_table(empty).num_rows == 0
    writer = SFTRowWriter(tmp_path / "gone.parquet", pixel_bounds=None, max_length=None)
    writer.add(MESSAGES, writer.images(b"x"), id="r1", subtask="FI-8", label="awe")
    writer.abort()
    assert not list(tmp_path.glob("gone.parquet*"))


def test_no_module_reaches_into_the_exports_private_names() -> None:
    # stage 2 wrote its parquet through exports' private sink, a second writer of the same rows
    offenders = []
    for path in sorted((REPO_ROOT / "emocaliber_rl").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module == "emocaliber_rl.data.exports":
                offenders += [f"{path.relative_to(REPO_ROOT)}: {a.name}" for a in node.names if a.name.startswith("_")]
    assert not offenders, offenders
