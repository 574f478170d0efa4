"""VECBench data: raw dataset adapters, split builder, release import, VEC-CoT synthesis, exports.

One job per module:

- ``records``: the common :class:`~emocaliber_rl.data.records.Record` and jsonl helpers.
- ``rows``: the row schema every command reads (``subtask``, one name) and its one validator.
- ``images``: decode/verify an image, its sha256, bytes for parquet.
- ``report``: problems found while reading data (never dropped silently).
- ``conversations``: parse the published conversation layouts (ms-swift, ShareGPT, VECBench test file).
- ``exports``: stage-1 SFT parquet, stage-2 prompt set, stage-3 RL parquet, evaluation manifests.
- ``raw``: adapters for FI, WebEmo, EmoSet, Abstract, ArtPhoto, UnbiasedEmo in their published layouts.
- ``splits``: ``emocaliber bench build`` (VECBench train/test split).
- ``release``: ``emocaliber bench import`` (published VECBench / VEC-CoT files into manifests).
- ``cot_*``: VEC-CoT synthesis, judging and the 6:3:1 split.
- the ``bench``, ``cot`` and ``export`` commands live in ``emocaliber_rl.cli`` (``data``, ``cot``, ``export``).

Nothing here imports torch or veRL at module import time.
"""
